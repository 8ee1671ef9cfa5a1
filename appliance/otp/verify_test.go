package otp_test

import (
	"errors"
	"testing"
	"time"

	"tokend/appliance/otp"
)

// fixedCodes is a Generator over a fixed table, to test the selection logic
// independently of any algorithm.
type fixedCodes map[int64]string

func (f fixedCodes) Codes(first int64, n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		out[i] = f[first+int64(i)]
		if out[i] == "" {
			out[i] = "000000"
		}
	}
	return out, nil
}

func TestVerifySelection(t *testing.T) {
	tests := []struct {
		name   string
		codes  fixedCodes
		code   string
		center int64
		window int
		step   int64
		ok     bool
	}{
		{"centre", fixedCodes{100: "111111"}, "111111", 100, 2, 100, true},
		{"minus one", fixedCodes{99: "111111"}, "111111", 100, 1, 99, true},
		{"plus window edge", fixedCodes{103: "111111"}, "111111", 100, 3, 103, true},
		{"outside window", fixedCodes{104: "111111"}, "111111", 100, 3, 0, false},
		{"window 0 neighbour ignored", fixedCodes{101: "111111"}, "111111", 100, 0, 0, false},
		{"nearest of two wins", fixedCodes{97: "111111", 101: "111111"}, "111111", 100, 5, 101, true},
		{"tie goes to earlier", fixedCodes{98: "111111", 102: "111111"}, "111111", 100, 5, 98, true},
		{"centre beats neighbours", fixedCodes{99: "111111", 100: "111111", 101: "111111"}, "111111", 100, 1, 100, true},
		{"prefix is not a match", fixedCodes{100: "111111"}, "11111", 100, 1, 0, false},
		{"longer is not a match", fixedCodes{100: "111111"}, "1111110", 100, 1, 0, false},
		{"empty code", fixedCodes{100: "111111"}, "", 100, 1, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			step, ok, err := otp.Verify(tc.codes, tc.code, tc.center, tc.window)
			if err != nil || ok != tc.ok || step != tc.step {
				t.Errorf("Verify = %d, %v, %v; want %d, %v", step, ok, err, tc.step, tc.ok)
			}
		})
	}
}

func TestVerifyErrors(t *testing.T) {
	g := fixedCodes{}
	for _, w := range []int{-1, otp.MaxWindow + 1} {
		if _, _, err := otp.Verify(g, "000000", 100, w); !errors.Is(err, otp.ErrWindow) {
			t.Errorf("window %d: err = %v, want ErrWindow", w, err)
		}
	}
	if _, _, err := otp.Verify(g, "000000", -1<<63, 1); !errors.Is(err, otp.ErrWindow) {
		t.Errorf("underflowing centre: err = %v, want ErrWindow", err)
	}
	for _, n := range []int{0, 2*otp.MaxWindow + 2} {
		if _, _, err := otp.VerifyRange(g, "000000", 0, n); !errors.Is(err, otp.ErrWindow) {
			t.Errorf("VerifyRange n=%d: err = %v, want ErrWindow", n, err)
		}
	}
	s := otp.SecurID{Serial: "1", Digits: 8, Interval: 60}
	if _, _, err := otp.Verify(s, "00000000", 0, 1); !errors.Is(err, otp.ErrTimeRange) {
		t.Errorf("SecurID window before epoch: err = %v, want ErrTimeRange", err)
	}
}

// TestVerifySecurID: the verifier finds a real code at every offset of a ±10
// window and refuses a wrong one.
func TestVerifySecurID(t *testing.T) {
	s := newSecurID(t, seedA, serialA, 8, 30)
	center := s.Step(time.Unix(1700000000, 0))
	for off := int64(-10); off <= 10; off++ {
		code, err := s.CodeAt(center + off)
		if err != nil {
			t.Fatal(err)
		}
		step, ok, err := otp.Verify(s, code, center, 10)
		if err != nil || !ok {
			t.Fatalf("offset %d: Verify = %d, %v, %v", off, step, ok, err)
		}
		// A code may repeat in the window by chance; the match must at
		// least carry the same code and be no further from the centre.
		if step != center+off {
			again, _ := s.CodeAt(step)
			if again != code || abs(step-center) > abs(off) {
				t.Errorf("offset %d: matched step %d", off, step-center)
			}
		}
	}
	if _, ok, _ := otp.Verify(s, "12345678", center, 10); ok {
		t.Error("wrong code accepted")
	}
	// Inherent in the algorithm (ctkip.md §9.5): the 60 s code of 22:13 is
	// the 30 s code of 22:12:30, the same AES chain at the same offset.
	if step, ok, _ := otp.Verify(s, "98488053", center, 10); !ok || step != 1700000000/30-1 {
		t.Errorf("8/60 code of the same seed: Verify = %d, %v; want step %d", step, ok, 1700000000/30-1)
	}
	passcode, _ := otp.AddPIN("62564781", "1234")
	code, err := otp.RemovePIN(passcode, "1234")
	if err != nil {
		t.Fatal(err)
	}
	if step, ok, err := otp.Verify(s, code, center, 1); !ok || err != nil || step != center {
		t.Errorf("passcode: Verify = %d, %v, %v", step, ok, err)
	}
}

func TestVerifyRangeHOTP(t *testing.T) {
	h := otp.HOTP{Key: []byte("12345678901234567890"), Digits: 6}
	step, ok, err := otp.VerifyRange(h, "162583", 3, 10) // counter 7
	if err != nil || !ok || step != 7 {
		t.Errorf("VerifyRange = %d, %v, %v; want 7", step, ok, err)
	}
	if _, ok, _ := otp.VerifyRange(h, "755224", 1, 10); ok { // counter 0 is behind
		t.Error("counter 0 accepted from counter 1")
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		name, a, b string
		want       bool
	}{
		{"same", "012345", "012345", true},
		{"last digit", "012345", "012346", false},
		{"first digit", "012345", "112345", false},
		{"length", "012345", "01234", false},
		{"both empty", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := otp.Equal(tc.a, tc.b); got != tc.want {
				t.Errorf("Equal(%q, %q) = %v", tc.a, tc.b, got)
			}
		})
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}
