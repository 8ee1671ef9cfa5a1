package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"tokend/appliance/tokenfile"
)

// BenchmarkImportRSA imports a password-protected RSA token file of 10,000
// software tokens through the API per op (HTTPS, bbolt with fsync, every
// seed decrypted and sealed) and reports tokens/s and how far this
// process's peak resident set (VmHWM; tokend runs in this process) grew
// over the run, the files themselves included.
func BenchmarkImportRSA(b *testing.B) {
	in := startTokendB(b)
	const tokens = 10_000
	files := make([][]byte, b.N)
	for i := range files {
		var buf bytes.Buffer
		w, err := tokenfile.NewSDTIDWriter(&buf, tokenfile.SDTIDHeader{Password: "bench-file-password", Digits: 8, Interval: 60,
			PINMode: tokenfile.PINModeFob, Expires: time.Now().AddDate(2, 0, 0), Birth: time.Now(), Rand: rand.Reader})
		if err != nil {
			b.Fatal(err)
		}
		for j := range tokens {
			seed := make([]byte, 16)
			_, _ = rand.Read(seed)
			if err := w.Add(tokenfile.SDTIDToken{Serial: fmt.Sprintf("%012d", 300_000_000_000+i*tokens+j), Seed: seed}); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		files[i] = buf.Bytes()
	}
	hwm0 := statusKiB(b, "VmHWM")
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		code, body := in.importRSA(b, "format=rsa", "bench-file-password", files[i])
		var job struct {
			Imported int `json:"imported"`
		}
		if code != http.StatusCreated || json.Unmarshal(body, &job) != nil || job.Imported != tokens {
			b.Fatalf("import: %d %.300s", code, body)
		}
	}
	b.ReportMetric(float64(b.N*tokens)/time.Since(start).Seconds(), "tokens/s")
	b.ReportMetric(float64(statusKiB(b, "VmHWM")-hwm0)/1024, "peak-rss-growth-MiB")
	b.ReportMetric(float64(len(files[0]))/(1<<20), "file-MiB")
}

// statusKiB reads a kB field of /proc/self/status (VmRSS, VmHWM).
func statusKiB(b *testing.B, field string) int64 {
	b.Helper()
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}
