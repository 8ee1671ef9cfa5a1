package radius

import (
	"bytes"
	"testing"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
)

// FuzzDecode feeds outside bytes to the packet decoder a known client's
// packets go through: it must never panic, and whatever it accepts must be
// an Access-Request with a valid Message-Authenticator.
func FuzzDecode(f *testing.F) {
	secret := []byte("a-radius-secret-for-fuzzing")
	p := radius.New(radius.CodeAccessRequest, secret)
	_ = rfc2865.UserName_SetString(p, "alice")
	_ = rfc2865.UserPassword_SetString(p, "12345678")
	_ = rfc2865.State_SetString(p, "tkd1:abc")
	if err := AddMessageAuthenticator(p); err != nil {
		f.Fatal(err)
	}
	good, err := p.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, true)
	f.Add(good[:20], false)
	f.Add(append(bytes.Clone(good), 80, 18), true)
	f.Add([]byte{1, 1, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false)
	f.Fuzz(func(t *testing.T, b []byte, requireMA bool) {
		req, reason := decode(b, secret, requireMA)
		if req == nil {
			if reason == "" {
				t.Fatal("refused without a reason")
			}
			return
		}
		if req.pkt.Code != radius.CodeAccessRequest {
			t.Fatalf("accepted code %v", req.pkt.Code)
		}
		if has, err := checkRequestMA(b[:int(b[2])<<8|int(b[3])], secret); requireMA && (!has || err != nil) {
			t.Fatalf("accepted without a valid Message-Authenticator: %v %v", has, err)
		}
	})
}
