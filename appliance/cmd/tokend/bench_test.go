package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/otp"
	"tokend/internal/etcdtest"
)

// The benchmarks here measure the appliance end to end: a real tokend
// (bbolt with fsync, HTTPS on 127.0.0.1) driven by clients in the same
// process, next to the bounds they are judged against (the store's group
// commit rate, bare RSA decryption), measured in the same run.

// BenchmarkCommitBound is the store's durable commit rate at a given
// concurrency: one Update of one ~200-byte record per op, group commit on.
func BenchmarkCommitBound(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			st, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"), boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			val := bytes.Repeat([]byte("v"), 200)
			var n atomic.Int64
			b.SetParallelism((writers + 1) / 2)
			if writers == 1 {
				b.SetParallelism(1)
			}
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			runConcurrent(b, writers, func() {
				k := n.Add(1)
				err := st.Update(context.Background(), func(tx appliance.Tx) error {
					return tx.Put(fmt.Appendf(nil, "bench/%016x", k), val)
				})
				if err != nil {
					b.Error(err)
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/commit")
		})
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runConcurrent runs b.N calls of op spread over exactly workers goroutines.
func runConcurrent(b *testing.B, workers int, op func()) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				op()
			}
		})
	}
	wg.Wait()
}

// latencies collects per-op durations for percentiles.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) p(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

// startTokendB starts a tokend for a benchmark, logging as in production
// (one access log line per request).
func startTokendB(b *testing.B) *instance {
	b.Helper()
	return startTokend(b, b.TempDir())
}

// BenchmarkImportCSV imports 100,000 serials through the API per op.
func BenchmarkImportCSV(b *testing.B) {
	in := startTokendB(b)
	const rows = 100_000
	bodies := make([][]byte, b.N)
	for i := range bodies {
		var sb strings.Builder
		sb.WriteString("serial\n")
		for r := range rows {
			fmt.Fprintf(&sb, "%012d\n", int64(i)*rows+int64(r)+100_000_000_000)
		}
		bodies[i] = []byte(sb.String())
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		var job struct {
			Imported int `json:"imported"`
		}
		in.call(b, "POST", "/api/v1/tokens/import?format=csv", "text/csv", bytes.NewReader(bodies[i]), http.StatusCreated, &job)
		if job.Imported != rows {
			b.Fatalf("imported %d", job.Imported)
		}
	}
	b.ReportMetric(float64(b.N*rows)/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkDistribute issues activation codes through the API from 16
// concurrent clients over HTTPS keep-alive, each for its own token.
func BenchmarkDistribute(b *testing.B) {
	in := startTokendB(b)
	const clients = 16
	serials := setupAssigned(b, in, clients)
	var lat latencies
	var next atomic.Int64
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				in.json(b, "POST", "/api/v1/tokens/"+serials[c]+"/distribution", map[string]string{"profile": "bench"}, http.StatusCreated, nil)
				lat.add(time.Since(t0))
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "distributions/s")
	b.ReportMetric((cpuTime()-cpu0).Seconds()/time.Since(start).Seconds(), "cores-busy")
	b.ReportMetric(float64(lat.p(0.99).Microseconds())/1000, "p99-ms")
}

// setupAssigned imports n tokens, creates a CT-KIP profile "bench" and n
// users each holding one token; it returns the serials.
func setupAssigned(b *testing.B, in *instance, n int) []string {
	b.Helper()
	var sb strings.Builder
	sb.WriteString("serial\n")
	serials := make([]string, n)
	for i := range n {
		serials[i] = fmt.Sprintf("%012d", 900_000_000_000+i)
		sb.WriteString(serials[i] + "\n")
	}
	in.call(b, "POST", "/api/v1/tokens/import?format=csv", "text/csv", strings.NewReader(sb.String()), http.StatusCreated, nil)
	in.json(b, "POST", "/api/v1/profiles", map[string]any{"name": "bench", "device_type": "generic", "delivery_method": "ctkip",
		"pin_mode": "none"}, http.StatusCreated, nil)
	for i, s := range serials {
		var u struct {
			ID string `json:"id"`
		}
		in.json(b, "POST", "/api/v1/users", map[string]string{"user_name": fmt.Sprintf("bench%06d", i)}, http.StatusCreated, &u)
		in.json(b, "POST", "/api/v1/users/"+u.ID+"/tokens", map[string]any{"serials": []string{s}}, http.StatusOK, nil)
	}
	return serials
}

// BenchmarkRSA1024Decrypt is the bound for provisioning: bare RSA-1024
// OAEP-SHA1 decryptions on all cores.
func BenchmarkRSA1024Decrypt(b *testing.B) {
	rate, cpu := rsaDecryptRate(b, b.N)
	b.ReportMetric(rate, "decryptions/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/1000, "cpu-µs/decryption")
}

// rsaDecryptRate runs n bare RSA-1024 OAEP-SHA1 decryptions spread over
// GOMAXPROCS goroutines and returns decryptions per second and the CPU
// time each took (which, unlike the rate, a neighbour stealing cycles from
// this shared machine hardly moves).
func rsaDecryptRate(b *testing.B, n int) (float64, time.Duration) {
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		b.Fatal(err)
	}
	ct, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, &key.PublicKey, make([]byte, 16), nil)
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := rsa.DecryptOAEP(sha1.New(), nil, key, ct, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds(), (cpuTime() - cpu0) / time.Duration(n)
}

// provisionDevices is how many devices provision at once at full speed:
// enough that the durable commit of one group of exchanges overlaps the
// RSA work of the next.
const provisionDevices = 128

// BenchmarkProvision runs complete two-POST CT-KIP exchanges over HTTPS
// against the bbolt-backed tokend (one activation code each, issued before
// the timer starts): the first half of b.N from many concurrent devices at full
// speed, the second half paced at half that rate, for the latency an
// exchange sees when the appliance is not saturated.
func BenchmarkProvision(b *testing.B) { benchProvision(b, benchStore{}) }

// BenchmarkProvisionEtcd is BenchmarkProvision with tokend on etcd (one
// member on this machine).
func BenchmarkProvisionEtcd(b *testing.B) {
	etcdtest.Require(b)
	benchProvision(b, benchStore{etcd: etcdtest.Start(b)})
}

func benchProvision(b *testing.B, bs benchStore) {
	dir := filepath.Join(b.TempDir(), "data")
	codes, serveArgs := provisionOfflineOn(b, bs, dir, b.N, false)
	in := startTokend(b, dir, append([]string{"--config", oneAddressConfig(b)}, serveArgs...)...)
	url := in.ctkipURL
	client := ctkipClient(in)
	provision := func(i int64, lat *latencies) {
		t0 := time.Now()
		if _, err := client.Provision(context.Background(), url, codes[i]); err != nil {
			b.Error(err)
		}
		lat.add(time.Since(t0))
	}
	half := int64(max(1, b.N/2))
	var full latencies
	var next atomic.Int64
	b.ResetTimer()
	start, cpu0, etcdCPU0 := time.Now(), cpuTime(), bs.etcdCPU(b)
	var wg sync.WaitGroup
	for range provisionDevices {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < half; i = next.Add(1) - 1 {
				provision(i, &full)
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	rate := float64(half) / wall.Seconds()
	b.ReportMetric(rate, "provisionings/s")
	cpu := cpuTime() - cpu0
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores-busy")
	if bs.etcd != nil {
		etcdCPU := bs.etcdCPU(b) - etcdCPU0
		b.ReportMetric(etcdCPU.Seconds()/wall.Seconds(), "etcd-cores-busy")
		cpu += etcdCPU
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(max(1, half)), "cpu-µs/op")
	b.ReportMetric(float64(full.p(0.99).Microseconds())/1000, "p99-ms")

	if half == 0 || rate <= 0 {
		return
	}
	// Paced: one exchange started every 2/rate seconds, each on its own goroutine.
	var paced latencies
	gap := time.Duration(float64(time.Second) * 2 / rate)
	tick := time.NewTicker(gap)
	for i := half; i < int64(b.N); i++ {
		<-tick.C
		wg.Go(func() { provision(i, &paced) })
	}
	tick.Stop()
	wg.Wait()
	b.ReportMetric(float64(paced.p(0.99).Microseconds())/1000, "half-rate-p99-ms")
}

// BenchmarkSCIMCreateUsers pushes new users over SCIM (POST /scim/v2/Users)
// from 16 concurrent HTTPS clients into the bbolt-backed tokend.
func BenchmarkSCIMCreateUsers(b *testing.B) {
	in := startTokendB(b)
	var src struct {
		SCIMToken string `json:"scim_token"`
	}
	in.json(b, "POST", "/api/v1/identity-sources", map[string]any{"name": "idp", "type": "scim"}, http.StatusCreated, &src)
	var next atomic.Int64
	var lat latencies
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	runConcurrent(b, 16, func() {
		i := next.Add(1)
		body := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"u%d@example.org","externalId":"x%d",`+
			`"active":true,"displayName":"User %d","emails":[{"type":"work","primary":true,"value":"u%d@example.org"}]}`, i, i, i, i)
		req, _ := http.NewRequest("POST", in.admin+"/scim/v2/Users", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+src.SCIMToken)
		req.Header.Set("Content-Type", "application/scim+json")
		t0 := time.Now()
		resp, err := in.client.Do(req)
		if err != nil {
			b.Error(err)
			return
		}
		// Drained, so that the connection is kept alive and reused.
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat.add(time.Since(t0))
		if resp.StatusCode != http.StatusCreated {
			b.Errorf("POST /Users: %d", resp.StatusCode)
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "users/s")
	b.ReportMetric((cpuTime()-cpu0).Seconds()/time.Since(start).Seconds(), "cores-busy")
	b.ReportMetric(float64(lat.p(0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkHTTPSCeiling is what any admin API request costs before the
// appliance does anything: the same TLS configuration, certificate and
// HTTP/1.1 keep-alive client as the benchmarks above, against a handler
// that drains the request and answers 201 with 300 bytes of JSON. Next to
// BenchmarkCommitBound it shows how much of a commit-bound target an HTTPS
// request can reach at all on this machine.
func BenchmarkHTTPSCeiling(b *testing.B) {
	dir := b.TempDir()
	m, err := loadOrCreateTLS(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"),
		certRequest{Hostname: "localhost", Extra: []string{"127.0.0.1"}, Now: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	answer := []byte(`{"ctkip_url":"` + strings.Repeat("x", 270) + `"}`)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write(answer)
		}),
		TLSConfig: serverTLSConfig(m.Certificate, true),
	}
	go srv.ServeTLS(ln, "", "")
	b.Cleanup(func() { srv.Close() })
	in := &instance{admin: "https://" + ln.Addr().String(), token: "ceiling",
		client: newTrustingClient(b, filepath.Join(dir, "tls.crt"))}
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			start, cpu0 := time.Now(), cpuTime()
			runConcurrent(b, clients, func() {
				in.json(b, "POST", "/api/v1/tokens/000100000001/distribution", map[string]string{"profile": "bench"},
					http.StatusCreated, nil)
			})
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "requests/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/request")
		})
	}
}

// buildTokend builds the tokend binary for benchmarks and tests that run
// it as its own process (without -race, whatever the test runs under).
func buildTokend(b testing.TB) string {
	b.Helper()
	// A prebuilt binary lets before/after runs alternate on one test binary.
	if bin := os.Getenv("TOKEND_BENCH_BINARY"); bin != "" {
		return bin
	}
	bin := filepath.Join(b.TempDir(), "tokend")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startTokendProcess starts argv (a tokend serve command line, possibly
// behind taskset) as its own process, interrupted at cleanup, and returns it
// with the first value found reads from one of its JSON log lines. It fails
// the benchmark if no line yields one within 60s; what names the wait.
func startTokendProcess(b *testing.B, argv []string, what string, found func(line map[string]any) (string, bool)) (*exec.Cmd, string) {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
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
	ch := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			if v, ok := found(m); ok {
				select {
				case ch <- v:
				default:
				}
			}
		}
	}()
	select {
	case v := <-ch:
		return cmd, v
	case <-time.After(60 * time.Second):
		b.Fatalf("tokend: %s", what)
		return nil, ""
	}
}

// benchPasscodes returns bench user i's name and the codes of its token at
// the steps before, at and after now: three codes it accepts once each.
func benchPasscodes(i int64) (string, [3]string) {
	serial := fmt.Sprintf("%012d", 800_000_000_000+i)
	gen, _ := otp.NewSecurID(benchSeed(i), serial, 8, 60)
	step := gen.Step(time.Now())
	var codes [3]string
	for k := range codes {
		codes[k], _ = gen.CodeAt(step - 1 + int64(k))
	}
	return fmt.Sprintf("auth%07d", i), codes
}

// verifyResult is what verifyLoad measured.
type verifyResult struct {
	n             int64
	rate          float64 // verifications/s
	acceptedShare float64
	p99           time.Duration
	cpu           time.Duration // this process's CPU during the run
	wall          time.Duration // the run's elapsed time
}

// verifyLoad makes b.N verifications, each a fresh accepted code of the
// bench users (three per token, tokens of them), from workers goroutines
// with one verification in flight each. newWorker gives a worker its verify
// function (accepted reports an accept; an error stops the worker) and what
// to close when it is done. Latency is measured around each verify call.
func verifyLoad(b *testing.B, workers, tokens int,
	newWorker func() (verify func(user, code string) (accepted bool, err error), done func(), err error)) verifyResult {
	var accepted, other, done, nextTok atomic.Int64
	var lat latencies
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			verify, closeWorker, err := newWorker()
			if err != nil {
				b.Error(err)
				return
			}
			defer closeWorker()
			for done.Load() < int64(b.N) {
				i := nextTok.Add(1) - 1
				if i >= int64(tokens) {
					return
				}
				user, codes := benchPasscodes(i)
				for _, code := range codes {
					if done.Add(1) > int64(b.N) {
						return
					}
					t0 := time.Now()
					ok, err := verify(user, code)
					if err != nil {
						b.Error(err)
						return
					}
					lat.add(time.Since(t0))
					if ok {
						accepted.Add(1)
					} else {
						other.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	n := accepted.Load() + other.Load()
	return verifyResult{n: n, rate: float64(n) / wall.Seconds(), acceptedShare: float64(accepted.Load()) / float64(max(1, n)),
		p99: lat.p(0.99), cpu: cpuTime() - cpu0, wall: wall}
}
