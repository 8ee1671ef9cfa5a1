package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
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
	svc := serviceWithKey(b, st, key)
	if _, _, err := svc.CreateAgent(context.Background(), appliance.AgentInput{Name: "bench", Kind: appliance.AgentRADIUS,
		Address: "127.0.0.1", Secret: benchRADIUSSecret}); err != nil {
		b.Fatal(err)
	}
}

// radiusBenchData prepares a data dir with the bench users' provisioned
// tokens (b.N/3 + inflight of them: each accepts three codes) and the
// RADIUS agent.
func radiusBenchData(b *testing.B, inflight int) (dir string, tokens int) {
	b.Helper()
	tokens = b.N/3 + inflight
	dir = filepath.Join(b.TempDir(), "data")
	provisionOffline(b, dir, tokens, true)
	addRADIUSAgentOffline(b, dir)
	return dir, tokens
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
			dir, tokens := radiusBenchData(b, inflight)
			argv := []string{buildTokend(b), "serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0",
				"--radius-listen", "127.0.0.1:0", "--log-format", "json", "--config", unlimitedAgentConfig(b)}
			cmd, radAddr := startTokendProcess(b, argv, "did not bind its RADIUS listener", radiusListening)

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

// radiusListening reads the RADIUS listener's address from its log line.
func radiusListening(m map[string]any) (string, bool) {
	if m["msg"] == "listening" && m["server"] == "radius" {
		return fmt.Sprint(m["addr"]), true
	}
	return "", false
}

// radiusLoad sends b.N Access-Requests (each with a Message-Authenticator,
// each a fresh accepted code of the bench users) to addr from inflight
// workers, one UDP socket and one request in flight each.
func radiusLoad(b *testing.B, addr string, inflight, tokens int) verifyResult {
	return verifyLoad(b, inflight, tokens, func() (func(user, code string) (bool, error), func(), error) {
		conn, err := net.Dial("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		buf := make([]byte, radius.MaxPacketLength)
		verify := func(user, code string) (bool, error) {
			p := radius.New(radius.CodeAccessRequest, []byte(benchRADIUSSecret))
			_ = rfc2865.UserName_SetString(p, user)
			_ = rfc2865.UserPassword_SetString(p, code)
			if err := tradius.AddMessageAuthenticator(p); err != nil {
				return false, err
			}
			wire, _ := p.Encode()
			if _, err := conn.Write(wire); err != nil {
				return false, err
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				return false, fmt.Errorf("no answer: %w", err)
			}
			return n > 0 && radius.Code(buf[0]) == radius.CodeAccessAccept, nil
		}
		return verify, func() { conn.Close() }, nil
	})
}

// BenchmarkRADIUSInProcess is BenchmarkRADIUS with tokend in this process,
// so that `go test -bench BenchmarkRADIUSInProcess -cpuprofile cpu.out`
// shows where a verification's CPU goes (server and load generator in one
// profile; tell them apart by package). Its rates are not the figures to
// report: the load generator shares the process.
func BenchmarkRADIUSInProcess(b *testing.B) {
	for _, inflight := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			dir, tokens := radiusBenchData(b, inflight)
			in := startTokend(b, dir, "--radius-listen", "127.0.0.1:0", "--config", unlimitedAgentConfig(b))
			addr := waitListening(b, in, "radius", 5*time.Second)
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
