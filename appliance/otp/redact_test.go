package otp_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"tokend/appliance/otp"
)

// TestRedaction: no formatting verb or logger reveals seeds or keys.
func TestRedaction(t *testing.T) {
	seed, _ := hex.DecodeString(seedA)
	s, err := otp.NewSecurID(seed, serialA, 8, 60)
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("super-secret-key-0123")
	values := []struct {
		name   string
		v      any
		secret string
	}{
		{"SecurID", s, hex.EncodeToString(seed)},
		{"*SecurID", &s, hex.EncodeToString(seed)},
		{"HOTP", otp.HOTP{Key: key, Digits: 6}, string(key)},
		{"TOTP", otp.TOTP{Key: key, Digits: 6, Period: 30}, string(key)},
		{"*TOTP", &otp.TOTP{Key: key, Digits: 6, Period: 30}, string(key)},
	}
	for _, tc := range values {
		t.Run(tc.name, func(t *testing.T) {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d", "%q"} {
				out := fmt.Sprintf(verb, tc.v)
				if out != "[redacted]" {
					t.Errorf("%s = %q, want [redacted]", verb, out)
				}
			}
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "token", tc.v)
			slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "token", tc.v)
			out := buf.String()
			if strings.Count(out, "[redacted]") != 2 || strings.Contains(out, tc.secret) {
				t.Errorf("log output leaks or lacks redaction: %s", out)
			}
		})
	}
}
