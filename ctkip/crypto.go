package ctkip

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/subtle"
	"errors"
	"log/slog"
)

// Seed is a 16-byte token seed (K_TOKEN). It redacts itself when printed or
// logged so that it cannot leak through fmt or slog by accident.
type Seed [16]byte

// String implements fmt.Stringer without revealing the seed.
func (Seed) String() string { return "Seed(REDACTED)" }

// GoString implements fmt.GoStringer without revealing the seed.
func (Seed) GoString() string { return "ctkip.Seed(REDACTED)" }

// LogValue implements slog.LogValuer without revealing the seed.
func (Seed) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// Labels of the two PRF uses. RSA capitalises "Computation" (RFC 4758 does not).
const (
	labelKeyGen = "Key generation"
	labelMAC2   = "MAC 2 Computation"
)

// errNonceDecrypt is deliberately uninformative: distinguishing padding from
// length failures would only help an attacker.
var errNonceDecrypt = errors.New("ctkip: client nonce does not decrypt to 16 bytes")

// CMAC returns AES-CMAC (RFC 4493) of msg under an AES key (16, 24 or 32 bytes).
func CMAC(key, msg []byte) ([16]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return [16]byte{}, err
	}
	return cmacBlock(b, msg), nil
}

// shiftLeft doubles v in GF(2^128) as RFC 4493 subkey generation requires.
func shiftLeft(v [16]byte) [16]byte {
	var out [16]byte
	carry := byte(0)
	for i := 15; i >= 0; i-- {
		out[i] = v[i]<<1 | carry
		carry = v[i] >> 7
	}
	// Constant-time conditional XOR with Rb = 0x87.
	out[15] ^= 0x87 & -carry
	return out
}

func cmacBlock(b cipher.Block, msg []byte) [16]byte {
	var l [16]byte
	b.Encrypt(l[:], l[:])
	k1 := shiftLeft(l)
	k2 := shiftLeft(k1)

	var x [16]byte
	// All complete blocks but the last go through plain CBC.
	for len(msg) > 16 {
		subtle.XORBytes(x[:], x[:], msg[:16])
		b.Encrypt(x[:], x[:])
		msg = msg[16:]
	}
	var last [16]byte
	copy(last[:], msg)
	if len(msg) == 16 {
		subtle.XORBytes(last[:], last[:], k1[:])
	} else {
		last[len(msg)] = 0x80
		subtle.XORBytes(last[:], last[:], k2[:])
	}
	subtle.XORBytes(x[:], x[:], last[:])
	b.Encrypt(x[:], x[:])
	return x
}

// prf is CT-KIP-PRF-AES as RSA deploys it: one output block, the 32-bit
// counter 1 appended (not prepended as in RFC 4758 Appendix D).
func prf(key []byte, parts ...[]byte) ([16]byte, error) {
	n := 4
	for _, p := range parts {
		n += len(p)
	}
	msg := make([]byte, 0, n)
	for _, p := range parts {
		msg = append(msg, p...)
	}
	msg = append(msg, 0, 0, 0, 1)
	return CMAC(key, msg)
}

// DeriveSeed computes K_TOKEN = PRF(R_C, modulus || "Key generation" || R_S).
// modulus must be the minimal unsigned big-endian bytes (n.Bytes()), exactly
// as sent in ds:Modulus.
func DeriveSeed(rc, modulus, rs []byte) (Seed, error) {
	if len(rc) != 16 {
		return Seed{}, errors.New("ctkip: R_C must be 16 bytes")
	}
	s, err := prf(rc, modulus, []byte(labelKeyGen), rs)
	return Seed(s), err
}

// ComputeMAC computes the ServerFinished MAC = PRF(K_TOKEN, "MAC 2 Computation" || R_C).
func ComputeMAC(seed Seed, rc []byte) ([16]byte, error) {
	return prf(seed[:], []byte(labelMAC2), rc)
}

// DecryptNonce decrypts the client's EncryptedNonce with RSAES-OAEP
// (SHA-1, MGF1-SHA-1, empty label) and requires a 16-byte R_C. There is
// deliberately no PKCS#1 v1.5 fallback: no client needs it and it would add a
// padding oracle.
func DecryptNonce(key *rsa.PrivateKey, ciphertext []byte) ([16]byte, error) {
	var rc [16]byte
	if key == nil || len(ciphertext) != key.Size() {
		return rc, errNonceDecrypt
	}
	pt, err := rsa.DecryptOAEP(sha1.New(), nil, key, ciphertext, nil)
	if err != nil || len(pt) != 16 {
		return rc, errNonceDecrypt
	}
	copy(rc[:], pt)
	clear(pt)
	return rc, nil
}
