package seal

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func newSealer(t *testing.T, b byte) *Sealer {
	t.Helper()
	s, err := New(bytes.Repeat([]byte{b}, KeySize), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealRoundTripAndBinding(t *testing.T) {
	s := newSealer(t, 1)
	secret := []byte("0123456789abcdef")
	sealed, err := s.Seal(secret, "token/000123456789/seed")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := s.Open(sealed, "token/000123456789/seed")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %x, %v", got, err)
	}
	tests := []struct {
		name   string
		sealer *Sealer
		sealed []byte
		aad    string
	}{
		{"other serial", s, sealed, "token/000123456780/seed"},
		{"other field", s, sealed, "token/000123456789/pin"},
		{"other key", newSealer(t, 2), sealed, "token/000123456789/seed"},
		{"truncated", s, sealed[:10], "token/000123456789/seed"},
		{"flipped bit", s, append(append([]byte(nil), sealed[:len(sealed)-1]...), sealed[len(sealed)-1]^1), "token/000123456789/seed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.sealer.Open(tc.sealed, tc.aad); err == nil {
				t.Fatal("Open succeeded")
			}
		})
	}
}

func TestCheckValue(t *testing.T) {
	a, b := newSealer(t, 1), newSealer(t, 2)
	if err := a.Verify(newSealer(t, 1).CheckValue()); err != nil {
		t.Fatalf("same key: %v", err)
	}
	if err := a.Verify(b.CheckValue()); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("other key: %v", err)
	}
}

func TestHashDomains(t *testing.T) {
	s := newSealer(t, 1)
	x := s.Hash("activation-code", []byte("123456789012"))
	if bytes.Equal(x, s.Hash("api-token", []byte("123456789012"))) {
		t.Fatal("domains collide")
	}
	if !bytes.Equal(x, newSealer(t, 1).Hash("activation-code", []byte("123456789012"))) {
		t.Fatal("hash not deterministic")
	}
	if bytes.Equal(x, newSealer(t, 2).Hash("activation-code", []byte("123456789012"))) {
		t.Fatal("hash not keyed")
	}
}

func TestKeySize(t *testing.T) {
	if _, err := New(make([]byte, 16), rand.Reader); !errors.Is(err, ErrKeySize) {
		t.Fatalf("err = %v", err)
	}
}

func TestSealNonceIsDeterministicAndOpens(t *testing.T) {
	s := newSealer(t, 1)
	nonce, err := s.Nonce()
	if err != nil {
		t.Fatal(err)
	}
	a := s.SealNonce(nonce, []byte("seed-seed-seed-!"), "token/1/seed")
	b := s.SealNonce(nonce, []byte("seed-seed-seed-!"), "token/1/seed")
	if !bytes.Equal(a, b) {
		t.Fatal("a re-run transaction would store a different value")
	}
	if got, err := s.Open(a, "token/1/seed"); err != nil || string(got) != "seed-seed-seed-!" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	other, _ := s.Nonce()
	if bytes.Equal(other, nonce) {
		t.Fatal("two nonces alike")
	}
}

func TestSealedHashKeyTravelsToANewKey(t *testing.T) {
	old, next := newSealer(t, 1), newSealer(t, 2)
	nonce, err := old.Nonce()
	if err != nil {
		t.Fatal(err)
	}
	sealedOld := old.SealHashKey(nonce)
	// A rotation opens the sealed hash key with the old key and re-seals it
	// under the new one, as it does every sealed value.
	raw, err := old.Open(sealedOld, HashKeyAAD)
	if err != nil {
		t.Fatal(err)
	}
	sealedNew, err := next.Seal(raw, HashKeyAAD)
	if err != nil {
		t.Fatal(err)
	}
	carried, err := next.WithSealedHashKey(sealedNew)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("123456789012")
	if !bytes.Equal(carried.Hash("code", secret), old.Hash("code", secret)) {
		t.Fatal("the carried hash key hashes differently from the old key")
	}
	if bytes.Equal(next.Hash("code", secret), old.Hash("code", secret)) {
		t.Fatal("two master keys derive the same hash key")
	}
	// Sealing and the check value stay the new key's.
	if err := carried.Verify(next.CheckValue()); err != nil {
		t.Fatalf("carried sealer's check: %v", err)
	}
	s, err := carried.Seal(secret, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := next.Open(s, "a"); err != nil {
		t.Fatalf("carried sealer seals under another key: %v", err)
	}
	tests := []struct {
		name   string
		sealer *Sealer
		sealed []byte
	}{
		{"sealed under the old key", next, sealedOld},
		{"under another key", newSealer(t, 3), sealedNew},
		{"truncated", next, sealedNew[:20]},
		{"not a hash key", next, s},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.sealer.WithSealedHashKey(tc.sealed); !errors.Is(err, ErrHashKey) {
				t.Fatalf("WithSealedHashKey = %v, want ErrHashKey", err)
			}
		})
	}
}

func TestFingerprintNamesTheKey(t *testing.T) {
	a, b := newSealer(t, 1), newSealer(t, 2)
	if Fingerprint(a.CheckValue()) != Fingerprint(newSealer(t, 1).CheckValue()) {
		t.Fatal("one key, two fingerprints")
	}
	if Fingerprint(a.CheckValue()) == Fingerprint(b.CheckValue()) {
		t.Fatal("two keys, one fingerprint")
	}
	if len(Fingerprint(a.CheckValue())) != 16 {
		t.Fatalf("fingerprint %q", Fingerprint(a.CheckValue()))
	}
}
