package tokenfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func seedCorpus(f *testing.F, pattern string, add func([]byte)) {
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds for %s: %v", pattern, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
}

// checkRows asserts what every decoder promises about its output.
func checkRows(t *testing.T, res *Result) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range res.Records {
		if !ValidSerial(r.Serial) || seen[r.Serial] {
			t.Fatalf("record %d: bad or repeated serial %q", r.Row, r.Serial)
		}
		seen[r.Serial] = true
		if r.Digits != 6 && r.Digits != 8 {
			t.Fatalf("record %d: digits %d", r.Row, r.Digits)
		}
		if r.Kind != KindSoftware && r.Kind != KindHardware {
			t.Fatalf("record %d: kind %q", r.Row, r.Kind)
		}
		switch r.Algorithm {
		case AlgHOTP:
			if r.Interval != 0 {
				t.Fatalf("record %d: HOTP interval %d", r.Row, r.Interval)
			}
		case AlgTOTP, AlgSecurID:
			if r.Interval != 30 && r.Interval != 60 {
				t.Fatalf("record %d: interval %d", r.Row, r.Interval)
			}
		default:
			t.Fatalf("record %d: algorithm %q", r.Row, r.Algorithm)
		}
	}
	for _, r := range res.Rejections {
		if r.Row < 1 || r.Reason == "" {
			t.Fatalf("rejection %+v", r)
		}
	}
}

func FuzzCSV(f *testing.F) {
	seedCorpus(f, "*.csv", func(b []byte) { f.Add(b) })
	f.Add([]byte("serial,\"kind\"\n\"0000000000\"\"01\",\"\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ParseCSV(bytes.NewReader(data))
		if err != nil {
			return
		}
		checkRows(t, res)
		// Every row lands once, in line order.
		var rows []int
		err = DecodeCSV(bytes.NewReader(data), Sink{
			Record: func(r Record) error { rows = append(rows, r.Row); return nil },
			Reject: func(r Rejection) error { rows = append(rows, r.Row); return nil },
		})
		if err != nil {
			t.Fatalf("DecodeCSV failed where ParseCSV did not: %v", err)
		}
		for i := 1; i < len(rows); i++ {
			if rows[i] <= rows[i-1] {
				t.Fatalf("rows out of order: %v", rows)
			}
		}
		if len(rows) != len(res.Records)+len(res.Rejections) {
			t.Fatalf("DecodeCSV saw %d rows, ParseCSV %d", len(rows), len(res.Records)+len(res.Rejections))
		}
		for _, r := range res.Records {
			if r.Seed != nil {
				t.Fatalf("CSV record %d has a seed", r.Row)
			}
		}
	})
}

func FuzzPSKC(f *testing.F) {
	seedCorpus(f, "*.xml", func(b []byte) {
		f.Add(b, false)
		f.Add(b, true)
	})
	f.Fuzz(func(t *testing.T, data []byte, password bool) {
		opts := PSKCOptions{Key: rfcKey}
		if password {
			opts = PSKCOptions{Password: "qwerty"}
		}
		res, err := ParsePSKC(bytes.NewReader(data), opts)
		if err != nil {
			if res != nil {
				t.Fatal("result with an error")
			}
			return
		}
		checkRows(t, res)
		for _, r := range res.Records {
			switch {
			case r.Algorithm == AlgSecurID && len(r.Seed) != 16,
				r.Algorithm != AlgSecurID && (len(r.Seed) < 16 || len(r.Seed) > 64):
				t.Fatalf("record %d: %s seed of %d bytes", r.Row, r.Algorithm, len(r.Seed))
			}
		}
		// Decoding is deterministic.
		again, err := ParsePSKC(bytes.NewReader(data), opts)
		if err != nil {
			t.Fatalf("second decode failed: %v", err)
		}
		if diff := cmp.Diff(res, again); diff != "" {
			t.Fatalf("decodes differ:\n%s", diff)
		}
	})
}
