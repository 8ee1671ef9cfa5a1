package otp

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"hash"
	"strings"
	"time"
)

// Algorithm is the HMAC hash of an OATH token. The zero value is SHA-1, the
// RFC 4226 default and what most authenticator apps assume.
type Algorithm int

// Supported OATH hash algorithms.
const (
	SHA1 Algorithm = iota
	SHA256
	SHA512
)

// OATH digit limits: RFC 4226 §5.3 requires at least 6 digits, and the 31-bit
// truncated value cannot fill more than 9 without bias, so 6–8 as deployed.
const (
	OATHMinDigits = 6
	OATHMaxDigits = 8
)

// String returns the otpauth URI spelling ("SHA1", "SHA256", "SHA512").
func (a Algorithm) String() string {
	switch a {
	case SHA1:
		return "SHA1"
	case SHA256:
		return "SHA256"
	case SHA512:
		return "SHA512"
	}
	return "Algorithm(invalid)"
}

// ParseAlgorithm accepts "SHA1", "SHA256", "SHA512", case-insensitively and
// with or without a dash after "SHA".
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ReplaceAll(strings.ToUpper(s), "-", "") {
	case "SHA1":
		return SHA1, nil
	case "SHA256":
		return SHA256, nil
	case "SHA512":
		return SHA512, nil
	}
	return 0, ErrAlgorithm
}

func (a Algorithm) hash() (func() hash.Hash, error) {
	switch a {
	case SHA1:
		return sha1.New, nil
	case SHA256:
		return sha256.New, nil
	case SHA512:
		return sha512.New, nil
	}
	return nil, ErrAlgorithm
}

// HOTP is an RFC 4226 event-based token.
type HOTP struct {
	Key       []byte // HMAC key (the shared secret)
	Digits    int    // 6–8
	Algorithm Algorithm
}

// Code returns the HOTP value for a counter.
func (h HOTP) Code(counter uint64) (string, error) {
	var out [1]string
	if err := oathFill(h.Key, h.Algorithm, h.Digits, counter, out[:]); err != nil {
		return "", err
	}
	return out[0], nil
}

// Codes returns the values for counters first … first+n-1 (first >= 0). It
// makes HOTP a Generator, so Verify and VerifyRange work for look-ahead.
func (h HOTP) Codes(first int64, n int) ([]string, error) {
	if first < 0 {
		return nil, ErrWindow
	}
	if n < 0 {
		return nil, ErrWindow
	}
	out := make([]string, n)
	if err := oathFill(h.Key, h.Algorithm, h.Digits, uint64(first), out); err != nil {
		return nil, err
	}
	return out, nil
}

// TOTP is an RFC 6238 time-based token: HOTP with counter
// floor((unix - T0) / Period).
type TOTP struct {
	Key       []byte // HMAC key (the shared secret)
	Digits    int    // 6–8
	Period    int    // step length X in seconds, > 0 (30 in practice)
	T0        int64  // Unix time of step 0 (0 in practice)
	Algorithm Algorithm
}

// Step returns the time-step index of at; 0 when Period is invalid.
func (t TOTP) Step(at time.Time) int64 {
	if t.Period <= 0 {
		return 0
	}
	return floorDiv(at.Unix()-t.T0, int64(t.Period))
}

// StepTime returns the first second of a time step.
func (t TOTP) StepTime(step int64) time.Time {
	return time.Unix(t.T0+step*int64(t.Period), 0).UTC()
}

// Code returns the TOTP value at time at.
func (t TOTP) Code(at time.Time) (string, error) {
	if t.Period <= 0 {
		return "", ErrInterval
	}
	return t.CodeAt(t.Step(at))
}

// CodeAt returns the TOTP value of one time step (>= 0).
func (t TOTP) CodeAt(step int64) (string, error) {
	var out [1]string
	if err := t.fill(step, out[:]); err != nil {
		return "", err
	}
	return out[0], nil
}

// Codes returns the values of steps first … first+n-1, reusing one HMAC.
func (t TOTP) Codes(first int64, n int) ([]string, error) {
	if n < 0 {
		return nil, ErrWindow
	}
	out := make([]string, n)
	if err := t.fill(first, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (t TOTP) fill(first int64, out []string) error {
	if t.Period <= 0 {
		return ErrInterval
	}
	if first < 0 || first+int64(len(out)) < first {
		return ErrTimeRange
	}
	return oathFill(t.Key, t.Algorithm, t.Digits, uint64(first), out)
}

// oathFill computes HOTP values for consecutive counters (RFC 4226 §5.3
// dynamic truncation, which works unchanged for SHA-256/512 digests).
func oathFill(key []byte, alg Algorithm, digits int, first uint64, out []string) error {
	newHash, err := alg.hash()
	if err != nil {
		return err
	}
	if digits < OATHMinDigits || digits > OATHMaxDigits {
		return ErrDigits
	}
	if len(key) == 0 {
		return ErrKey
	}
	if len(out) == 0 {
		return nil
	}
	mac := hmac.New(newHash, key)
	var msg [8]byte
	sum := make([]byte, 0, sha512.Size)
	for i := range out {
		binary.BigEndian.PutUint64(msg[:], first+uint64(i))
		mac.Reset()
		mac.Write(msg[:])
		sum = mac.Sum(sum[:0])
		off := sum[len(sum)-1] & 0x0f
		v := binary.BigEndian.Uint32(sum[off:]) & 0x7fffffff
		out[i] = formatDecimal(v, digits)
	}
	return nil
}
