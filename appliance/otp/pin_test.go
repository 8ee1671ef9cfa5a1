package otp_test

import (
	"errors"
	"testing"

	"tokend/appliance/otp"
)

func TestAddPIN(t *testing.T) {
	tests := []struct {
		name, code, pin, want string
		err                   error
	}{
		// ctkip.md §9.4 examples (code of §9.3, 8 digits).
		{"doc 1234", "98488053", "1234", "98489287", nil},
		{"doc 98765432", "98488053", "98765432", "86143485", nil},
		{"doc 0000 is identity", "98488053", "0000", "98488053", nil},
		{"no carry", "00000099", "9999", "00009988", nil},
		{"leading zero kept", "01739862", "0000", "01739862", nil},
		{"6-digit code, 6-digit PIN", "488053", "123456", "501409", nil},
		{"6-digit code, 4-digit PIN", "488053", "9999", "487942", nil},
		{"PIN longer than code", "488053", "1234567", "", otp.ErrPINLength},
		{"PIN too short", "98488053", "123", "", otp.ErrPIN},
		{"PIN too long", "98488053", "123456789", "", otp.ErrPIN},
		{"PIN not digits", "98488053", "12a4", "", otp.ErrPIN},
		{"empty PIN", "98488053", "", "", otp.ErrPIN},
		{"code not digits", "9848805x", "1234", "", otp.ErrCode},
		{"empty code", "", "1234", "", otp.ErrCode},
		{"code too long", "123456789", "1234", "", otp.ErrCode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := otp.AddPIN(tc.code, tc.pin)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("AddPIN(%q, %q) = %q, %v; want %q, %v", tc.code, tc.pin, got, err, tc.want, tc.err)
			}
			if err != nil {
				return
			}
			back, err := otp.RemovePIN(got, tc.pin)
			if err != nil || back != tc.code {
				t.Errorf("RemovePIN(%q, %q) = %q, %v; want %q", got, tc.pin, back, err, tc.code)
			}
		})
	}
}

// TestRemovePINInverse checks the inverse exhaustively over every digit pair.
func TestRemovePINInverse(t *testing.T) {
	for c := range 10 {
		for p := range 10 {
			code := "0000000" + string(rune('0'+c))
			pin := "000" + string(rune('0'+p))
			folded, err := otp.AddPIN(code, pin)
			if err != nil {
				t.Fatal(err)
			}
			if want := string(rune('0' + (c+p)%10)); folded[7:] != want {
				t.Fatalf("AddPIN last digit %d+%d = %s, want %s", c, p, folded[7:], want)
			}
			back, err := otp.RemovePIN(folded, pin)
			if err != nil || back != code {
				t.Fatalf("RemovePIN(%s, %s) = %s, %v; want %s", folded, pin, back, err, code)
			}
		}
	}
}

func TestValidatePIN(t *testing.T) {
	tests := []struct {
		name, pin string
		ok        bool
	}{
		{"4 digits", "0000", true},
		{"8 digits", "12345678", true},
		{"3 digits", "123", false},
		{"9 digits", "123456789", false},
		{"letters", "abcd", false},
		{"space", "123 ", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := otp.ValidatePIN(tc.pin); (err == nil) != tc.ok {
				t.Errorf("ValidatePIN(%q) = %v, want ok=%v", tc.pin, err, tc.ok)
			}
		})
	}
}
