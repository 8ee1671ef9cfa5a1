package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tokend/ctkip"
)

// BenchmarkProvisionServerCPU measures what one CT-KIP exchange costs the
// server alone: tokend runs as its own process pinned to CPU 0, the device
// clients run in this process pinned to CPU 1, and the server's CPU time is
// read from /proc. It reports the exchanges per second the server sustains
// on its one core and the server CPU per exchange; 2 cores ÷ that cost is
// the server's two-core capacity. The bound (bare RSA-1024 decryptions on
// both cores) is measured in the same benchmark, interleaved with the
// exchanges, and the ratio is reported two ways: capacity over decryption
// rate, and RSA CPU per decryption over server CPU per exchange.
func BenchmarkProvisionServerCPU(b *testing.B) {
	cmd, ctURL, client, codes := startPinnedCTKIPServer(b)

	// The exchanges run in blocks, each after a block of the bound (bare
	// decryptions on both cores), so that a neighbour's load on this shared
	// machine falls on both measurements alike.
	b.ResetTimer()
	var (
		next            atomic.Int64
		serverCPU, wall time.Duration
		rsaWall, rsaCPU time.Duration
		rsaN            int
		blockSize       = (b.N + provisionBlocks - 1) / provisionBlocks
		rsaPerBlock     = max(rsaSample/provisionBlocks, 1)
	)
	for done := 0; done < b.N; done += blockSize {
		end := int64(min(done+blockSize, b.N))
		b.StopTimer()
		rate, cpu := rsaDecryptRate(b, rsaPerBlock)
		rsaWall += time.Duration(float64(rsaPerBlock) / rate * float64(time.Second))
		rsaCPU += cpu * time.Duration(rsaPerBlock)
		rsaN += rsaPerBlock
		b.StartTimer()

		restore := pinSelf(b, 1)
		cpu0, start := procCPU(b, cmd.Process.Pid), time.Now()
		provisionBlock(b, client, ctURL, codes, &next, end, provisionDevices)
		wall += time.Since(start)
		serverCPU += procCPU(b, cmd.Process.Pid) - cpu0
		next.Store(end)
		restore()
	}
	perOp := serverCPU / time.Duration(b.N)
	rsaRate := float64(rsaN) / rsaWall.Seconds()
	b.ReportMetric(float64(b.N)/wall.Seconds(), "provisionings/s/core")
	b.ReportMetric(float64(perOp.Microseconds()), "server-cpu-µs/op")
	b.ReportMetric(2/perOp.Seconds(), "2-core-capacity/s")
	b.ReportMetric(rsaRate, "decryptions/s")
	b.ReportMetric(2/perOp.Seconds()/rsaRate, "capacity/decryptions")
	// The same ratio from CPU time alone: RSA's CPU per decryption over the
	// server's CPU per exchange.
	b.ReportMetric((rsaCPU/time.Duration(rsaN)).Seconds()/perOp.Seconds(), "rsa-cpu/server-cpu")
}

// provisionBlocks is how many blocks the exchanges are measured in.
const provisionBlocks = 10

// rsaSample is how many decryptions each measurement of the bound makes.
const rsaSample = 6000

// procCPU is a process's user+system CPU time from /proc.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at ") ".
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz
}

// pinSelf pins every thread of this process to one CPU and returns a
// function that lets them run anywhere again.
func pinSelf(b *testing.B, cpu int) func() {
	b.Helper()
	var one, all unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		b.Fatal(err)
	}
	set := func(s *unix.CPUSet) {
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				unix.SchedSetaffinity(tid, s)
			}
		}
	}
	set(&one)
	return func() { set(&all) }
}

// oneCoreDevices is how many devices are in flight in
// BenchmarkProvisionOneCore (issue 19's "16 devices waiting").
const oneCoreDevices = 16

// BenchmarkProvisionOneCore measures what one pinned core realizes with
// devices waiting: tokend runs as its own process on CPU 0 (so its
// GOMAXPROCS is 1), 16 devices run complete exchanges from this process on
// CPU 1, and the benchmark reports exchanges completed per second of wall
// time, not capacity from CPU time. The bound is bare RSA-1024 decryptions
// in this process pinned to CPU 0 alone, in blocks interleaved with the
// exchanges so that a neighbour's load falls on both. idle-% is how much
// of CPU 0 went unused while the exchanges ran (from /proc/stat): time the
// core could have spent decrypting for a waiting device.
func BenchmarkProvisionOneCore(b *testing.B) {
	cmd, ctURL, client, codes := startPinnedCTKIPServer(b)

	b.ResetTimer()
	var (
		next            atomic.Int64
		serverCPU, wall time.Duration
		rsaWall, rsaCPU time.Duration
		rsaN            int
		idle, total     int
		blockSize       = (b.N + provisionBlocks - 1) / provisionBlocks
		rsaPerBlock     = max(rsaSample/2/provisionBlocks, 1)
	)
	for done := 0; done < b.N; done += blockSize {
		end := int64(min(done+blockSize, b.N))
		b.StopTimer()
		// One P on CPU 0, as the server has: one thread competing for
		// the core with whatever else runs there.
		restore, procs := pinSelf(b, 0), runtime.GOMAXPROCS(1)
		rate, cpu := rsaDecryptRate(b, rsaPerBlock)
		runtime.GOMAXPROCS(procs)
		restore()
		rsaCPU += cpu * time.Duration(rsaPerBlock)
		rsaWall += time.Duration(float64(rsaPerBlock) / rate * float64(time.Second))
		rsaN += rsaPerBlock
		b.StartTimer()

		restore = pinSelf(b, 1)
		idle0, total0 := cpuIdle(b, 0)
		cpu0, start := procCPU(b, cmd.Process.Pid), time.Now()
		provisionBlock(b, client, ctURL, codes, &next, end, oneCoreDevices)
		wall += time.Since(start)
		serverCPU += procCPU(b, cmd.Process.Pid) - cpu0
		i1, t1 := cpuIdle(b, 0)
		idle, total = idle+i1-idle0, total+t1-total0
		next.Store(end)
		restore()
	}
	exchanges := float64(b.N) / wall.Seconds()
	rsaRate := float64(rsaN) / rsaWall.Seconds()
	b.ReportMetric(exchanges, "exchanges/s")
	b.ReportMetric(rsaRate, "1-core-decryptions/s")
	b.ReportMetric(exchanges/rsaRate, "exchanges/decryptions")
	b.ReportMetric(float64(serverCPU.Microseconds())/float64(b.N), "server-cpu-µs/op")
	b.ReportMetric(serverCPU.Seconds()/wall.Seconds()*100, "server-busy-%")
	// What the ratio would be with the core the server's alone and never
	// idle: RSA's CPU per decryption over the server's CPU per exchange.
	b.ReportMetric(rsaCPU.Seconds()/float64(rsaN)/(serverCPU.Seconds()/float64(b.N)), "rsa-cpu/server-cpu")
	// On a shared machine a neighbour takes some of what the server
	// leaves: idle-% is a floor of the server's waiting, server-busy-% its
	// share of the core.
	if total > 0 {
		b.ReportMetric(float64(idle)/float64(total)*100, "idle-%")
	}
}

// cpuIdle reads one CPU's idle (idle + iowait) and total jiffies from
// /proc/stat.
func cpuIdle(b *testing.B, cpu int) (idle, total int) {
	b.Helper()
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	want := fmt.Sprintf("cpu%d ", cpu)
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, want) {
			continue
		}
		for i, f := range strings.Fields(line)[1:] {
			v, _ := strconv.Atoi(f)
			total += v
			if i == 3 || i == 4 { // idle, iowait
				idle += v
			}
		}
		return idle, total
	}
	b.Fatalf("no %q in /proc/stat", want)
	return 0, 0
}

// startPinnedCTKIPServer starts tokend as its own process pinned to CPU 0
// with b.N codes distributed, and returns it, its CT-KIP URL, a device
// client that trusts it and the codes.
func startPinnedCTKIPServer(b *testing.B) (*exec.Cmd, string, *ctkip.Client, []string) {
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		b.Skip("taskset (util-linux) not found")
	}
	bin := buildTokend(b)
	dir := filepath.Join(b.TempDir(), "data")
	codes := provisionOffline(b, dir, b.N, false)

	argv := []string{taskset, "-c", "0", bin, "serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0",
		"--ctkip-listen", "127.0.0.1:0", "--log-format", "json", "--config", oneAddressConfig(b)}
	cmd, ctURL := startTokendProcess(b, argv, "did not start", func(m map[string]any) (string, bool) {
		return fmt.Sprint(m["ctkip_url"]), m["msg"] == "tokend ready"
	})
	return cmd, ctURL, ctkipClient(&instance{client: newTrustingClient(b, filepath.Join(dir, "tls.crt"))}), codes
}

// provisionBlock runs devices concurrent CT-KIP exchanges over codes[next:end].
func provisionBlock(b *testing.B, client *ctkip.Client, ctURL string, codes []string, next *atomic.Int64, end int64, devices int) {
	var wg sync.WaitGroup
	for range devices {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < end; i = next.Add(1) - 1 {
				if _, err := client.Provision(context.Background(), ctURL, codes[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
