package otp

import (
	"crypto/aes"
	"encoding/hex"
	"testing"
)

// TestSecurIDTrace checks every row of the worked trace in ctkip.md §9.3:
// each documented block encrypted under the previous documented key gives the
// next documented key, and our chain ends at the same 16 bytes.
func TestSecurIDTrace(t *testing.T) {
	seed := mustHex(t, "000102030405060708090a0b0c0d0e0f")
	rows := []struct {
		name, block, out string
	}{
		{"n=2", "2023aaaaaaaaaaaa23456789bbbbbbbb", "0b9e4050b232ea370c21cb5f0fe1cec4"},
		{"n=3", "202311aaaaaaaaaa23456789bbbbbbbb", "fb2e5294a426c247ed75c9d2e221ac5c"},
		{"n=4", "20231114aaaaaaaa23456789bbbbbbbb", "757509ada3b76e4bfe0c248918ca5ee7"},
		{"n=5", "2023111422aaaaaa23456789bbbbbbbb", "412e195c7054b7b460e48f09773aa4dd"},
		{"n=8", "202311142212000023456789bbbbbbbb", "12fc042f653cdef51b922dadd23f38ac"},
	}
	key := seed
	for _, r := range rows {
		c, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 16)
		c.Encrypt(got, mustHex(t, r.block))
		if hex.EncodeToString(got) != r.out {
			t.Fatalf("%s: AES(%x, %s) = %x, want %s", r.name, key, r.block, got, r.out)
		}
		key = got
	}

	serial, err := securIDSerialBCD("000123456789")
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(serial[:]); got != "23456789" {
		t.Errorf("serial BCD = %s, want 23456789", got)
	}
	var s [16]byte
	copy(s[:], seed)
	// 1700000000 = 22:13:20; its 60 s block starts at 22:12:00.
	start := int64(1700000000) / 240 * 240
	out := securIDChain(&s, serial, start)
	if got := hex.EncodeToString(out[:]); got != rows[len(rows)-1].out {
		t.Errorf("chain output = %s, want %s", got, rows[len(rows)-1].out)
	}
}

func TestFloorDiv(t *testing.T) {
	tests := []struct {
		name    string
		a, b, q int64
	}{
		{"zero", 0, 30, 0},
		{"positive exact", 60, 30, 2},
		{"positive rounds down", 59, 30, 1},
		{"negative exact", -60, 30, -2},
		{"negative rounds down", -1, 30, -1},
		{"negative rounds down further", -31, 30, -2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := floorDiv(tc.a, tc.b); got != tc.q {
				t.Errorf("floorDiv(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.q)
			}
		})
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
