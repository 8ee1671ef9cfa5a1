package ldap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/internal/slapdtest"
	"tokend/sync/mirror"
)

// vmHWM is the process's peak resident set size in MB.
func vmHWM(tb testing.TB) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkSync100k measures, against a slapd holding 100,000 users, the
// initial full sync through the Syncer (next to ldapsearch dumping the same
// entries with the same page size) and an incremental sync of 100 changes.
//
//	go test -run '^$' -bench Sync100k -benchtime 3x ./sync/ldap/
func BenchmarkSync100k(b *testing.B) {
	const users = 100000
	srv := slapdtest.Start(b, slapdtest.Options{Users: users})
	cfg := Config{URL: srv.URL, BindDN: srv.ReaderDN, BindPassword: Secret(srv.ReaderPassword),
		BaseDN: srv.PeopleDN, PageSize: 1000}

	b.Run("initial", func(b *testing.B) {
		// The reference: ldap-utils' ldapsearch, same filter, attributes, page size.
		full := cfg.WithDefaults()
		args := []string{"-x", "-LLL", "-H", srv.URL, "-D", srv.ReaderDN, "-w", srv.ReaderPassword,
			"-b", srv.PeopleDN, "-E", "pr=1000/noprompt", full.UserFilter}
		args = append(args, newConverter(full.Attributes).attrs...)
		var ref time.Duration
		for range 3 {
			cmd := exec.Command("ldapsearch", args...)
			cmd.Stdout = io.Discard
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatalf("ldapsearch: %v", err)
			}
			if d := time.Since(t0); ref == 0 || d < ref {
				ref = d
			}
		}
		var total time.Duration
		for b.Loop() {
			target := newMemTarget()
			t0 := time.Now()
			sum, err := NewSyncer(target, nil, nil).Run(context.Background(), "src", cfg, RunOptions{Full: true})
			total += time.Since(t0)
			if err != nil || sum.Added != users {
				b.Fatalf("sync: %+v %v", sum, err)
			}
		}
		per := total.Seconds() / float64(b.N)
		b.ReportMetric(per, "s/sync")
		b.ReportMetric(ref.Seconds(), "s/ldapsearch")
		b.ReportMetric(per/ref.Seconds(), "ratio")
		b.ReportMetric(vmHWM(b), "peakRSS-MB")
	})

	// The same initial sync into the appliance itself: the Service on the
	// bbolt store, every user committed durably.
	b.Run("initial-into-appliance", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			svc := appliancetest.Service(b, appliance.Config{Store: appliancetest.BoltStore(b)})
			t0 := time.Now()
			sum, err := NewSyncer(ServiceTarget{Dir: svc}, nil, nil).Run(context.Background(), "src", cfg, RunOptions{Full: true})
			total += time.Since(t0)
			if err != nil || sum.Added != users {
				b.Fatalf("sync: %+v %v", sum, err)
			}
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/sync")
		b.ReportMetric(vmHWM(b), "peakRSS-MB")
	})

	b.Run("incremental100", func(b *testing.B) {
		target := newMemTarget()
		s := NewSyncer(target, nil, nil)
		if _, err := s.Run(context.Background(), "src", cfg, RunOptions{}); err != nil {
			b.Fatal(err)
		}
		round := 0
		for b.Loop() {
			b.StopTimer()
			round++
			var ldif strings.Builder
			for i := 1; i <= 100; i++ {
				fmt.Fprintf(&ldif, "dn: %s\nchangetype: modify\nreplace: displayName\ndisplayName: Round %d user %d\n\n",
					srv.UserDN(round*100+i), round, i)
			}
			srv.Modify(b, ldif.String())
			b.StartTimer()
			sum, err := s.Run(context.Background(), "src", cfg, RunOptions{})
			if err != nil || sum.Mode != ModeIncremental || sum.Updated != 100 {
				b.Fatalf("incremental: %+v %v", sum, err)
			}
		}
	})
}

// procIO returns a field of /proc/self/io (bytes the process wrote to
// disk: far steadier on a shared machine than wall time).
func procIO(tb testing.TB, field string) float64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		tb.Skip("no /proc/self/io")
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+": "); ok {
			n, _ := strconv.ParseFloat(rest, 64)
			return n
		}
	}
	return 0
}

// BenchmarkApplyInitial100k measures the apply phase of an initial sync
// alone: a plan adding 100,000 users written into the Service on bbolt,
// every chunk committed durably (no slapd: the read is measured above).
//
//	go test -run '^$' -bench ApplyInitial100k -benchtime 1x -count 2 ./sync/ldap/
func BenchmarkApplyInitial100k(b *testing.B) {
	const users = 100000
	plan := mirror.Plan{Add: make([]mirror.Local, users)}
	for i := range plan.Add {
		plan.Add[i] = mirror.Local{ExternalID: fmt.Sprintf("guid-%08d", i), UserName: fmt.Sprintf("user%d", i),
			DisplayName: fmt.Sprintf("User Number %d", i), Email: fmt.Sprintf("user%d@example.com", i), Active: true}
	}
	var total time.Duration
	var written, file float64
	for b.Loop() {
		b.StopTimer()
		st := appliancetest.BoltStore(b)
		svc := appliancetest.Service(b, appliance.Config{Store: st})
		b.StartTimer()
		t0, w0 := time.Now(), procIO(b, "wchar")
		if err := (ServiceTarget{Dir: svc}).Apply(context.Background(), "src", plan); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		written += procIO(b, "wchar") - w0
		// The file's size against the bytes written: what the commits
		// rewrote beyond the data they left.
		if sz, ok := st.(interface{ Size() int64 }); ok {
			file += float64(sz.Size())
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/apply")
	b.ReportMetric(written/1e6/float64(b.N), "MB-written")
	b.ReportMetric(file/1e6/float64(b.N), "MB-file")
}
