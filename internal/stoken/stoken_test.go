package stoken_test

import (
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tokend/internal/stoken"
)

// TestTokencode checks the plumbing against ctkip.md §9.3/§9.4 values, which
// were themselves produced with stoken.
func TestTokencode(t *testing.T) {
	stoken.Require(t)
	seed, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f")
	at := time.Unix(1700000000, 0)
	tests := []struct {
		name             string
		serial           string
		digits, interval int
		pin, want        string
	}{
		{"8/60 no PIN", "000123456789", 8, 60, "", "98488053"},
		{"8/60 PIN 0000", "000123456789", 8, 60, "0000", "98488053"},
		{"8/60 PIN 1234", "000123456789", 8, 60, "1234", "98489287"},
		{"8/60 PIN 98765432", "000123456789", 8, 60, "98765432", "86143485"},
		{"6/60", "000123456789", 6, 60, "", "488053"},
		{"8/30", "000123456789", 8, 30, "", "62564781"},
		{"short serial padded", "123456789", 8, 60, "", "98488053"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := stoken.Tokencode(t, seed, tc.serial, tc.digits, tc.interval, tc.pin, at)
			if got != tc.want {
				t.Errorf("Tokencode = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestTokencodeFileErrors: an invalid PIN makes stoken fail, not hang.
func TestTokencodeFileErrors(t *testing.T) {
	stoken.Require(t)
	path := filepath.Join(t.TempDir(), "t.sdtid")
	seed := make([]byte, 16)
	if err := stoken.WriteSDTID(path, seed, "1", 8, 60); err != nil {
		t.Fatal(err)
	}
	if _, err := stoken.TokencodeFile(path, "123", time.Unix(1700000000, 0)); err == nil {
		t.Error("3-digit PIN: want error")
	}
	if _, err := stoken.TokencodeFile(filepath.Join(t.TempDir(), "missing"), "", time.Unix(0, 0)); err == nil {
		t.Error("missing file: want error")
	}
}

func TestTemplateRejects(t *testing.T) {
	tests := []struct {
		name   string
		seed   []byte
		serial string
	}{
		{"short seed", make([]byte, 15), "1"},
		{"empty serial", make([]byte, 16), ""},
		{"long serial", make([]byte, 16), "1234567890123"},
		{"letter in serial", make([]byte, 16), "12a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := stoken.Template(tc.seed, tc.serial, 8, 60); err == nil {
				t.Error("want error")
			}
		})
	}
	tpl, err := stoken.Template(make([]byte, 16), "42", 6, 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<SN>000000000042</SN>", "<Seed>=AAAAAAAAAAAAAAAAAAAAAA==</Seed>", "<DefDigits>6</DefDigits>", "<DefInterval>30</DefInterval>"} {
		if !strings.Contains(string(tpl), want) {
			t.Errorf("template lacks %s:\n%s", want, tpl)
		}
	}
}
