package tokenfile

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// heapPeak runs fn while sampling the live heap and returns the largest
// growth over the heap before it.
func heapPeak(fn func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	fn()
	close(done)
	wg.Wait()
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}

// TestPSKCSpooledFileStaysFlat decodes a container of 150,000 empty
// KeyPackages from a file: every one is a rejected row, and none is kept.
// Before, the container and its rows sat in memory together, over 50 MB
// for this 2 MB file.
func TestPSKCSpooledFileStaysFlat(t *testing.T) {
	const n = 150_000
	path := filepath.Join(t.TempDir(), "many.xml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString(`<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc">`)
	for range n {
		w.WriteString("<KeyPackage/>")
	}
	w.WriteString("</KeyContainer>\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rejected, last int
	var derr error
	growth := heapPeak(func() {
		derr = DecodePSKC(f, PSKCOptions{}, Sink{Reject: func(r Rejection) error { rejected++; last = r.Row; return nil }})
	})
	if derr != nil || rejected != n || last != n {
		t.Fatalf("DecodePSKC = %v with %d rejections, last row %d; want %d", derr, rejected, last, n)
	}
	t.Logf("heap grew by %d KiB", growth>>10)
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MiB decoding from a file, want under 16 MiB", growth>>20)
	}
}

// TestPSKCBadMACInLastPackageReachesNoRow: the rows are passed on only
// after every package is checked, also when they are streamed from a file.
func TestPSKCBadMACInLastPackageReachesNoRow(t *testing.T) {
	fig6 := string(readTestdata(t, "rfc6030-figure6.xml"))
	i, j := strings.Index(fig6, "<KeyPackage>"), strings.Index(fig6, "</KeyPackage>")+len("</KeyPackage>")
	pkg := fig6[i:j]
	var b strings.Builder
	b.WriteString(fig6[:i])
	for k := range 50 {
		p := pkg
		if k == 49 {
			p = string(edit(t, []byte(p), "Su+NvtQfmvfJzF6bmQiJqoLRExc=", "Su+NvtQgmvfJzF6bmQiJqoLRExc="))
		}
		b.WriteString(p)
	}
	b.WriteString(fig6[j:])
	path := filepath.Join(t.TempDir(), "tampered.xml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, open := range []struct {
		name string
		r    func() io.Reader
	}{
		{"file", func() io.Reader { f, _ := os.Open(path); t.Cleanup(func() { f.Close() }); return f }},
		{"plain reader", func() io.Reader { return bytes.NewBufferString(b.String()) }},
	} {
		t.Run(open.name, func(t *testing.T) {
			var rows int
			sink := Sink{Record: func(Record) error { rows++; return nil }, Reject: func(Rejection) error { rows++; return nil }}
			err := DecodePSKC(open.r(), PSKCOptions{Key: rfcKey}, sink)
			if !errors.Is(err, ErrMACMismatch) || rows != 0 {
				t.Fatalf("DecodePSKC = %v after %d rows, want ErrMACMismatch after none", err, rows)
			}
		})
	}
}
