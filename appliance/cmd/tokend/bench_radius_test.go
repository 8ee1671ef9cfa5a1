package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"

	tradius "tokend/agents/radius"
	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/otp"
	"tokend/appliance/seal"
)

const benchRADIUSSecret = "a-radius-secret-for-benchmarks"

// addRADIUSAgentOffline registers a RADIUS agent for 127.0.0.1 in a stopped
// tokend's data dir (Message-Authenticator required, as by default).
func addRADIUSAgentOffline(b *testing.B, dir string) {
	b.Helper()
	paths, err := newDataPaths(dir)
	if err != nil {
		b.Fatal(err)
	}
	key, _, err := loadOrCreateMasterKey(paths.MasterKey)
	if err != nil {
		b.Fatal(err)
	}
	st, err := boltstore.Open(paths.DB, boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	sealer, _ := seal.New(key, rand.Reader)
	svc, err := appliance.New(appliance.Config{Store: st, Sealer: sealer})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := svc.CreateAgent(context.Background(), appliance.AgentInput{Name: "bench", Kind: appliance.AgentRADIUS,
		Address: "127.0.0.1", Secret: benchRADIUSSecret}); err != nil {
		b.Fatal(err)
	}
}

// commitBound measures the store's durable commit rate with the given
// number of writers (one ~200-byte record per Update, group commit on), as
// BenchmarkCommitBound does, for n commits.
func commitBound(b *testing.B, writers, n int) float64 {
	b.Helper()
	st, err := boltstore.Open(filepath.Join(b.TempDir(), "bound.db"), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	val := bytes.Repeat([]byte("v"), 200)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for k := next.Add(1); k <= int64(n); k = next.Add(1) {
				if err := st.Update(context.Background(), func(tx appliance.Tx) error {
					return tx.Put(fmt.Appendf(nil, "bench/%016x", k), val)
				}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkRADIUS measures RADIUS verifications per second through a real
// tokend running as its own process (bbolt with fsync; each accepted code's
// replay mark and audit record durable before the answer), driven by this
// process as the load generator with 1, 16 and 64 requests in flight, each
// request a PAP Access-Request with a Message-Authenticator answered by an
// Access-Accept. Beside it, in the same run and at the same concurrency, the
// store's commit bound; reported: the ratio, the server's CPU per
// verification (from /proc), the load generator's, and p99 latency. Each
// token accepts the codes of three consecutive steps, so a run needs b.N/3
// tokens: use -benchtime=Nx.
func BenchmarkRADIUS(b *testing.B) {
	for _, inflight := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			tokens := b.N/3 + inflight
			dir := filepath.Join(b.TempDir(), "data")
			provisionOffline(b, dir, tokens, true)
			addRADIUSAgentOffline(b, dir)
			bin := filepath.Join(b.TempDir(), "tokend")
			if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
				b.Fatalf("build: %v\n%s", err, out)
			}
			cmd := exec.Command(bin, "serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0",
				"--radius-listen", "127.0.0.1:0", "--log-format", "json", "--config", unlimitedAgentConfig(b))
			stderr, err := cmd.StderrPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				cmd.Process.Signal(os.Interrupt)
				cmd.Wait()
			})
			addr := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					var m map[string]any
					if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" && m["server"] == "radius" {
						addr <- fmt.Sprint(m["addr"])
					}
				}
			}()
			var radAddr string
			select {
			case radAddr = <-addr:
			case <-time.After(60 * time.Second):
				b.Fatal("tokend did not bind its RADIUS listener")
			}

			// The bound, at the same concurrency, just before the run.
			b.StopTimer()
			bound := commitBound(b, inflight, max(b.N, 2000))
			b.StartTimer()

			b.ResetTimer()
			srv0 := procCPU(b, cmd.Process.Pid)
			res := radiusLoad(b, radAddr, inflight, tokens)
			srvCPU := procCPU(b, cmd.Process.Pid) - srv0
			n, rate := res.n, res.rate
			b.ReportMetric(rate, "verifications/s")
			b.ReportMetric(bound, "commits/s")
			b.ReportMetric(rate/bound, "ratio-to-commit-bound")
			b.ReportMetric(res.acceptedShare, "accepted-share")
			b.ReportMetric(float64(srvCPU.Microseconds())/float64(max(1, n)), "server-cpu-µs/op")
			b.ReportMetric(float64(res.cpu.Microseconds())/float64(max(1, n)), "loadgen-cpu-µs/op")
			b.ReportMetric(float64(res.p99.Microseconds())/1000, "p99-ms")
		})
	}
}

type radiusLoadResult struct {
	n             int64
	rate          float64
	acceptedShare float64
	p99           time.Duration
	cpu           time.Duration // this process's CPU during the run
}

// radiusLoad sends b.N Access-Requests (each with a Message-Authenticator,
// each a fresh accepted code of the bench users) to addr from inflight
// workers, one UDP socket and one request in flight each.
func radiusLoad(b *testing.B, addr string, inflight, tokens int) radiusLoadResult {
	var accepted, other, done, nextTok atomic.Int64
	var lat latencies
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	for range inflight {
		wg.Go(func() {
			conn, err := net.Dial("udp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			buf := make([]byte, radius.MaxPacketLength)
			for done.Load() < int64(b.N) {
				i := nextTok.Add(1) - 1
				if i >= int64(tokens) {
					return
				}
				serial := fmt.Sprintf("%012d", 800_000_000_000+i)
				gen, _ := otp.NewSecurID(benchSeed(i), serial, 8, 60)
				step := gen.Step(time.Now())
				for _, s := range []int64{step - 1, step, step + 1} {
					if done.Add(1) > int64(b.N) {
						return
					}
					code, _ := gen.CodeAt(s)
					p := radius.New(radius.CodeAccessRequest, []byte(benchRADIUSSecret))
					_ = rfc2865.UserName_SetString(p, fmt.Sprintf("auth%07d", i))
					_ = rfc2865.UserPassword_SetString(p, code)
					if err := tradius.AddMessageAuthenticator(p); err != nil {
						b.Error(err)
						return
					}
					wire, _ := p.Encode()
					t0 := time.Now()
					if _, err := conn.Write(wire); err != nil {
						b.Error(err)
						return
					}
					conn.SetReadDeadline(time.Now().Add(10 * time.Second))
					n, err := conn.Read(buf)
					if err != nil {
						b.Errorf("no answer: %v", err)
						return
					}
					lat.add(time.Since(t0))
					if n > 0 && radius.Code(buf[0]) == radius.CodeAccessAccept {
						accepted.Add(1)
					} else {
						other.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	n := accepted.Load() + other.Load()
	return radiusLoadResult{n: n, rate: float64(n) / el, acceptedShare: float64(accepted.Load()) / float64(max(1, n)),
		p99: lat.p(0.99), cpu: cpuTime() - cpu0}
}

// BenchmarkRADIUSInProcess is BenchmarkRADIUS with tokend in this process,
// so that `go test -bench BenchmarkRADIUSInProcess -cpuprofile cpu.out`
// shows where a verification's CPU goes (server and load generator in one
// profile; tell them apart by package). Its rates are not the figures to
// report: the load generator shares the process.
func BenchmarkRADIUSInProcess(b *testing.B) {
	for _, inflight := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			tokens := b.N/3 + inflight
			dir := filepath.Join(b.TempDir(), "data")
			provisionOffline(b, dir, tokens, true)
			addRADIUSAgentOffline(b, dir)
			in := startTokend(b, dir, "--radius-listen", "127.0.0.1:0", "--config", unlimitedAgentConfig(b))
			addr := ""
			for _, line := range bytes.Split([]byte(in.logs.String()), []byte("\n")) {
				var m map[string]any
				if json.Unmarshal(line, &m) == nil && m["msg"] == "listening" && m["server"] == "radius" {
					addr = fmt.Sprint(m["addr"])
				}
			}
			if addr == "" {
				b.Fatal("no RADIUS listener")
			}
			b.ResetTimer()
			res := radiusLoad(b, addr, inflight, tokens)
			b.ReportMetric(res.rate, "verifications/s")
			b.ReportMetric(res.acceptedShare, "accepted-share")
			b.ReportMetric(float64(res.cpu.Microseconds())/float64(max(1, res.n)), "process-cpu-µs/op")
			b.ReportMetric(float64(res.p99.Microseconds())/1000, "p99-ms")
		})
	}
}

// unlimitedAgentConfig lifts the per-agent rate limit (200/s by default,
// which a load generator posing as one agent exceeds at once: the excess
// is dropped, as a real agent's would be) and the in-flight bound.
func unlimitedAgentConfig(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "tokend.yaml")
	yaml := "radius:\n  rate_per_agent: 1000000\n  burst_per_agent: 1000000\n  max_in_flight: 4096\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}
