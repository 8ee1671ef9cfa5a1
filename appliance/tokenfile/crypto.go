package tokenfile

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Algorithm URIs for encryption, MAC and key derivation.
const (
	uriAES128CBC = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"
	uriAES192CBC = "http://www.w3.org/2001/04/xmlenc#aes192-cbc"
	uriAES256CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"

	uriPBKDF2      = "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2"
	uriPBKDF2xenc  = "http://www.w3.org/2009/xmlenc11#pbkdf2"
	uriPKCS5Prefix = "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#"
	uriDsig        = "http://www.w3.org/2000/09/xmldsig#"
	uriDsigMore    = "http://www.w3.org/2001/04/xmldsig-more#"
)

// errBadPad is a CBC pad length out of range: the sign of a wrong key when
// decrypting the MAC key, of a broken producer once a MAC has held.
var errBadPad = errors.New("bad padding")

// maxPBKDF2Iterations bounds the work an uploaded file can demand: about a
// few seconds of HMAC-SHA1 on one core.
const maxPBKDF2Iterations = 10_000_000

// cbcKeyLen maps an xmlenc CBC algorithm to its AES key length.
func cbcKeyLen(uri string) (int, bool) {
	switch uri {
	case uriAES128CBC:
		return 16, true
	case uriAES192CBC:
		return 24, true
	case uriAES256CBC:
		return 32, true
	}
	return 0, false
}

// hmacHash maps a MAC or PRF algorithm name (the part after '#') to a hash.
func hmacHash(name string) (func() hash.Hash, bool) {
	switch name {
	case "hmac-sha1":
		return sha1.New, true
	case "hmac-sha224":
		return sha256.New224, true
	case "hmac-sha256":
		return sha256.New, true
	case "hmac-sha384":
		return sha512.New384, true
	case "hmac-sha512":
		return sha512.New, true
	}
	return nil, false
}

// pskcCrypto holds the container's encryption and MAC keys once derived.
type pskcCrypto struct {
	key    []byte // nil when nothing is encrypted
	macKey []byte
	mac    func() hash.Hash
}

func (cc *pskcCrypto) wipe() {
	clear(cc.key)
	clear(cc.macKey)
}

// encrypted reports whether anything in the container is encrypted.
func encrypted(c *xContainer) bool {
	if c.MACMethod != nil && c.MACMethod.MACKey != nil {
		return true
	}
	for i := range c.KeyPackages {
		for j := range c.KeyPackages[i].Keys {
			d := &c.KeyPackages[i].Keys[j].Data
			for _, v := range [...]*xValue{d.Secret, d.Counter, d.Time, d.TimeInterval, d.TimeDrift} {
				if v != nil && v.EncryptedValue != nil {
					return true
				}
			}
		}
	}
	return false
}

// newCrypto derives the encryption key and decrypts the MAC key. Every
// failure here concerns the whole file.
func newCrypto(c *xContainer, opts PSKCOptions) (*pskcCrypto, error) {
	cc := &pskcCrypto{}
	if !encrypted(c) {
		return cc, nil
	}
	mm := c.MACMethod
	if mm == nil {
		return nil, fmt.Errorf("%w: encrypted file has no MACMethod", ErrMACMissing)
	}
	if mm.MACKey == nil {
		return nil, fmt.Errorf("%w: MACMethod has no MACKey", ErrMACMissing)
	}
	name, ok := strings.CutPrefix(mm.Algorithm, uriDsig)
	if !ok {
		name, ok = strings.CutPrefix(mm.Algorithm, uriDsigMore)
	}
	if cc.mac, ok = hmacHash(name); !ok || name == "" {
		return nil, fmt.Errorf("%w: MAC algorithm %s", ErrUnsupported, quote(mm.Algorithm))
	}

	ek := c.EncryptionKey
	switch {
	case ek != nil && ek.DerivedKey != nil:
		if opts.Password == "" {
			return nil, fmt.Errorf("%w: the file is protected by a password", ErrNeedKey)
		}
		key, err := deriveKey(ek.DerivedKey, opts.Password)
		if err != nil {
			return nil, err
		}
		cc.key = key
	case ek == nil || ek.KeyName != nil:
		if len(opts.Key) == 0 {
			return nil, fmt.Errorf("%w: the file is encrypted with a pre-shared key", ErrNeedKey)
		}
		cc.key = append([]byte(nil), opts.Key...)
	default:
		return nil, fmt.Errorf("%w: EncryptionKey is neither a KeyName nor a PBKDF2 DerivedKey", ErrUnsupported)
	}

	mk, reason, err := cc.decrypt(mm.MACKey)
	if errors.Is(err, errBadPad) {
		cc.wipe()
		return nil, ErrWrongKey
	}
	if err != nil {
		cc.wipe()
		return nil, err
	}
	if reason != "" {
		cc.wipe()
		return nil, fmt.Errorf("%w: MACKey %s", ErrMalformed, reason)
	}
	if len(mk) == 0 {
		cc.wipe()
		return nil, fmt.Errorf("%w: MACKey is empty", ErrMalformed)
	}
	cc.macKey = mk
	return cc, nil
}

func deriveKey(dk *xDerivedKey, password string) ([]byte, error) {
	m := dk.Method
	if m.Algorithm != uriPBKDF2 && m.Algorithm != uriPBKDF2xenc {
		return nil, fmt.Errorf("%w: key derivation %s", ErrUnsupported, quote(m.Algorithm))
	}
	p := m.Params
	if p == nil {
		return nil, fmt.Errorf("%w: PBKDF2 without PBKDF2-params", ErrMalformed)
	}
	salt, err := b64(p.Salt)
	if err != nil || len(salt) == 0 {
		return nil, fmt.Errorf("%w: PBKDF2 salt missing or not base64", ErrMalformed)
	}
	iter, err := strconv.Atoi(strings.TrimSpace(p.IterationCount))
	if err != nil || iter < 1 || iter > maxPBKDF2Iterations {
		return nil, fmt.Errorf("%w: PBKDF2 iteration count %s (want 1 to %d)", ErrMalformed, quote(p.IterationCount), maxPBKDF2Iterations)
	}
	keyLen := 16
	if s := strings.TrimSpace(p.KeyLength); s != "" {
		if keyLen, err = strconv.Atoi(s); err != nil || (keyLen != 16 && keyLen != 24 && keyLen != 32) {
			return nil, fmt.Errorf("%w: PBKDF2 key length %s (want 16, 24 or 32)", ErrMalformed, quote(p.KeyLength))
		}
	}
	prf := "hmac-sha1"
	if p.PRF != nil && p.PRF.Algorithm != "" {
		name, ok := strings.CutPrefix(p.PRF.Algorithm, uriPKCS5Prefix)
		if !ok {
			name, ok = strings.CutPrefix(p.PRF.Algorithm, uriDsigMore)
		}
		if !ok {
			name, ok = strings.CutPrefix(p.PRF.Algorithm, uriDsig)
		}
		if !ok {
			return nil, fmt.Errorf("%w: PBKDF2 PRF %s", ErrUnsupported, quote(p.PRF.Algorithm))
		}
		prf = name
	}
	h, ok := hmacHash(prf)
	if !ok {
		return nil, fmt.Errorf("%w: PBKDF2 PRF %s", ErrUnsupported, quote(prf))
	}
	key, err := pbkdf2.Key(h, password, salt, iter, keyLen)
	if err != nil {
		return nil, fmt.Errorf("tokenfile: PBKDF2: %w", err)
	}
	return key, nil
}

// decrypt opens an AES-CBC cipher value (IV first). Padding is checked the
// way XML Encryption defines it: only the last byte (the pad length) is
// fixed, the other pad bytes may be anything, so a wrong key shows as a bad
// pad length (errBadPad) in 15 cases out of 16.
func (cc *pskcCrypto) decrypt(ed *xEncData) ([]byte, string, error) {
	data, err := b64(ed.CipherValue)
	if err != nil {
		return nil, "cipher value is not base64", nil
	}
	return cc.decryptBytes(ed.Method.Algorithm, data)
}

func (cc *pskcCrypto) decryptBytes(alg string, data []byte) ([]byte, string, error) {
	n, ok := cbcKeyLen(alg)
	if !ok {
		return nil, "", fmt.Errorf("%w: encryption algorithm %s", ErrUnsupported, quote(alg))
	}
	if len(cc.key) != n {
		return nil, "", fmt.Errorf("%w: the key is %d bytes, %s needs %d", ErrWrongKey, len(cc.key), alg[strings.IndexByte(alg, '#')+1:], n)
	}
	if len(data) < 2*aes.BlockSize || len(data)%aes.BlockSize != 0 {
		return nil, "cipher value has an invalid length", nil
	}
	block, err := aes.NewCipher(cc.key)
	if err != nil {
		return nil, "", fmt.Errorf("tokenfile: %w", err)
	}
	pt := make([]byte, len(data)-aes.BlockSize)
	cipher.NewCBCDecrypter(block, data[:aes.BlockSize]).CryptBlocks(pt, data[aes.BlockSize:])
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > aes.BlockSize {
		clear(pt)
		return nil, "", errBadPad
	}
	return pt[:len(pt)-pad], "", nil
}

// open returns the plain bytes of a base64 value, plain or encrypted. An
// encrypted value's MAC is checked before it is decrypted.
func (cc *pskcCrypto) open(v *xValue) ([]byte, string, error) {
	switch {
	case v == nil:
		return nil, "", nil
	case v.EncryptedValue != nil:
		if v.PlainValue != nil {
			return nil, "both PlainValue and EncryptedValue", nil
		}
		ed := v.EncryptedValue
		data, err := b64(ed.CipherValue)
		if err != nil {
			return nil, "cipher value is not base64", nil
		}
		if strings.TrimSpace(v.ValueMAC) == "" {
			return nil, "", fmt.Errorf("%w: encrypted value without ValueMAC", ErrMACMissing)
		}
		want, err := b64(v.ValueMAC)
		if err != nil {
			return nil, "", fmt.Errorf("%w: ValueMAC is not base64", ErrMACMismatch)
		}
		m := hmac.New(cc.mac, cc.macKey)
		m.Write(data)
		if !hmac.Equal(m.Sum(nil), want) {
			return nil, "", ErrMACMismatch
		}
		pt, reason, err := cc.decryptBytes(ed.Method.Algorithm, data)
		if errors.Is(err, errBadPad) {
			// The MAC held, so the key opened the MAC key; a bad pad
			// here is the producer's fault, not a wrong key.
			return nil, "cannot decrypt: invalid padding", nil
		}
		return pt, reason, err
	case v.PlainValue != nil:
		b, err := b64(*v.PlainValue)
		if err != nil {
			return nil, "PlainValue is not base64", nil
		}
		return b, "", nil
	}
	return nil, "neither PlainValue nor EncryptedValue", nil
}

// openNumber reads an integer value. Plain values are decimal text; encrypted
// ones are big-endian binary of at most 8 bytes.
func (cc *pskcCrypto) openNumber(v *xValue, signed bool) (uint64, int64, string, error) {
	if v.EncryptedValue == nil && v.PlainValue != nil {
		s := strings.TrimSpace(*v.PlainValue)
		if signed {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, 0, "not an integer", nil
			}
			return 0, n, "", nil
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, "not an unsigned integer", nil
		}
		return n, 0, "", nil
	}
	b, reason, err := cc.open(v)
	if err != nil || reason != "" {
		return 0, 0, reason, err
	}
	if len(b) == 0 || len(b) > 8 {
		return 0, 0, "encrypted integer is not 1 to 8 bytes", nil
	}
	var buf [8]byte
	copy(buf[8-len(b):], b)
	n := binary.BigEndian.Uint64(buf[:])
	if signed && n > 1<<63-1 {
		return 0, 0, "integer out of range", nil
	}
	return n, int64(n), "", nil
}
