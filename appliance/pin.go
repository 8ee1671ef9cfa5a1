package appliance

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PIN hashes use argon2id with OWASP's minimum parameters (19 MiB, 2 passes):
// slow enough to make an offline guess of a short PIN costly, fast enough to
// check a handful per authentication.
const (
	pinArgonTime    = 2
	pinArgonMemory  = 19 * 1024
	pinArgonThreads = 1
	pinArgonKeyLen  = 32
)

// PINPolicy is what a user-chosen PIN must satisfy.
type PINPolicy struct {
	MinLength    int  // 4 when zero
	MaxLength    int  // 8 when zero
	Alphanumeric bool // letters allowed (fob-style tokens only)
	// SystemGenerated: in new PIN mode tokend picks the PIN (MinLength
	// random digits) and shows it once, instead of asking the user for one.
	SystemGenerated bool
}

func (p PINPolicy) withDefaults() PINPolicy {
	if p.MinLength <= 0 {
		p.MinLength = 4
	}
	if p.MaxLength <= 0 {
		p.MaxLength = 8
	}
	return p
}

// check validates a PIN for a token's PIN mode: PINPad tokens fold the PIN
// into the code digit by digit, so theirs are numeric and not longer than
// the code.
func (p PINPolicy) check(pin, mode string, digits int) error {
	p = p.withDefaults()
	v := &ValidationError{}
	if len(pin) < p.MinLength || len(pin) > p.MaxLength {
		v.Add("pin", fmt.Sprintf("must be %d to %d characters", p.MinLength, p.MaxLength))
	}
	alnum := p.Alphanumeric && mode == PINModeFob
	for _, r := range pin {
		digit := r >= '0' && r <= '9'
		letter := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !digit && !(alnum && letter) {
			if alnum {
				v.Add("pin", "letters and digits only")
			} else {
				v.Add("pin", "digits only")
			}
			break
		}
	}
	if mode == PINModePINPad && len(pin) > digits {
		v.Add("pin", fmt.Sprintf("a PINPad PIN cannot be longer than the %d-digit tokencode", digits))
	}
	return v.Err()
}

func hashPIN(pin string, rand io.Reader) (string, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", fmt.Errorf("pin salt: %w", err)
	}
	key := argon2.IDKey([]byte(pin), salt, pinArgonTime, pinArgonMemory, pinArgonThreads, pinArgonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, pinArgonMemory, pinArgonTime, pinArgonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// pinMatches checks pin against an encoded argon2id hash in constant time.
func pinMatches(encoded, pin string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pin), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}
