package otp_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance/otp"
)

// RFC 4226 Appendix D: secret "12345678901234567890", counters 0–9.
func TestHOTPRFC4226(t *testing.T) {
	h := otp.HOTP{Key: []byte("12345678901234567890"), Digits: 6}
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	for counter, w := range want {
		t.Run(w, func(t *testing.T) {
			got, err := h.Code(uint64(counter))
			if err != nil || got != w {
				t.Errorf("HOTP(%d) = %q, %v; want %s", counter, got, err, w)
			}
		})
	}
	batch, err := h.Codes(0, len(want))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, batch); diff != "" {
		t.Errorf("Codes(0, 10) (-want +got):\n%s", diff)
	}
}

// RFC 6238 Appendix B: 8 digits, X = 30, T0 = 0, ASCII seeds of 20/32/64 bytes.
func TestTOTPRFC6238(t *testing.T) {
	keys := map[otp.Algorithm][]byte{
		otp.SHA1:   []byte("12345678901234567890"),
		otp.SHA256: []byte("12345678901234567890123456789012"),
		otp.SHA512: []byte("1234567890123456789012345678901234567890123456789012345678901234"),
	}
	tests := []struct {
		name string
		unix int64
		alg  otp.Algorithm
		want string
	}{
		{"59 SHA1", 59, otp.SHA1, "94287082"},
		{"59 SHA256", 59, otp.SHA256, "46119246"},
		{"59 SHA512", 59, otp.SHA512, "90693936"},
		{"1111111109 SHA1", 1111111109, otp.SHA1, "07081804"},
		{"1111111109 SHA256", 1111111109, otp.SHA256, "68084774"},
		{"1111111109 SHA512", 1111111109, otp.SHA512, "25091201"},
		{"1111111111 SHA1", 1111111111, otp.SHA1, "14050471"},
		{"1111111111 SHA256", 1111111111, otp.SHA256, "67062674"},
		{"1111111111 SHA512", 1111111111, otp.SHA512, "99943326"},
		{"1234567890 SHA1", 1234567890, otp.SHA1, "89005924"},
		{"1234567890 SHA256", 1234567890, otp.SHA256, "91819424"},
		{"1234567890 SHA512", 1234567890, otp.SHA512, "93441116"},
		{"2000000000 SHA1", 2000000000, otp.SHA1, "69279037"},
		{"2000000000 SHA256", 2000000000, otp.SHA256, "90698825"},
		{"2000000000 SHA512", 2000000000, otp.SHA512, "38618901"},
		{"20000000000 SHA1", 20000000000, otp.SHA1, "65353130"},
		{"20000000000 SHA256", 20000000000, otp.SHA256, "77737706"},
		{"20000000000 SHA512", 20000000000, otp.SHA512, "47863826"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tt := otp.TOTP{Key: keys[tc.alg], Digits: 8, Period: 30, Algorithm: tc.alg}
			got, err := tt.Code(time.Unix(tc.unix, 0))
			if err != nil || got != tc.want {
				t.Errorf("TOTP(%d) = %q, %v; want %s", tc.unix, got, err, tc.want)
			}
			step := tt.Step(time.Unix(tc.unix, 0))
			if step != tc.unix/30 {
				t.Errorf("Step = %d, want %d", step, tc.unix/30)
			}
			// 6 digits are the low-order six of the same value.
			tt.Digits = 6
			if got6, err := tt.Code(time.Unix(tc.unix, 0)); err != nil || got6 != tc.want[2:] {
				t.Errorf("6-digit TOTP = %q, %v; want %s", got6, err, tc.want[2:])
			}
		})
	}
}

func TestTOTPParameters(t *testing.T) {
	key := []byte("12345678901234567890")
	t.Run("T0 shifts steps", func(t *testing.T) {
		a := otp.TOTP{Key: key, Digits: 8, Period: 30}
		b := otp.TOTP{Key: key, Digits: 8, Period: 30, T0: 1000}
		ca, _ := a.Code(time.Unix(59, 0))
		cb, err := b.Code(time.Unix(1059, 0))
		if err != nil || ca != cb {
			t.Errorf("T0=1000 at 1059 = %q, %v; want %s", cb, err, ca)
		}
		if got := b.StepTime(1); !got.Equal(time.Unix(1030, 0)) {
			t.Errorf("StepTime(1) = %v", got)
		}
	})
	t.Run("60 s period", func(t *testing.T) {
		a := otp.TOTP{Key: key, Digits: 8, Period: 60}
		got, err := a.Code(time.Unix(119, 0)) // step 1 = RFC 6238 step at 59 s with X=30
		if err != nil || got != "94287082" {
			t.Errorf("Code = %q, %v; want 94287082", got, err)
		}
	})
	tests := []struct {
		name string
		tt   otp.TOTP
		at   int64
		err  error
	}{
		{"period 0", otp.TOTP{Key: key, Digits: 6}, 59, otp.ErrInterval},
		{"negative period", otp.TOTP{Key: key, Digits: 6, Period: -30}, 59, otp.ErrInterval},
		{"5 digits", otp.TOTP{Key: key, Digits: 5, Period: 30}, 59, otp.ErrDigits},
		{"9 digits", otp.TOTP{Key: key, Digits: 9, Period: 30}, 59, otp.ErrDigits},
		{"empty key", otp.TOTP{Digits: 6, Period: 30}, 59, otp.ErrKey},
		{"bad algorithm", otp.TOTP{Key: key, Digits: 6, Period: 30, Algorithm: 7}, 59, otp.ErrAlgorithm},
		{"before T0", otp.TOTP{Key: key, Digits: 6, Period: 30, T0: 100}, 99, otp.ErrTimeRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.tt.Code(time.Unix(tc.at, 0)); !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestHOTPInvalid(t *testing.T) {
	key := []byte("12345678901234567890")
	tests := []struct {
		name  string
		h     otp.HOTP
		first int64
		n     int
		err   error
	}{
		{"negative counter", otp.HOTP{Key: key, Digits: 6}, -1, 1, otp.ErrWindow},
		{"negative count", otp.HOTP{Key: key, Digits: 6}, 0, -1, otp.ErrWindow},
		{"digits", otp.HOTP{Key: key, Digits: 10}, 0, 1, otp.ErrDigits},
		{"empty key", otp.HOTP{Digits: 6}, 0, 1, otp.ErrKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.h.Codes(tc.first, tc.n); !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestParseAlgorithm(t *testing.T) {
	tests := []struct {
		in   string
		want otp.Algorithm
		err  error
	}{
		{"SHA1", otp.SHA1, nil},
		{"sha-256", otp.SHA256, nil},
		{"Sha512", otp.SHA512, nil},
		{"MD5", 0, otp.ErrAlgorithm},
		{"", 0, otp.ErrAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := otp.ParseAlgorithm(tc.in)
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Errorf("ParseAlgorithm(%q) = %v, %v; want %v, %v", tc.in, got, err, tc.want, tc.err)
			}
			if err == nil && got.String() != map[otp.Algorithm]string{otp.SHA1: "SHA1", otp.SHA256: "SHA256", otp.SHA512: "SHA512"}[got] {
				t.Errorf("String() = %s", got)
			}
		})
	}
}
