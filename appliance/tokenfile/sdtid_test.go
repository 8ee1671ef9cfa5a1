package tokenfile

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tokend/internal/stoken"
)

// The vector token (testdata/sdtid/VECTORS.txt, made with stoken 0.92).
const (
	vecSerial = "711889909691"
	vecSeed   = "959e3629073be475a154fcb882f66e48"
)

func readVector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sdtid", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSDTIDVectors(t *testing.T) {
	want := Record{Row: 1, Serial: vecSerial, Kind: KindSoftware, Algorithm: AlgSecurID, Digits: 8, Interval: 60,
		ExpiresAt: time.Date(2031, 12, 4, 0, 0, 0, 0, time.UTC), PINMode: PINModePINPad}
	for _, tc := range []struct {
		name, file, password string
	}{
		{name: "plain", file: "plain.sdtid"},
		{name: "password", file: "password-hunter2.sdtid", password: "hunter2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := ParseSDTID(bytes.NewReader(readVector(t, tc.file)), SDTIDOptions{Password: tc.password})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) != 1 || len(res.Rejections) != 0 {
				t.Fatalf("got %d records, rejections %v", len(res.Records), res.Rejections)
			}
			got := res.Records[0]
			if hex.EncodeToString(got.Seed) != vecSeed {
				t.Errorf("seed differs from VECTORS.txt")
			}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Record{}, "Seed")); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
		})
	}
}

// tamper replaces the first old in b with new, failing if old is absent.
func tamper(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%q not in file", old)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

func TestSDTIDRefusals(t *testing.T) {
	plain := readVector(t, "plain.sdtid")
	prot := readVector(t, "password-hunter2.sdtid")
	for _, tc := range []struct {
		name     string
		file     []byte
		password string
		err      error
		msg      string // in the error
	}{
		{name: "protected without password", file: prot, err: ErrNeedKey, msg: "protected by a password"},
		{name: "wrong password", file: prot, password: "hunter3", err: ErrWrongKey, msg: "wrong password"},
		{name: "password for a plain file", file: plain, password: "hunter2", err: ErrWrongKey, msg: "not protected by a password"},
		{name: "header altered", file: tamper(t, plain, "<DefDigits>8<", "<DefDigits>6<"), err: ErrMACMismatch, msg: "header MAC mismatch"},
		{name: "header altered, protected", file: tamper(t, prot, "<DefInterval>60<", "<DefInterval>30<"), password: "hunter2", err: ErrMACMismatch, msg: "header MAC mismatch"},
		{name: "header MAC missing", file: bytes.ReplaceAll(plain, []byte("HeaderMAC>"), []byte("HeaderMAX>")), err: ErrMACMissing},
		{name: "secret missing", file: bytes.ReplaceAll(plain, []byte("Secret>"), []byte("Secrex>")), err: ErrMalformed, msg: "no <Secret>"},
		{name: "DTD", file: tamper(t, plain, "<TKNBatch>", "<!DOCTYPE x [<!ENTITY a 'b'>]><TKNBatch>"), err: ErrDTD},
		{name: "not a batch", file: []byte(`<KeyContainer/>`), err: ErrMalformed},
		{name: "truncated", file: plain[:len(plain)/2], err: ErrMalformed},
		{name: "empty", file: nil, err: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := ParseSDTID(bytes.NewReader(tc.file), SDTIDOptions{Password: tc.password})
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v (result %+v), want %v", err, res, tc.err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to say %q", err, tc.msg)
			}
			if strings.Contains(err.Error(), "hunter") {
				t.Errorf("the error shows the password: %q", err)
			}
		})
	}
}

// writeBatch writes n tokens with serials 100000000001.. and random seeds.
func writeBatch(t testing.TB, n int, password string) ([]byte, map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewSDTIDWriter(&buf, SDTIDHeader{Password: password, Digits: 8, Interval: 60, PINMode: PINModeFob,
		Expires: time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC), Birth: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Rand: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for i := range n {
		seed := make([]byte, 16)
		_, _ = rand.Read(seed)
		serial := fmt.Sprintf("1%011d", i+1)
		seeds[serial] = seed
		if err := w.Add(SDTIDToken{Serial: serial, Seed: seed}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), seeds
}

func TestSDTIDBatch(t *testing.T) {
	for _, password := range []string{"", "correct horse"} {
		t.Run(fmt.Sprintf("password=%t", password != ""), func(t *testing.T) {
			file, seeds := writeBatch(t, 3, password)
			res, err := ParseSDTID(bytes.NewReader(file), SDTIDOptions{Password: password})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) != 3 {
				t.Fatalf("records %d, rejections %v", len(res.Records), res.Rejections)
			}
			for i, r := range res.Records {
				if r.Row != i+1 || !bytes.Equal(r.Seed, seeds[r.Serial]) || r.PINMode != PINModeFob ||
					!r.ExpiresAt.Equal(time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)) {
					t.Errorf("record %d: %+v", i, r)
				}
			}

			// One altered token is a rejected row that names its
			// position and serial; the others import.
			bad := tamper(t, file, "<SN>100000000002</SN>", "<SN>100000000009</SN>")
			res, err = ParseSDTID(bytes.NewReader(bad), SDTIDOptions{Password: password})
			if err != nil {
				t.Fatal(err)
			}
			wantRej := []Rejection{{Row: 2, Reason: `token MAC mismatch for serial "100000000009" (token 2): the token record was altered or belongs to another file`}}
			if diff := cmp.Diff(wantRej, res.Rejections); diff != "" || len(res.Records) != 2 {
				t.Errorf("records %d, rejections (-want +got):\n%s", len(res.Records), diff)
			}

			// A repeated token is rejected on its second appearance.
			i := bytes.Index(file, []byte("  <TKN>"))
			j := bytes.Index(file, []byte("  <TKNTrailer>"))
			dup := append(append(append([]byte{}, file[:j]...), file[i:j]...), file[j:]...)
			res, err = ParseSDTID(bytes.NewReader(dup), SDTIDOptions{Password: password})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) != 3 || len(res.Rejections) != 3 || !strings.Contains(res.Rejections[0].Reason, "duplicate serial") {
				t.Errorf("records %d, rejections %v", len(res.Records), res.Rejections)
			}
		})
	}
}

func TestSDTIDRowRejections(t *testing.T) {
	file, _ := writeBatch(t, 1, "")
	for _, tc := range []struct {
		name, old, new, reason string
	}{
		{name: "seed altered", old: "<Seed>=", new: "<Seed>=AAAA", reason: "token MAC mismatch"},
		{name: "user altered", old: "<UserLogin> <", new: "<UserLogin>eve<", reason: "token MAC mismatch"},
		{name: "MAC missing", old: "TokenMAC>", new: "TokenMAX>", reason: "token MAC mismatch"},
		{name: "no serial", old: "<SN>100000000001</SN>", new: "", reason: "no <SN>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := tamper(t, file, tc.old, tc.new)
			bad = bytes.ReplaceAll(bad, []byte("/"+tc.old), []byte("/"+tc.new)) // both tags of an element
			res, err := ParseSDTID(bytes.NewReader(bad), SDTIDOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) != 0 || len(res.Rejections) != 1 || res.Rejections[0].Row != 1 ||
				!strings.Contains(res.Rejections[0].Reason, tc.reason) {
				t.Fatalf("records %d, rejections %v; want one rejection saying %q", len(res.Records), res.Rejections, tc.reason)
			}
		})
	}
}

// TestSDTIDStoken reads what stoken issues and has stoken read what we
// write: the same tokencodes come out of both files.
func TestSDTIDStoken(t *testing.T) {
	stoken.Require(t)
	at := time.Unix(1767225600, 0)
	// A token's own attributes override the header's Def* values.
	const overrides = `<?xml version="1.0"?>
<TKNBatch>
  <TKNHeader><DefDigits>8</DefDigits><DefInterval>60</DefInterval><DefAddPIN>1</DefAddPIN></TKNHeader>
  <TKN><Digits>6</Digits><Interval>30</Interval><AddPIN>0</AddPIN></TKN>
  <TKNTrailer></TKNTrailer>
</TKNBatch>
`
	for _, tc := range []struct {
		name, password, template string
		digits, interval         int
		pinMode                  string
	}{
		{name: "plain", digits: 8, interval: 60, pinMode: PINModePINPad},
		{name: "password", password: "pw-123", digits: 8, interval: 60, pinMode: PINModePINPad},
		{name: "token attributes", template: overrides, digits: 6, interval: 30, pinMode: PINModeFob},
	} {
		t.Run(tc.name, func(t *testing.T) {
			password := tc.password
			dir := t.TempDir()
			args := []string{"issue"}
			if password != "" {
				args = append(args, "--new-password="+password)
			}
			if tc.template != "" {
				tpl := filepath.Join(dir, "template.xml")
				if err := os.WriteFile(tpl, []byte(tc.template), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--template="+tpl)
			}
			issued, err := stoken.Run(dir, args...)
			if err != nil {
				t.Fatal(err)
			}
			res, err := ParseSDTID(bytes.NewReader(issued), SDTIDOptions{Password: password})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) != 1 {
				t.Fatalf("rejections %v", res.Rejections)
			}
			r := res.Records[0]
			if r.Digits != tc.digits || r.Interval != tc.interval || r.PINMode != tc.pinMode {
				t.Fatalf("record %+v, want %d digits, %d s, PIN mode %s", r, tc.digits, tc.interval, tc.pinMode)
			}
			var ours bytes.Buffer
			w, err := NewSDTIDWriter(&ours, SDTIDHeader{Password: password, Digits: r.Digits, Interval: r.Interval,
				PINMode: r.PINMode, Expires: r.ExpiresAt, Birth: at, Rand: rand.Reader})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Add(SDTIDToken{Serial: r.Serial, Seed: r.Seed}); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			theirs, mine := filepath.Join(dir, "issued.sdtid"), filepath.Join(dir, "ours.sdtid")
			if err := os.WriteFile(theirs, issued, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(mine, ours.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			code := func(file string) string {
				out, err := stoken.Run(dir, "tokencode", "--force", "--file="+file, "--pin=0000",
					"--password="+password, "--use-time=1767225600")
				if err != nil {
					t.Fatal(err)
				}
				return strings.TrimSpace(string(out))
			}
			if a, b := code(theirs), code(mine); a != b || len(a) != r.Digits {
				t.Errorf("stoken tokencode: issued file %q, our file %q", a, b)
			}
			show, err := stoken.Run(dir, "show", "--file="+mine, "--password="+password)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(show), r.Serial) {
				t.Errorf("stoken show of our file:\n%s", show)
			}
		})
	}
}

// FuzzSDTID: whatever the bytes, the reader returns rows that keep the
// package's promises or an error wrapping a sentinel, never a panic.
func FuzzSDTID(f *testing.F) {
	seedCorpus(f, "sdtid/*.sdtid", func(b []byte) { f.Add(b, ""); f.Add(b, "hunter2") })
	batch, _ := writeBatch(f, 2, "")
	f.Add(batch, "")
	f.Fuzz(func(t *testing.T, data []byte, password string) {
		res, err := ParseSDTID(bytes.NewReader(data), SDTIDOptions{Password: password})
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if len(password) >= 4 && strings.Contains(err.Error(), password) && !bytes.Contains(data, []byte(password)) {
				t.Fatalf("error shows the password: %v", err)
			}
			return
		}
		checkRows(t, res)
		for _, r := range res.Records {
			if len(r.Seed) != 16 || r.Algorithm != AlgSecurID || r.PINMode == "" || r.ExpiresAt.IsZero() {
				t.Fatalf("record %+v", r)
			}
		}
	})
}

func isSentinel(err error) bool {
	for _, e := range []error{ErrMalformed, ErrTooLarge, ErrDTD, ErrNeedKey, ErrWrongKey, ErrMACMismatch, ErrMACMissing} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
