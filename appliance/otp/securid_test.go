package otp_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance/otp"
)

const (
	seedA   = "000102030405060708090a0b0c0d0e0f"
	seedB   = "f445522089a5e694001ca7b4c9238a7e" // Vector B's K_TOKEN
	serialA = "000123456789"
)

// securIDVectors are the rows of ctkip.md §9.5 (stoken-verified) plus the
// two results stated in §9.3.
var securIDVectors = []struct {
	name             string
	seed, serial     string
	digits, interval int
	unix             int64
	want             string
}{
	{"A 8/60 2000-01-01", seedA, serialA, 8, 60, 946684800, "24131318"},
	{"A 8/60 1000000000", seedA, serialA, 8, 60, 1000000000, "55294033"},
	{"A 8/60 1234567890", seedA, serialA, 8, 60, 1234567890, "80778817"},
	{"A 8/60 1700000000", seedA, serialA, 8, 60, 1700000000, "98488053"},
	{"A 8/60 1700000060", seedA, serialA, 8, 60, 1700000060, "62564781"},
	{"A 8/60 1700000125", seedA, serialA, 8, 60, 1700000125, "27358636"},
	{"A 8/60 1735689599", seedA, serialA, 8, 60, 1735689599, "43698824"},
	{"A 8/60 2000000000", seedA, serialA, 8, 60, 2000000000, "46438421"},
	{"A 6/60 1700000000", seedA, serialA, 6, 60, 1700000000, "488053"},
	{"A 6/60 1234567890", seedA, serialA, 6, 60, 1234567890, "778817"},
	{"A 8/30 1000000000", seedA, serialA, 8, 30, 1000000000, "21531371"},
	{"A 8/30 1700000000", seedA, serialA, 8, 30, 1700000000, "62564781"},
	{"A 8/30 1700000059", seedA, serialA, 8, 30, 1700000059, "82511427"},
	{"A 8/30 1700000125", seedA, serialA, 8, 30, 1700000125, "64302398"},
	{"4e41 8/60 1700000000", "4e410e4057f9cff2fab36e56695d904c", "838999658504", 8, 60, 1700000000, "53891090"},
	{"4e41 8/60 1700000059 leading zero", "4e410e4057f9cff2fab36e56695d904c", "838999658504", 8, 60, 1700000059, "09487368"},
	{"4e41 6/30 1700000000", "4e410e4057f9cff2fab36e56695d904c", "838999658504", 6, 30, 1700000000, "487368"},
	{"4e41 6/30 1700000059", "4e410e4057f9cff2fab36e56695d904c", "838999658504", 6, 30, 1700000059, "751987"},
	{"0160 8/60 1700000000 leading zero", "0160eaa230d6df6633f37ee2707d0a61", "499816235622", 8, 60, 1700000000, "01739862"},
	{"0160 8/60 1700000125 leading zero", "0160eaa230d6df6633f37ee2707d0a61", "499816235622", 8, 60, 1700000125, "07913794"},
	{"B 8/60 1700000000", seedB, serialA, 8, 60, 1700000000, "87543326"},
	{"B 6/30 1700000000", seedB, serialA, 6, 30, 1700000000, "662999"},
	{"B 8/60 1893456000", seedB, serialA, 8, 60, 1893456000, "12815809"},
	{"B 6/30 1893456000", seedB, serialA, 6, 30, 1893456000, "815809"},
	// §9.3 text: 8/60 and 8/30 at the traced time; short serial is padded.
	{"trace 8/60", seedA, serialA, 8, 60, 1700000000, "98488053"},
	{"trace 8/30", seedA, serialA, 8, 30, 1700000000, "62564781"},
	{"trace short serial", seedA, "123456789", 8, 60, 1700000000, "98488053"},
	// §9.5 boundary note: 22:14:19 and 22:14:20 share a UTC minute.
	{"boundary 8/60 1700000059", seedA, serialA, 8, 60, 1700000059, "62564781"},
}

func newSecurID(t testing.TB, seedHex, serial string, digits, interval int) otp.SecurID {
	t.Helper()
	seed, err := hex.DecodeString(seedHex)
	if err != nil {
		t.Fatal(err)
	}
	s, err := otp.NewSecurID(seed, serial, digits, interval)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSecurIDVectors(t *testing.T) {
	for _, tc := range securIDVectors {
		t.Run(tc.name, func(t *testing.T) {
			s := newSecurID(t, tc.seed, tc.serial, tc.digits, tc.interval)
			got, err := s.Code(time.Unix(tc.unix, 0))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Code(%d) = %s, want %s", tc.unix, got, tc.want)
			}
			// Same answer through the step API and through a batch that
			// starts two steps earlier (a different position in the chain).
			step := s.Step(time.Unix(tc.unix, 0))
			if step != tc.unix/int64(tc.interval) {
				t.Errorf("Step = %d, want %d", step, tc.unix/int64(tc.interval))
			}
			at, err := s.CodeAt(step)
			if err != nil || at != tc.want {
				t.Errorf("CodeAt(%d) = %q, %v; want %s", step, at, err, tc.want)
			}
			batch, err := s.Codes(step-2, 5)
			if err != nil {
				t.Fatal(err)
			}
			if batch[2] != tc.want {
				t.Errorf("Codes(step-2, 5)[2] = %s, want %s", batch[2], tc.want)
			}
		})
	}
}

// TestSecurIDCodesMatchesCodeAt checks the chain reuse in Codes against one
// chain per step, across chain boundaries and for every interval/digits.
func TestSecurIDCodesMatchesCodeAt(t *testing.T) {
	for _, interval := range []int{30, 60} {
		for _, digits := range []int{1, 6, 7, 8} {
			t.Run(fmt.Sprintf("%d digits %d s", digits, interval), func(t *testing.T) {
				s := newSecurID(t, seedB, "838999658504", digits, interval)
				first := s.Step(time.Unix(1700000000, 0)) - 11
				got, err := s.Codes(first, 23)
				if err != nil {
					t.Fatal(err)
				}
				want := make([]string, 23)
				for i := range want {
					if want[i], err = s.CodeAt(first + int64(i)); err != nil {
						t.Fatal(err)
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Codes vs CodeAt (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestSecurIDShorterDigitsAreSuffix: fewer digits are the low-order digits
// of the same value (v mod 10^digits).
func TestSecurIDShorterDigitsAreSuffix(t *testing.T) {
	at := time.Unix(1700000000, 0)
	full, err := newSecurID(t, seedA, serialA, 8, 60).Code(at)
	if err != nil {
		t.Fatal(err)
	}
	for d := 1; d <= 8; d++ {
		got, err := newSecurID(t, seedA, serialA, d, 60).Code(at)
		if err != nil {
			t.Fatal(err)
		}
		if want := full[8-d:]; got != want {
			t.Errorf("%d digits = %s, want %s", d, got, want)
		}
	}
}

func TestSecurIDWindowBoundaries(t *testing.T) {
	tests := []struct {
		name     string
		interval int
		a, b     int64
		same     bool
	}{
		{"60 s last second vs next minute", 60, 1700000039, 1700000040, false},
		{"60 s within a minute", 60, 1700000040, 1700000099, true},
		{"30 s :29 vs :30", 30, 1700000009, 1700000010, false},
		{"30 s within half minute", 30, 1700000010, 1700000039, true},
		{"60 s chain boundary (minute 15 to 16)", 60, 1700000159, 1700000160, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSecurID(t, seedA, serialA, 8, tc.interval)
			a, errA := s.Code(time.Unix(tc.a, 0))
			b, errB := s.Code(time.Unix(tc.b, 0))
			if errA != nil || errB != nil {
				t.Fatal(errA, errB)
			}
			if (a == b) != tc.same {
				t.Errorf("codes %s and %s: same=%v, want %v", a, b, a == b, tc.same)
			}
			if sa, sb := s.Step(time.Unix(tc.a, 0)), s.Step(time.Unix(tc.b, 0)); (sa == sb) != tc.same {
				t.Errorf("steps %d and %d: same=%v, want %v", sa, sb, sa == sb, tc.same)
			}
		})
	}
}

func TestSecurIDStepTime(t *testing.T) {
	s := newSecurID(t, seedA, serialA, 8, 30)
	step := s.Step(time.Unix(1700000059, 0))
	if got, want := s.StepTime(step), time.Unix(1700000040, 0).UTC(); !got.Equal(want) {
		t.Errorf("StepTime = %v, want %v", got, want)
	}
}

func TestNormalizeSerial(t *testing.T) {
	tests := []struct {
		name, in, want string
		err            error
	}{
		{"full", "000123456789", "000123456789", nil},
		{"short padded", "123456789", "000123456789", nil},
		{"one digit", "7", "000000000007", nil},
		{"empty", "", "", otp.ErrSerial},
		{"too long", "1234567890123", "", otp.ErrSerial},
		{"letters", "00012345678A", "", otp.ErrSerial},
		{"space", " 00123456789", "", otp.ErrSerial},
		{"sign", "-123", "", otp.ErrSerial},
		{"non-ascii digit", "١٢٣", "", otp.ErrSerial},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := otp.NormalizeSerial(tc.in)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Errorf("NormalizeSerial(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestSecurIDInvalid(t *testing.T) {
	seed := make([]byte, 16)
	tests := []struct {
		name             string
		seed             []byte
		serial           string
		digits, interval int
		err              error
	}{
		{"short seed", seed[:15], serialA, 8, 60, otp.ErrKey},
		{"long seed", append(seed, 0), serialA, 8, 60, otp.ErrKey},
		{"bad serial", seed, "12345678901x", 8, 60, otp.ErrSerial},
		{"zero digits", seed, serialA, 0, 60, otp.ErrDigits},
		{"nine digits", seed, serialA, 9, 60, otp.ErrDigits},
		{"interval 0", seed, serialA, 8, 0, otp.ErrInterval},
		{"interval 45", seed, serialA, 8, 45, otp.ErrInterval},
		{"interval 120", seed, serialA, 8, 120, otp.ErrInterval},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := otp.NewSecurID(tc.seed, tc.serial, tc.digits, tc.interval); !errors.Is(err, tc.err) {
				t.Errorf("NewSecurID err = %v, want %v", err, tc.err)
			}
			// The struct literal path must refuse the same values.
			s := otp.SecurID{Serial: tc.serial, Digits: tc.digits, Interval: tc.interval}
			if tc.err == otp.ErrKey {
				return // a [16]byte cannot have the wrong size
			}
			if _, err := s.Code(time.Unix(1700000000, 0)); !errors.Is(err, tc.err) {
				t.Errorf("Code err = %v, want %v", err, tc.err)
			}
			if _, err := s.Codes(0, 3); !errors.Is(err, tc.err) {
				t.Errorf("Codes err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestSecurIDTimeRange(t *testing.T) {
	s := newSecurID(t, seedA, serialA, 8, 60)
	tests := []struct {
		name  string
		first int64
		n     int
		err   error
	}{
		{"epoch", 0, 1, nil},
		{"negative step", -1, 1, otp.ErrTimeRange},
		{"window reaching before epoch", -2, 5, otp.ErrTimeRange},
		{"year 9999 last minute", 253402300799 / 60, 1, nil},
		{"year 10000", 253402300800 / 60, 1, otp.ErrTimeRange},
		{"overflowing window", 1<<63 - 2, 4, otp.ErrTimeRange},
		{"negative count", 0, -1, otp.ErrWindow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Codes(tc.first, tc.n); !errors.Is(err, tc.err) {
				t.Errorf("Codes(%d, %d) err = %v, want %v", tc.first, tc.n, err, tc.err)
			}
		})
	}
	if _, err := s.Code(time.Unix(-1, 0)); !errors.Is(err, otp.ErrTimeRange) {
		t.Errorf("Code(before epoch) err = %v, want ErrTimeRange", err)
	}
	if got, err := s.Codes(5, 0); err != nil || len(got) != 0 {
		t.Errorf("Codes(5, 0) = %v, %v; want empty", got, err)
	}
}

// TestSecurIDUsesUTC: the calendar fields are UTC whatever the location of
// the time value passed in.
func TestSecurIDUsesUTC(t *testing.T) {
	s := newSecurID(t, seedA, serialA, 8, 60)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	got, err := s.Code(time.Unix(1700000000, 0).In(zone))
	if err != nil || got != "98488053" {
		t.Errorf("Code in +05:30 = %q, %v; want 98488053", got, err)
	}
}
