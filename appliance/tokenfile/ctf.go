package tokenfile

import (
	"crypto/aes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// CTF ("compressed token format") v2 strings: the 81-digit form of an RSA
// software token, on its own or inside the device links RSA's apps register
// (stoken securid.c: v2_encode_token, v2_decode_token).
//
//	1 digit   version (2)
//	12 digits serial
//	63 digits 189 bits, 3 per digit: the seed encrypted under a key from the
//	          password and device id (128), flags (16), expiry day (14),
//	          a hash of the plain seed (15, after one spare bit), a hash of
//	          the device id (15)
//	5 digits  15-bit checksum of the digits before it
const (
	ctfDigits      = 81
	ctfBinOfs      = 13
	ctfChecksumOfs = 76
	ctfBinBits     = 189
	ctfMaxPassword = 40
)

// Flag bits of a CTF token.
const (
	ctf128Bit      = 1 << 14
	ctfPassProt    = 1 << 13
	ctfDevProt     = 1 << 12
	ctfTimeSeeds   = 1 << 9
	ctfDigitShift  = 6
	ctfDigitMask   = 7 << ctfDigitShift
	ctfPINShift    = 3
	ctfPINMask     = 3 << ctfPINShift
	ctfSecondsMask = 3
)

// Device link prefixes RSA's apps register.
const (
	CTFAndroidPrefix = "http://127.0.0.1/securid/ctf?ctfData="
	CTFIOSPrefix     = "com.rsa.securid.iphone://ctf?ctfData="
)

// securIDEpoch is day 0 of CTF expiry dates.
var securIDEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Errors of the CTF decoder.
var (
	// ErrCTFChecksum: the string is not a CTF string or was mistyped.
	ErrCTFChecksum = errors.New("tokenfile: CTF checksum mismatch")
	// ErrCTFLocked: the password or device id does not open the seed.
	ErrCTFLocked = errors.New("tokenfile: CTF seed does not open with this password and device id")
)

// CTFToken is a token to encode as, or decoded from, a CTF string.
type CTFToken struct {
	Serial    string
	Seed      Seed // 16 bytes
	Digits    int  // 1..8
	Interval  int  // 30 | 60
	PINMode   string
	ExpiresAt time.Time // the instant the token stops (the next midnight after its last day)
	// Decoded only: whether the string needs a password, a device id.
	PasswordBound, DeviceBound bool
}

// CTFOptions binds an encoded string, or opens a decoded one.
type CTFOptions struct {
	Password string // at most 40 bytes
	DeviceID string // hex digits count (others are ignored, as RSA's apps do)
	// Smartphone: the string goes into an Android or iOS link, whose apps
	// hash a device id over 40 characters instead of 32.
	Smartphone bool
}

// EncodeCTF returns the 81-digit CTF v2 string of t.
func EncodeCTF(t CTFToken, o CTFOptions) (string, error) {
	if !ValidSerial(t.Serial) {
		return "", fmt.Errorf("tokenfile: serial %s is not 12 digits", quote(t.Serial))
	}
	if len(t.Seed) != 16 {
		return "", fmt.Errorf("tokenfile: seed is %d bytes, want 16", len(t.Seed))
	}
	if t.Digits < 1 || t.Digits > 8 || (t.Interval != 30 && t.Interval != 60) {
		return "", fmt.Errorf("tokenfile: %d digits, %d s cannot be encoded", t.Digits, t.Interval)
	}
	if len(o.Password) > ctfMaxPassword {
		return "", fmt.Errorf("tokenfile: a CTF password is at most %d bytes", ctfMaxPassword)
	}
	day := int(t.ExpiresAt.UTC().Add(-24*time.Hour).Sub(securIDEpoch).Hours() / 24)
	if day < 0 || day >= 1<<14 {
		return "", fmt.Errorf("tokenfile: expiry %s cannot be encoded", t.ExpiresAt.Format(time.DateOnly))
	}
	flags := ctf128Bit | ctfTimeSeeds | (t.Digits-1)<<ctfDigitShift
	switch t.PINMode {
	case PINModePINPad:
		flags |= 2 << ctfPINShift
	case PINModeNone:
		flags |= 1 << ctfPINShift
	case PINModeFob:
	default:
		return "", fmt.Errorf("tokenfile: PIN mode %q", t.PINMode)
	}
	if t.Interval == 60 {
		flags |= 1
	}
	if o.Password != "" {
		flags |= ctfPassProt
	}
	if o.DeviceID != "" {
		flags |= ctfDevProt
	}
	key, devHash := ctfKey(o)
	defer clear(key)
	c, _ := aes.NewCipher(key)
	d := make([]byte, 32)
	c.Encrypt(d[:16], t.Seed)
	setBits(d, 128, 16, uint32(flags))
	setBits(d, 144, 14, uint32(day))
	setBits(d, 159, 15, uint32(shortMAC(t.Seed)))
	setBits(d, 174, 15, uint32(devHash))
	var b strings.Builder
	b.Grow(ctfDigits)
	b.WriteString("2")
	b.WriteString(t.Serial)
	writeOctal(&b, d, ctfBinBits)
	sum := make([]byte, 4)
	setBits(sum, 0, 15, uint32(shortMAC([]byte(b.String()))))
	writeOctal(&b, sum, 15)
	return b.String(), nil
}

// CTFLinks returns the device links of a CTF string: for Android, for iOS.
func CTFLinks(ctf string) (android, ios string) {
	return CTFAndroidPrefix + ctf, CTFIOSPrefix + ctf
}

// DecodeCTF reads a CTF v2 string, bare or inside a device link, and opens
// its seed with o. A link sets o.Smartphone itself.
func DecodeCTF(s string, o CTFOptions) (CTFToken, error) {
	s = strings.TrimSpace(s)
	for _, p := range [...]string{CTFAndroidPrefix, CTFIOSPrefix, "com.rsa.securid://ctf?ctfData="} {
		if rest, ok := strings.CutPrefix(s, p); ok {
			if u, err := url.QueryUnescape(rest); err == nil {
				rest = u
			}
			s, o.Smartphone = rest, true
			break
		}
	}
	s = strings.ReplaceAll(s, "-", "")
	var t CTFToken
	if len(s) != ctfDigits {
		return t, fmt.Errorf("%w: a CTF v2 string is %d digits", ErrMalformed, ctfDigits)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return t, fmt.Errorf("%w: a CTF v2 string is digits only", ErrMalformed)
		}
	}
	if s[0] != '2' {
		return t, fmt.Errorf("%w: CTF version %q", ErrUnsupported, s[:1])
	}
	sum := readOctal(s[ctfChecksumOfs:], 15)
	if uint16(getBits(sum, 0, 15)) != shortMAC([]byte(s[:ctfChecksumOfs])) {
		return t, ErrCTFChecksum
	}
	d := readOctal(s[ctfBinOfs:ctfChecksumOfs], ctfBinBits)
	flags := getBits(d, 128, 16)
	t.Serial = s[1:13]
	t.Digits = int(flags&ctfDigitMask>>ctfDigitShift) + 1
	t.Interval = 30
	if flags&ctfSecondsMask != 0 {
		t.Interval = 60
	}
	switch flags & ctfPINMask >> ctfPINShift {
	case 0:
		t.PINMode = PINModeFob
	case 1:
		t.PINMode = PINModeNone
	default:
		t.PINMode = PINModePINPad
	}
	t.ExpiresAt = securIDEpoch.AddDate(0, 0, int(getBits(d, 144, 14))+1)
	t.PasswordBound, t.DeviceBound = flags&ctfPassProt != 0, flags&ctfDevProt != 0
	if !t.PasswordBound {
		o.Password = ""
	}
	if !t.DeviceBound {
		o.DeviceID = ""
	}
	if len(o.Password) > ctfMaxPassword {
		return t, ErrCTFLocked
	}
	key, devHash := ctfKey(o)
	defer clear(key)
	if t.DeviceBound && uint32(devHash) != getBits(d, 174, 15) {
		return t, ErrCTFLocked
	}
	c, _ := aes.NewCipher(key)
	seed := make(Seed, 16)
	c.Decrypt(seed, d[:16])
	if uint32(shortMAC(seed)) != getBits(d, 159, 15) {
		seed.Zero()
		return t, ErrCTFLocked
	}
	t.Seed = seed
	return t, nil
}

// ctfKey is the seed key of a CTF string and the hash of its device id.
func ctfKey(o CTFOptions) ([]byte, uint16) {
	devLen := 32
	if o.Smartphone {
		devLen = 40
	}
	key := make([]byte, 0, ctfMaxPassword+devLen+6)
	if i := strings.IndexByte(o.Password, 0); i >= 0 {
		o.Password = o.Password[:i]
	}
	key = append(key, o.Password...)
	dev := make([]byte, devLen)
	n := 0
	for i := 0; i < len(o.DeviceID) && i < devLen; i++ {
		c := o.DeviceID[i]
		switch {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'F':
		case c >= 'a' && c <= 'f':
			c -= 'a' - 'A'
		default:
			continue
		}
		dev[n] = c
		n++
	}
	devHash := shortMAC(dev)
	key = append(key, dev[:n]...)
	key = append(key, 0xd8, 0xf5, 0x32, 0x53, 0x82, 0x89)
	h := securIDMAC(key)
	clear(key)
	return h, devHash
}

// securIDMAC is RSA's AES-based hash (a Davies-Meyer chain keyed by the
// input blocks, then the bit length, then a final round).
func securIDMAC(in []byte) []byte {
	work := make([]byte, 16)
	for i := range work {
		work[i] = 0xff
	}
	step := func(key []byte) {
		c, _ := aes.NewCipher(key)
		enc := make([]byte, 16)
		c.Encrypt(enc, work)
		subtle.XORBytes(work, work, enc)
	}
	pad := make([]byte, 16)
	p := 15
	for i := len(in) * 8; i > 0; i >>= 8 {
		pad[p] = byte(i)
		p--
	}
	odd := false
	for ; len(in) > 16; in = in[16:] {
		step(in[:16])
		odd = !odd
	}
	last := make([]byte, 16)
	copy(last, in)
	step(last)
	if odd {
		step(make([]byte, 16))
	}
	step(pad)
	out := make([]byte, 16)
	copy(out, work)
	c, _ := aes.NewCipher(work)
	enc := make([]byte, 16)
	c.Encrypt(enc, out)
	subtle.XORBytes(out, out, enc)
	return out
}

func shortMAC(in []byte) uint16 {
	h := securIDMAC(in)
	return uint16(h[0])<<7 | uint16(h[1]>>1)
}

// getBits reads n bits at bit offset start (most significant first).
func getBits(in []byte, start, n int) uint32 {
	var out uint32
	for i := 0; i < n; i++ {
		bit := start + i
		out <<= 1
		if in[bit/8]&(0x80>>(bit%8)) != 0 {
			out |= 1
		}
	}
	return out
}

// setBits writes the low n bits of v at bit offset start.
func setBits(out []byte, start, n int, v uint32) {
	for i := 0; i < n; i++ {
		bit := start + i
		mask := byte(0x80 >> (bit % 8))
		if v&(1<<(n-1-i)) != 0 {
			out[bit/8] |= mask
		} else {
			out[bit/8] &^= mask
		}
	}
}

// writeOctal writes n bits of d as digits 0-7, three bits each.
func writeOctal(b *strings.Builder, d []byte, n int) {
	for i := 0; i < n; i += 3 {
		b.WriteByte('0' + byte(getBits(d, i, 3)))
	}
}

// readOctal is the inverse of writeOctal. Digits 8 and 9 keep their low
// three bits, as RSA's reader does.
func readOctal(s string, n int) []byte {
	d := make([]byte, (n+7)/8+2)
	for i := 0; i*3 < n && i < len(s); i++ {
		setBits(d, i*3, 3, uint32(s[i]-'0')&7)
	}
	return d
}
