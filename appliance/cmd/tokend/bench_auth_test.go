package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/internal/etcdstore"
	"tokend/appliance/seal"
	"tokend/internal/etcdtest"
)

// provisionOffline prepares a data dir with n users each holding one
// SecurID token (PIN mode none), writing through the Service directly so
// setup stays fast. With provision the tokens are provisioned (seed derived
// from the index); without, each gets an outstanding activation code, which
// is returned.
func provisionOffline(b *testing.B, dir string, n int, provision bool) []string {
	codes, _ := provisionOfflineOn(b, benchStore{}, dir, n, provision)
	return codes
}

// benchStore is where a benchmark's tokend keeps its store: the bbolt file
// of its data dir (the zero value), or an etcd cluster, so that the same
// benchmark body runs on either.
type benchStore struct {
	etcd *etcdtest.Cluster
}

// open opens the store for setup and returns the serve flags that make
// tokend use the same one. Each call on etcd takes a fresh key space (the
// framework runs a benchmark several times).
func (bs benchStore) open(b *testing.B, paths dataPaths) (appliance.Store, []string) {
	b.Helper()
	if bs.etcd == nil {
		st, err := boltstore.Open(paths.DB, boltstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return st, nil
	}
	prefix := fmt.Sprintf("/bench-%d/", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: bs.etcd.Endpoints(), Prefix: prefix, PurgeInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	return st, []string{"--store", "etcd", "--etcd-endpoints", strings.Join(bs.etcd.Endpoints(), ","), "--etcd-prefix", prefix,
		"--node-id", "bench"}
}

// provisionOfflineOn is provisionOffline on the given store; it also
// returns the serve flags for that store.
func provisionOfflineOn(b *testing.B, bs benchStore, dir string, n int, provision bool) ([]string, []string) {
	b.Helper()
	paths, err := newDataPaths(dir)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ensureDataDir(dir); err != nil {
		b.Fatal(err)
	}
	key, _, err := loadOrCreateMasterKey(paths.MasterKey)
	if err != nil {
		b.Fatal(err)
	}
	st, serveArgs := bs.open(b, paths)
	defer st.Close()
	sealer, _ := seal.New(key, rand.Reader)
	cfg := appliance.Config{Store: st, Sealer: sealer, CTKIPURL: "https://localhost/ctkip/services/CtkipService"}
	if bs.etcd != nil {
		// Setup writes from 32 goroutines: on etcd they need write lanes
		// (a chain head each), as a served node has.
		cfg.NodeID, cfg.WriteLanes = "bench-setup", 16
	}
	svc, err := appliance.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := svc.Init(ctx); err != nil {
		b.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("serial\n")
	for i := range n {
		fmt.Fprintf(&csv, "%012d\n", 800_000_000_000+i)
	}
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csv.String())}); err != nil {
		b.Fatal(err)
	}
	if _, err := svc.CreateProfile(ctx, appliance.Profile{Name: "bench", DeviceType: appliance.DeviceGeneric,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeNone}); err != nil {
		b.Fatal(err)
	}
	codes := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				serial := fmt.Sprintf("%012d", 800_000_000_000+i)
				u, err := svc.CreateUser(ctx, appliance.NewUser{UserName: fmt.Sprintf("auth%07d", i)})
				if err == nil {
					_, err = svc.AssignTokens(ctx, u.ID, []string{serial})
				}
				var d appliance.Distribution
				if err == nil {
					d, err = svc.Distribute(ctx, serial, "bench")
				}
				codes[i] = d.ActivationCode.Reveal()
				if err == nil && provision {
					_, err = svc.CompleteProvisioning(ctx, codes[i], benchSeed(i))
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return codes, serveArgs
}

func benchSeed(i int64) []byte {
	return bytes.Repeat([]byte{byte(i), byte(i >> 8), byte(i >> 16), 0x5a}, 4)
}

// BenchmarkAuthenticate verifies tokencodes over the HTTPS API (each
// decision commits the token's replay mark durably) from 1, 16 and 64
// concurrent clients. Each token accepts the codes of three consecutive
// steps, so a run needs b.N/3 tokens: use -benchtime=Nx.
func BenchmarkAuthenticate(b *testing.B) { benchAuthenticate(b, benchStore{}) }

// BenchmarkAuthenticateEtcd is BenchmarkAuthenticate with tokend on etcd
// (one member on this machine).
func BenchmarkAuthenticateEtcd(b *testing.B) {
	etcdtest.Require(b)
	benchAuthenticate(b, benchStore{etcd: etcdtest.Start(b)})
}

func benchAuthenticate(b *testing.B, bs benchStore) {
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			tokens := b.N/3 + clients
			dir := filepath.Join(b.TempDir(), "data")
			_, serveArgs := provisionOfflineOn(b, bs, dir, tokens, true)
			in := startTokend(b, dir, serveArgs...)
			etcdCPU0 := bs.etcdCPU(b)
			b.ResetTimer()
			res := verifyLoad(b, clients, tokens, func() (func(user, code string) (bool, error), func(), error) {
				verify := func(user, code string) (bool, error) {
					body, _ := json.Marshal(map[string]string{"user_name": user, "passcode": code})
					req, _ := http.NewRequest("POST", in.admin+"/api/v1/authenticate", bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+in.token)
					req.Header.Set("Content-Type", "application/json")
					resp, err := in.client.Do(req)
					if err != nil {
						return false, err
					}
					var r struct {
						Result string `json:"result"`
					}
					json.NewDecoder(resp.Body).Decode(&r)
					resp.Body.Close()
					return r.Result == appliance.AuthAccept, nil
				}
				return verify, func() {}, nil
			})
			b.ReportMetric(res.cpu.Seconds()/res.wall.Seconds(), "cores-busy")
			if bs.etcd != nil {
				etcdCPU := bs.etcdCPU(b) - etcdCPU0
				b.ReportMetric(etcdCPU.Seconds()/res.wall.Seconds(), "etcd-cores-busy")
				b.ReportMetric(float64((res.cpu+etcdCPU).Microseconds())/float64(max(1, res.n)), "cpu-µs/op")
			} else {
				b.ReportMetric(float64(res.cpu.Microseconds())/float64(max(1, res.n)), "cpu-µs/op")
			}
			b.ReportMetric(res.rate, "verifications/s")
			b.ReportMetric(res.acceptedShare, "accepted-share")
			b.ReportMetric(float64(res.p99.Microseconds())/1000, "p99-ms")
		})
	}
}

// etcdCPU is the CPU time the etcd members' processes used so far (0 on
// bbolt). The members are found by their data directory on the command
// line.
func (bs benchStore) etcdCPU(b *testing.B) time.Duration {
	b.Helper()
	if bs.etcd == nil {
		return 0
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	var sum time.Duration
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, m := range bs.etcd.Members {
			if bytes.Contains(cmdline, []byte("\x00"+m.Dir+"\x00")) {
				sum += procCPU(b, pid)
			}
		}
	}
	return sum
}
