package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"tokend/internal/slapdtest"
)

// The kill -9 campaign (issue 15). The long form:
//
//	go test ./appliance/cmd/tokend -run TestCrash -crash.trials 1000 -crash.seed S -timeout 2h
//
// Flags are package variables because `go test` parses them before any test
// runs.
var (
	crashTrials = flag.Int("crash.trials", 30, "kill -9 trials of TestCrash (fewer under -short)")
	crashSeed   = flag.Uint64("crash.seed", 0, "seed of TestCrash's choices (0: time-based; always logged)")
	crashReport = flag.String("crash.report", "", "write TestCrash's restart times and findings as JSON to this file (relative to the package directory)")
)

// crashRun is one campaign: the tokend binary, its data dir, the clients'
// ledger of what they asked for and what was acknowledged, and the figures.
type crashRun struct {
	t      *testing.T
	bin    string
	dir    string // the current data dir
	config string
	seed   uint64
	rng    *rand.Rand // the campaign loop's own choices (one goroutine)
	ldap   *slapdtest.Server
	led    *ledger // of the current data dir
	// Set by each data dir's setup and read by every client.
	scimSource, scimToken, ldapSource string
	ldapUsers                         int // generated directory users so far

	report campaignReport
}

// campaignReport is what -crash.report writes.
type campaignReport struct {
	Seed       uint64       `json:"seed"`
	Trials     int          `json:"trials"`
	Violations []string     `json:"violations"`
	Restarts   []restartRec `json:"restarts"`
	Warm       restartStats `json:"warm"`
	Cold       restartStats `json:"cold"`
	StoreBytes int64        `json:"largest_store_bytes"`
	Acked      ackCounts    `json:"acknowledged"`
}

type restartRec struct {
	Trial int  `json:"trial"`
	Cold  bool `json:"cold"`
	// StartToReady is from the exec of the new process to its first
	// /readyz 200; KillToExit from the SIGKILL to the old one reaped (the
	// offline check runs in between, so it is not part of either).
	StartToReadyMS float64 `json:"start_to_ready_ms"`
	KillToExitMS   float64 `json:"kill_to_exit_ms"`
	// ResidentPages/Pages: how much of the store file was in the page
	// cache when the new process started (cold runs drop it first).
	ResidentPages int   `json:"resident_pages"`
	Pages         int   `json:"pages"`
	StoreBytes    int64 `json:"store_bytes"`
	KilledAfterMS int64 `json:"killed_after_ms"`
}

type restartStats struct {
	N        int     `json:"n"`
	MedianMS float64 `json:"median_ms"`
	MaxMS    float64 `json:"max_ms"`
}

type ackCounts struct {
	Tokens, Assignments, Provisioned, Users, Accepted, Replays, LDAPSyncs, Resumed int
}

// TestCrash starts the real tokend binary on a data dir (a fresh one every
// crashEpoch trials), drives a mixed
// workload from several clients, SIGKILLs it at a random moment, checks the
// store offline (bbolt's check, `tokend audit verify`, the Service's
// consistency check, the clients' ledger) and restarts it, timing the
// restart and replaying the tokencodes it had accepted.
func TestCrash(t *testing.T) {
	trials := *crashTrials
	if testing.Short() {
		trials = min(trials, 8)
	}
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("crash campaign: %d trials, -crash.seed %d", trials, seed)
	r := &crashRun{t: t, bin: buildTokend(t), seed: seed, rng: rand.New(rand.NewPCG(seed, 0x6372617368))}
	r.report.Seed, r.report.Trials, r.report.Violations = seed, trials, []string{}
	r.config = filepath.Join(t.TempDir(), "tokend.yaml")
	// Replayed codes count as failures; a lockout would turn the later
	// authentications of those users into refusals that check nothing.
	if err := os.WriteFile(r.config, []byte("auth:\n  max_failures: 1000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/usr/sbin/slapd"); err == nil || os.Getenv("CI") == "true" {
		r.ldap = slapdtest.Start(t, slapdtest.Options{Users: 5})
		r.ldapUsers = 5
	} else {
		t.Log("no slapd: the campaign runs without LDAP syncs")
	}
	defer func() {
		if *crashReport != "" {
			r.writeReport()
		}
	}()

	var d *tokendProc
	for trial := range trials {
		if trial%crashEpoch == 0 {
			// A fresh store now and then keeps the offline check's full
			// read of it short in a long campaign.
			if d != nil {
				d.kill()
				r.endEpoch()
			}
			r.dir, r.led = t.TempDir(), newLedger()
			if err := os.Chmod(r.dir, 0o700); err != nil {
				t.Fatal(err)
			}
			d, _ = r.start(false)
			r.setup(d)
		}
		if r.ldap != nil && trial%5 == 4 {
			// The directory grows, so a sync has users to add.
			r.ldap.AddUsers(t, r.ldapUsers+1, 2)
			r.ldapUsers += 2
		}
		killAfter := time.Duration(r.rng.Int64N(int64(1500*time.Millisecond))) + 20*time.Millisecond
		wl := r.startWorkload(d, trial)
		if r.rng.IntN(3) == 0 {
			// Aim at an import of several chunks: kill within 150 ms of
			// its post (or at killAfter if none comes).
			aim := time.Duration(r.rng.Int64N(int64(150 * time.Millisecond)))
			t0 := time.Now()
			select {
			case <-wl.bigImport:
				time.Sleep(aim)
				killAfter = time.Since(t0)
			case <-time.After(killAfter):
			}
		} else {
			time.Sleep(killAfter)
		}
		killedAt := time.Now()
		d.kill()
		killToExit := time.Since(killedAt)
		wl.stop()

		checkStart := time.Now()
		if v := r.checkOffline(); len(v) > 0 {
			r.report.Violations = append(r.report.Violations, prefixed(fmt.Sprintf("trial %d: ", trial), v)...)
			t.Fatalf("trial %d (-crash.seed %d, killed after %v): %d violations:\n%s\nlast log lines:\n%s", trial, seed, killAfter,
				len(v), strings.Join(v[:min(len(v), 30)], "\n"), tail(d.logs.String(), 4000))
		}
		checkTime := time.Since(checkStart)

		cold := trial%2 == 1
		var rec restartRec
		d, rec = r.start(cold)
		rec.Trial, rec.KilledAfterMS = trial, killAfter.Milliseconds()
		rec.KillToExitMS = float64(killToExit.Microseconds()) / 1000
		r.report.Restarts = append(r.report.Restarts, rec)
		if v := r.checkRestarted(d); len(v) > 0 {
			r.report.Violations = append(r.report.Violations, prefixed(fmt.Sprintf("trial %d after restart: ", trial), v)...)
			t.Fatalf("trial %d (-crash.seed %d) after restart: %d violations:\n%s", trial, seed, len(v), strings.Join(v[:min(len(v), 30)], "\n"))
		}
		if testing.Verbose() {
			t.Logf("trial %d: killed after %v, offline check %v, restart %s %.1f ms (%d/%d pages resident, store %d bytes)", trial,
				killAfter.Round(time.Millisecond), checkTime.Round(time.Millisecond), map[bool]string{true: "cold", false: "warm"}[cold],
				rec.StartToReadyMS, rec.ResidentPages, rec.Pages, rec.StoreBytes)
		}
	}
	d.kill()
	r.endEpoch()
	r.summarise()
}

// crashEpoch is how many trials share one data dir.
const crashEpoch = 20

// endEpoch adds the ledger's counts to the report.
func (r *crashRun) endEpoch() {
	n := r.led.counts()
	a := &r.report.Acked
	a.Tokens += n.Tokens
	a.Assignments += n.Assignments
	a.Provisioned += n.Provisioned
	a.Users += n.Users
	a.Accepted += n.Accepted
	a.Replays += n.Replays
	a.LDAPSyncs += n.LDAPSyncs
	a.Resumed += n.Resumed
	if fi, err := os.Stat(filepath.Join(r.dir, "tokend.db")); err == nil {
		r.report.StoreBytes = max(r.report.StoreBytes, fi.Size())
	}
}

// tokendProc is one tokend process of the campaign.
type tokendProc struct {
	cmd    *exec.Cmd
	admin  string
	ctkip  string
	client *http.Client
	logs   *syncBuffer
	done   chan struct{}
}

// kill SIGKILLs the process and reaps it.
func (d *tokendProc) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// start starts tokend on the campaign's data dir and waits for /readyz
// 200. A cold start first drops the store file from the page cache.
func (r *crashRun) start(cold bool) (*tokendProc, restartRec) {
	t := r.t
	t.Helper()
	var rec restartRec
	rec.Cold = cold
	db := filepath.Join(r.dir, "tokend.db")
	if fi, err := os.Stat(db); err == nil {
		rec.StoreBytes = fi.Size()
		if cold {
			if err := dropFromPageCache(db); err != nil {
				t.Fatalf("drop %s from the page cache: %v", db, err)
			}
		}
		rec.ResidentPages, rec.Pages = residentPages(t, db)
	}
	ready := make(chan map[string]string, 1)
	logs := &syncBuffer{ready: ready}
	cmd := exec.Command(r.bin, "serve", "--config", r.config, "--data-dir", r.dir, "--admin-listen", "127.0.0.1:0",
		"--ctkip-listen", "127.0.0.1:0", "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logs, logs
	// Its own process group: a SIGKILL of the test's group never meets it
	// half way, and it never outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &tokendProc{cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	t.Cleanup(d.kill)
	var m map[string]string
	select {
	case m = <-ready:
	case <-d.done:
		t.Fatalf("tokend exited before it was ready:\n%s", tail(logs.String(), 4000))
	case <-time.After(60 * time.Second):
		t.Fatalf("tokend not ready within 60s:\n%s", tail(logs.String(), 4000))
	}
	d.admin, d.ctkip = "https://"+m["admin"], m["ctkip_url"]
	d.client = newTrustingClient(t, filepath.Join(r.dir, "tls.crt"))
	d.client.Timeout = 10 * time.Second
	for {
		resp, err := d.client.Get(d.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(t0) > 60*time.Second {
			t.Fatalf("/readyz not 200 within 60s (%v):\n%s", err, tail(logs.String(), 4000))
		}
		time.Sleep(2 * time.Millisecond)
	}
	rec.StartToReadyMS = float64(time.Since(t0).Microseconds()) / 1000
	return d, rec
}

// dropFromPageCache writes back and evicts the file's cached pages, as a
// machine that has not read the store since its boot would have it.
func dropFromPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// residentPages reports how many of the file's pages are in the page cache
// (mincore over a fresh mapping, which itself faults nothing in).
func residentPages(t *testing.T, path string) (resident, pages int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return 0, 0
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	vec := make([]byte, (len(b)+os.Getpagesize()-1)/os.Getpagesize())
	// x/sys/unix has no Mincore wrapper on Linux.
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	for _, v := range vec {
		resident += int(v & 1)
	}
	return resident, len(vec)
}

func (r *crashRun) summarise() {
	t := r.t
	var warm, cold []float64
	for _, rec := range r.report.Restarts {
		if rec.Cold {
			cold = append(cold, rec.StartToReadyMS)
		} else {
			warm = append(warm, rec.StartToReadyMS)
		}
	}
	r.report.Warm, r.report.Cold = statsOf(warm), statsOf(cold)
	t.Logf("crash campaign -crash.seed %d: %d trials, %d violations; restart (exec → /readyz 200) warm median %.1f ms max %.1f ms (n=%d), cold median %.1f ms max %.1f ms (n=%d); largest store %d bytes; acknowledged %+v",
		r.seed, r.report.Trials, len(r.report.Violations), r.report.Warm.MedianMS, r.report.Warm.MaxMS, r.report.Warm.N,
		r.report.Cold.MedianMS, r.report.Cold.MaxMS, r.report.Cold.N, r.report.StoreBytes, r.report.Acked)
}

func (r *crashRun) writeReport() {
	b, err := json.MarshalIndent(r.report, "", "  ")
	if err == nil {
		err = os.WriteFile(*crashReport, append(b, '\n'), 0o644)
	}
	if err != nil {
		r.t.Errorf("crash report: %v", err)
	}
}

func statsOf(ms []float64) restartStats {
	if len(ms) == 0 {
		return restartStats{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	return restartStats{N: len(s), MedianMS: s[len(s)/2], MaxMS: s[len(s)-1]}
}

func prefixed(p string, v []string) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = p + s
	}
	return out
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// ctxTimeout is a request context for the campaign's own calls.
func ctxTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
