package otp_test

import (
	"testing"
	"time"

	"tokend/appliance/otp"
)

func BenchmarkSecurIDCode(b *testing.B) {
	s := newSecurID(b, seedA, serialA, 8, 60)
	at := time.Unix(1700000000, 0)
	for b.Loop() {
		if _, err := s.Code(at); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSecurIDWindow21 is a verifier's ±10 window through Codes (six
// AES chains for 21 steps).
func BenchmarkSecurIDWindow21(b *testing.B) {
	s := newSecurID(b, seedA, serialA, 8, 60)
	center := s.Step(time.Unix(1700000000, 0))
	for b.Loop() {
		if _, err := s.Codes(center-10, 21); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSecurIDWindow21PerStep is the same window one chain per step,
// the cost Codes avoids.
func BenchmarkSecurIDWindow21PerStep(b *testing.B) {
	s := newSecurID(b, seedA, serialA, 8, 60)
	center := s.Step(time.Unix(1700000000, 0))
	for b.Loop() {
		for k := center - 10; k <= center+10; k++ {
			if _, err := s.CodeAt(k); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkVerifySecurID21 is a full ±10 verification (codes + comparisons).
func BenchmarkVerifySecurID21(b *testing.B) {
	s := newSecurID(b, seedA, serialA, 8, 60)
	center := s.Step(time.Unix(1700000000, 0))
	for b.Loop() {
		if _, ok, err := otp.Verify(s, "12345678", center, 10); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkTOTPCodeSHA1(b *testing.B) {
	tt := otp.TOTP{Key: []byte("12345678901234567890"), Digits: 6, Period: 30}
	at := time.Unix(1700000000, 0)
	for b.Loop() {
		if _, err := tt.Code(at); err != nil {
			b.Fatal(err)
		}
	}
}
