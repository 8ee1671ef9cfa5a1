package ctkip

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCMACRFC4493(t *testing.T) {
	key := "2b7e151628aed2a6abf7158809cf4f3c"
	tests := []struct {
		name, msg, want string
	}{
		{"empty", "", "bb1d6929e95937287fa37d129b756746"},
		{"16 bytes", "6bc1bee22e409f96e93d7e117393172a", "070a16b46b4d4144f79bdd9dd04a287c"},
		{"40 bytes", "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411", "dfa66747de9ae63030ca32611497c827"},
		{"64 bytes", "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710", "51f0bebf7e3b9d92fc49741779363cfe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CMAC(unhex(t, key), unhex(t, tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			if h := hex.EncodeToString(got[:]); h != tt.want {
				t.Errorf("CMAC = %s, want %s", h, tt.want)
			}
		})
	}
	if _, err := CMAC(make([]byte, 15), nil); err == nil {
		t.Error("CMAC accepted a 15-byte key")
	}
}

// Vector A: captured from real RSA software (docs/ctkip.md §8.1).
func TestVectorA(t *testing.T) {
	rc := unhex(t, "846cd036914f3bf536e7354ece07b35a")
	rs := unhex(t, "79956b2fd8502465ad5c5fe99b9e7786")
	mod, err := base64.StdEncoding.DecodeString("1np1DIf3HOHAK2ahcRzZCJsqIC1QMEqtsdanKSEn5CGtLCdLv9LbLUYo6cQxKSJtwvigpeDgBAb/UYcUNXy/7dY7rA5WpYlsaA9h5C9qzPMBHxVGSIe5k61uUbAwdFhCMfLh776wR//VZ7cuypo5d3cCbvgHGwqw4ZuECbKvONM=")
	if err != nil {
		t.Fatal(err)
	}
	seed, err := DeriveSeed(rc, mod, rs)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(seed[:]); got != "4e410e4057f9cff2fab36e56695d904c" {
		t.Errorf("K_TOKEN = %s", got)
	}
	mac, err := ComputeMAC(seed, rc)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(mac[:]); got != "eca98d8e5bf211fb5167dada9c262296" {
		t.Errorf("MAC = %s", got)
	}

	// The RFC 4758 literal construction (counter first, label before the key)
	// is a known value that we must not produce.
	var rfcMsg []byte
	rfcMsg = append(rfcMsg, 0, 0, 0, 1)
	rfcMsg = append(rfcMsg, "Key generation"...)
	rfcMsg = append(rfcMsg, mod...)
	rfcMsg = append(rfcMsg, rs...)
	rfc, err := CMAC(rc, rfcMsg)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(rfc[:]); got != "7b3090625523ea59b9c5ebf3a78c3c9d" {
		t.Errorf("RFC-literal K_TOKEN = %s, want the documented 7b30…", got)
	}
	if bytes.Equal(rfc[:], seed[:]) {
		t.Error("DeriveSeed follows RFC 4758 literally, not RSA")
	}
}

func TestSeedRedacts(t *testing.T) {
	seed := Seed{0xde, 0xad, 0xbe, 0xef}
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "seed", seed)
	outs := []string{
		fmt.Sprint(seed), fmt.Sprintf("%v %s %x %X %q %#v %+v", seed, seed, seed, seed, seed, seed, seed),
		logBuf.String(),
	}
	for _, o := range outs {
		if strings.Contains(strings.ToLower(o), "deadbeef") || strings.Contains(o, "222 173") {
			t.Errorf("seed leaked: %q", o)
		}
	}
}

func TestDecryptNonceRejects(t *testing.T) {
	key := testKey(t)
	tests := []struct {
		name string
		ct   []byte
	}{
		{"empty", nil},
		{"short", make([]byte, 64)},
		{"garbage", bytes.Repeat([]byte{0x5a}, key.Size())},
		{"15 bytes plaintext", encryptOAEP(t, &key.PublicKey, make([]byte, 15))},
		{"32 bytes plaintext", encryptOAEP(t, &key.PublicKey, make([]byte, 32))},
		{"pkcs1v15", encryptPKCS1v15(t, &key.PublicKey, make([]byte, 16))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecryptNonce(key, tt.ct); err == nil {
				t.Error("DecryptNonce succeeded")
			}
		})
	}
}
