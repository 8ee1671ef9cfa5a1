package appliance_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/seal"
)

// benchRolloutUsers is the rollout size the issue sets the target at.
const benchRolloutUsers = 10_000

// rolloutBench is a real Service on bbolt (fsync'd) holding
// benchRolloutUsers users and as many unassigned software tokens, and a
// CT-KIP profile.
type rolloutBench struct {
	svc   *appliance.Service
	ctx   context.Context
	users []string
}

func newRolloutBench(b *testing.B) *rolloutBench {
	b.Helper()
	st, err := boltstore.Open(filepath.Join(b.TempDir(), "tokend.db"), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		b.Fatal(err)
	}
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := appliance.New(appliance.Config{Store: st, Sealer: sealer,
		CTKIPURL: "https://tokend.example:8444/ctkip/services/CtkipService"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "bench", Name: "bench", Role: appliance.RoleSuperAdmin})
	if err := svc.Init(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := svc.CreateProfile(ctx, appliance.Profile{Name: "phones", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP}); err != nil {
		b.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("serial\n")
	for i := range benchRolloutUsers {
		fmt.Fprintf(&csv, "%012d\n", 170000000000+i)
	}
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csv.String())}); err != nil {
		b.Fatal(err)
	}
	users := make([]string, benchRolloutUsers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 { // group commit: the users are setup, not what is measured
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= benchRolloutUsers {
					return
				}
				u, err := svc.CreateUser(ctx, appliance.NewUser{UserName: fmt.Sprintf("user%05d", i)})
				if err != nil {
					b.Error(err)
					return
				}
				users[i] = u.ID
			}
		})
	}
	wg.Wait()
	return &rolloutBench{svc: svc, ctx: ctx, users: users}
}

func (rb *rolloutBench) plan(b *testing.B) appliance.Rollout {
	r, err := rb.svc.PlanRollout(rb.ctx, appliance.RolloutRequest{Users: rb.users, Profile: "phones",
		Pool: appliance.RolloutPool{SerialPrefix: "17"}, Delivery: appliance.DeliveryCTKIP})
	if err != nil {
		b.Fatal(err)
	}
	if r.ToAssign != benchRolloutUsers {
		b.Fatalf("plan %+v", r)
	}
	return r
}

// heapPeak samples the live heap until stop is called and returns the
// highest sample above the heap at its start.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > base && m.HeapAlloc-base > peak.Load() {
				peak.Store(m.HeapAlloc - base)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// BenchmarkRolloutPlan plans a rollout of 10,000 users from an explicit
// list on bbolt (one op = the whole plan).
func BenchmarkRolloutPlan(b *testing.B) {
	rb := newRolloutBench(b)
	b.ResetTimer()
	start := time.Now()
	stop := heapPeak()
	for range b.N {
		r := rb.plan(b)
		// An open plan reserves its tokens: the next op plans them again.
		b.StopTimer()
		if _, err := rb.svc.CancelRollout(rb.ctx, r.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	peak := stop()
	b.ReportMetric(float64(benchRolloutUsers*b.N)/time.Since(start).Seconds(), "users/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// BenchmarkRolloutApply applies a planned rollout of 10,000 users with
// CT-KIP delivery on bbolt: assignment, activation code, journal and audit
// per user, fsync'd chunk by chunk (one op = the whole apply).
func BenchmarkRolloutApply(b *testing.B) {
	var elapsed time.Duration
	var peak uint64
	for range b.N {
		b.StopTimer()
		rb := newRolloutBench(b)
		r := rb.plan(b)
		b.StartTimer()
		start := time.Now()
		stop := heapPeak()
		done, err := rb.svc.ApplyRollout(rb.ctx, r.ID)
		peak = max(peak, stop())
		elapsed += time.Since(start)
		if err != nil || done.Done != benchRolloutUsers {
			b.Fatalf("apply %+v %v", done, err)
		}
	}
	b.ReportMetric(float64(benchRolloutUsers*b.N)/elapsed.Seconds(), "users/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
