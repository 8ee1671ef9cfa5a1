package appliance

import (
	"context"
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

// hashPIN hashes a new PIN within the pool's memory budget.
func hashPIN(pool *argonPool, pin string, rand io.Reader) (string, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", fmt.Errorf("pin salt: %w", err)
	}
	// PINs are hashed inside authentication decisions, which carry no
	// context: the pool's own wait bounds the wait.
	key, err := pool.idKey(context.Background(), []byte(pin), salt, pinArgonTime, pinArgonMemory, pinArgonThreads, pinArgonKeyLen)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, pinArgonMemory, pinArgonTime, pinArgonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// pinMatches checks pin against an encoded argon2id hash in constant time,
// within the Service's memory budget for argon2id.
func (s *Service) pinMatches(encoded, pin string) (bool, error) {
	return s.argon.matches(context.Background(), encoded, pin)
}

// matches is pinMatches run within the pool's memory budget.
func (p *argonPool) matches(ctx context.Context, encoded, secret string) (bool, error) {
	h, ok := parseArgonHash(encoded)
	if !ok {
		return false, nil
	}
	got, err := p.idKey(ctx, []byte(secret), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, h.key) == 1, nil
}

type argonHash struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

// parseArgonHash decodes "$argon2id$v=19$m=M,t=T,p=P$SALT$KEY".
func parseArgonHash(encoded string) (argonHash, bool) {
	var h argonHash
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return h, false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.memory, &h.time, &h.threads); err != nil {
		return h, false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(key) == 0 {
		return h, false
	}
	h.salt, h.key = salt, key
	return h, true
}
