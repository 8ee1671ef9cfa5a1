package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

// KeySize is the length of the master key in bytes.
const KeySize = 32

// Errors returned by the sealer.
var (
	ErrKeySize   = errors.New("seal: master key must be 32 bytes")
	ErrOpen      = errors.New("seal: sealed value is corrupt or bound to another owner")
	ErrWrongKey  = errors.New("seal: master key does not match the one this store was created with")
	errShortSeal = errors.New("seal: sealed value too short")
)

// Sealer holds the keys derived from one master key. It is safe for
// concurrent use.
type Sealer struct {
	aead    cipher.AEAD
	hashKey []byte
	check   []byte
	rand    io.Reader
}

// New derives the sealing, hashing and check keys from master. rand supplies
// nonces (crypto/rand.Reader in production).
func New(master []byte, rand io.Reader) (*Sealer, error) {
	if len(master) != KeySize {
		return nil, ErrKeySize
	}
	derive := func(label string) ([]byte, error) {
		return hkdf.Key(sha256.New, master, nil, "tokend/v1/"+label, 32)
	}
	sealKey, err := derive("seal")
	if err != nil {
		return nil, fmt.Errorf("seal: derive: %w", err)
	}
	hashKey, err := derive("keyed-hash")
	if err != nil {
		return nil, fmt.Errorf("seal: derive: %w", err)
	}
	checkKey, err := derive("check")
	if err != nil {
		return nil, fmt.Errorf("seal: derive: %w", err)
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	mac := hmac.New(sha256.New, checkKey)
	mac.Write([]byte("tokend master key check"))
	return &Sealer{aead: aead, hashKey: hashKey, check: mac.Sum(nil), rand: rand}, nil
}

// Seal encrypts plaintext bound to aad (for example "token/000123456789/seed").
// The result is nonce || ciphertext || tag.
func (s *Sealer) Seal(plaintext []byte, aad string) ([]byte, error) {
	nonce, err := s.Nonce()
	if err != nil {
		return nil, err
	}
	return s.SealNonce(nonce, plaintext, aad), nil
}

// Nonce draws a fresh nonce for SealNonce.
func (s *Sealer) Nonce() ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return nonce, nil
}

// SealNonce seals like Seal with a nonce drawn earlier by Nonce, so sealing
// can run inside a transaction function (which must not draw randomness and
// may run twice: the same nonce, plaintext and aad give the same result).
// A nonce must never seal two different plaintexts.
func (s *Sealer) SealNonce(nonce, plaintext []byte, aad string) []byte {
	out := make([]byte, len(nonce), len(nonce)+len(plaintext)+s.aead.Overhead())
	copy(out, nonce)
	return s.aead.Seal(out, nonce, plaintext, []byte(aad))
}

// Open decrypts a value sealed with the same aad.
func (s *Sealer) Open(sealed []byte, aad string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errShortSeal
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(aad))
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// Hash returns a keyed hash (HMAC-SHA-256) of secret in the given domain, for
// secrets that are looked up and compared but never recovered.
func (s *Sealer) Hash(domain string, secret []byte) []byte {
	mac := hmac.New(sha256.New, s.hashKey)
	mac.Write([]byte(domain))
	mac.Write([]byte{0})
	mac.Write(secret)
	return mac.Sum(nil)
}

// CheckValue is stored beside the data so that a later start can tell
// whether it was given the same master key.
func (s *Sealer) CheckValue() []byte { return append([]byte(nil), s.check...) }

// Verify compares a stored check value with this sealer's.
func (s *Sealer) Verify(stored []byte) error {
	if subtle.ConstantTimeCompare(stored, s.check) != 1 {
		return ErrWrongKey
	}
	return nil
}

// HashKeyAAD binds a sealed keyed-hash key (SealHashKey) to its one use.
const HashKeyAAD = "meta/hash-key"

// ErrHashKey means a sealed keyed-hash key did not open under this sealer.
var ErrHashKey = errors.New("seal: the stored keyed-hash key does not open under this master key")

// SealHashKey returns this sealer's keyed-hash key sealed under its own
// sealing key (AAD HashKeyAAD), with a nonce from Nonce. A master key
// rotation re-seals everything sealed but cannot recompute keyed hashes
// (their secrets are not stored), so the store keeps the hash key sealed
// and carries it from key to key.
func (s *Sealer) SealHashKey(nonce []byte) []byte {
	return s.SealNonce(nonce, s.hashKey, HashKeyAAD)
}

// WithSealedHashKey returns a Sealer that seals, opens and checks like s but
// hashes with the keyed-hash key in sealed (made by SealHashKey and perhaps
// re-sealed since under s's master key). s is unchanged.
func (s *Sealer) WithSealedHashKey(sealed []byte) (*Sealer, error) {
	k, err := s.Open(sealed, HashKeyAAD)
	if err != nil || len(k) != KeySize {
		return nil, ErrHashKey
	}
	c := *s
	c.hashKey = k
	return &c, nil
}

// Fingerprint is a short public name of the master key behind a check value
// (CheckValue or a stored one), for messages that say which key a store
// holds. It reveals nothing about the key.
func Fingerprint(check []byte) string {
	sum := sha256.Sum256(check)
	return fmt.Sprintf("%x", sum[:8])
}
