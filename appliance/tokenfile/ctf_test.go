package tokenfile

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tokend/internal/stoken"
)

// Exports of the vector token (testdata/sdtid/VECTORS.txt).
const (
	vecCTF        = "271188990969172353176577024616026577370207221571131314204172155426236252716765223"
	vecAndroid    = "http://127.0.0.1/securid/ctf?ctfData=271188990969172353176577024616026577370207221571131314204172155426236256671644437"
	vecIPhone     = "com.rsa.securid.iphone://ctf?ctfData=271188990969172353176577024616026577370207221571131314204172155426236256671644437"
	vecCTFPW1     = "271188990969163555045630016353014541633652103662657725406172155426236252716706067"
	vecDevID      = "0123456789abcdef0123456789abcdef"
	vecCTFDevID   = "271188990969106725442177706453642245365606663153711524645172155426236256643105004"
	vecTokencodeT = "42964862"
)

func vecToken(t *testing.T) CTFToken {
	seed, _ := hex.DecodeString(vecSeed)
	return CTFToken{Serial: vecSerial, Seed: seed, Digits: 8, Interval: 60, PINMode: PINModePINPad,
		ExpiresAt: time.Date(2031, 12, 4, 0, 0, 0, 0, time.UTC)}
}

func TestCTFVectors(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		opts       CTFOptions
	}{
		{name: "v2 numeric", want: vecCTF},
		{name: "android", want: vecAndroid, opts: CTFOptions{Smartphone: true}},
		{name: "iphone", want: vecIPhone, opts: CTFOptions{Smartphone: true}},
		{name: "password", want: vecCTFPW1, opts: CTFOptions{Password: "pw1"}},
		{name: "device id", want: vecCTFDevID, opts: CTFOptions{DeviceID: vecDevID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := vecToken(t)
			got, err := EncodeCTF(tok, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			android, ios := CTFLinks(got)
			if got != tc.want && android != tc.want && ios != tc.want {
				t.Fatalf("EncodeCTF = %s, want %s", got, tc.want)
			}
			dec, err := DecodeCTF(tc.want, CTFOptions{Password: tc.opts.Password, DeviceID: tc.opts.DeviceID})
			if err != nil {
				t.Fatal(err)
			}
			tok.PasswordBound, tok.DeviceBound = tc.opts.Password != "", tc.opts.DeviceID != ""
			if diff := cmp.Diff(tok, dec, cmpopts.IgnoreFields(CTFToken{}, "Seed")); diff != "" || !bytes.Equal(dec.Seed, tok.Seed) {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCTFRefusals(t *testing.T) {
	mistyped := []byte(vecCTF)
	mistyped[40] = '0' + (mistyped[40]-'0'+1)%8
	for _, tc := range []struct {
		name, s string
		opts    CTFOptions
		err     error
	}{
		{name: "mistyped", s: string(mistyped), err: ErrCTFChecksum},
		{name: "short", s: vecCTF[:80], err: ErrMalformed},
		{name: "letters", s: "x" + vecCTF[1:], err: ErrMalformed},
		{name: "wrong password", s: vecCTFPW1, opts: CTFOptions{Password: "pw2"}, err: ErrCTFLocked},
		{name: "missing password", s: vecCTFPW1, err: ErrCTFLocked},
		{name: "wrong device", s: vecCTFDevID, opts: CTFOptions{DeviceID: "ffff"}, err: ErrCTFLocked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeCTF(tc.s, tc.opts); !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

// TestCTFStoken: stoken imports every form EncodeCTF writes, with the
// binding it was given, and prints the tokencode of the vector token.
func TestCTFStoken(t *testing.T) {
	stoken.Require(t)
	for _, tc := range []struct {
		name string
		opts CTFOptions
		link func(string) string
	}{
		{name: "v2 numeric", link: func(s string) string { return s }},
		{name: "android", opts: CTFOptions{Smartphone: true}, link: func(s string) string { a, _ := CTFLinks(s); return a }},
		{name: "iphone", opts: CTFOptions{Smartphone: true}, link: func(s string) string { _, i := CTFLinks(s); return i }},
		{name: "password", opts: CTFOptions{Password: "Tr0ub4dor&3"}, link: func(s string) string { return s }},
		{name: "device id, android", opts: CTFOptions{Smartphone: true, DeviceID: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"},
			link: func(s string) string { a, _ := CTFLinks(s); return a }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := EncodeCTF(vecToken(t), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "token.ctf")
			if err := os.WriteFile(path, []byte(tc.link(s)), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"tokencode", "--force", "--token=" + tc.link(s), "--pin=0000", "--use-time=1767225600"}
			if tc.opts.Password != "" {
				args = append(args, "--password="+tc.opts.Password)
			}
			if tc.opts.DeviceID != "" {
				args = append(args, "--devid="+tc.opts.DeviceID)
			}
			out, err := stoken.Run(dir, args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(out)); got != vecTokencodeT {
				t.Fatalf("stoken tokencode = %s, want %s", got, vecTokencodeT)
			}
			if tc.opts.Password != "" || tc.opts.DeviceID != "" {
				// Without the binding stoken cannot open it.
				if out, err := stoken.Run(dir, "tokencode", "--batch", "--force", "--token="+tc.link(s), "--pin=0000",
					"--password=wrong", "--devid=00"); err == nil {
					t.Fatalf("stoken opened a bound string without its binding: %s", out)
				}
			}
		})
	}
}

// FuzzCTF: the decoder never panics; what it opens re-encodes to itself.
func FuzzCTF(f *testing.F) {
	for _, s := range []string{vecCTF, vecAndroid, vecIPhone, vecCTFPW1, vecCTFDevID} {
		f.Add(s, "", "")
		f.Add(s, "pw1", vecDevID)
	}
	f.Fuzz(func(t *testing.T, s, password, devid string) {
		tok, err := DecodeCTF(s, CTFOptions{Password: password, DeviceID: devid})
		if err != nil {
			return
		}
		if len(tok.Seed) != 16 || !ValidSerial(tok.Serial) || tok.Digits < 1 || tok.Digits > 8 {
			t.Fatalf("decoded %+v", tok)
		}
		if strings.Contains(fmt.Sprint(tok), hex.EncodeToString(tok.Seed)) {
			t.Fatal("the seed prints")
		}
	})
}
