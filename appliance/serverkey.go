package appliance

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
)

var keyCTKIP = []byte("meta/ctkip-key")

const ctkipKeyAAD = "meta/ctkip-key"

// CTKIPKey returns the appliance's CT-KIP transport key, generating one of
// the given size on first use. It is stored sealed and survives restarts; a
// stored key of another size is kept (changing the size means deleting it
// deliberately, since it invalidates pending exchanges only).
func (s *Service) CTKIPKey(ctx context.Context, bits int) (*rsa.PrivateKey, error) {
	load := func() (*rsa.PrivateKey, error) {
		var sealed []byte
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			sealed, err = tx.Get(keyCTKIP)
			return err
		})
		if err != nil {
			return nil, err
		}
		der, err := s.sealer.Open(sealed, ctkipKeyAAD)
		if err != nil {
			return nil, fmt.Errorf("ctkip key: %w", err)
		}
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("ctkip key: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("ctkip key: not an RSA key")
		}
		return rk, nil
	}
	k, err := load()
	if err == nil || !errors.Is(err, ErrNotFound) {
		return k, err
	}
	key, err := rsa.GenerateKey(s.rand, bits)
	if err != nil {
		return nil, fmt.Errorf("ctkip key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ctkip key: %w", err)
	}
	sealed, err := s.sealer.Seal(der, ctkipKeyAAD)
	if err != nil {
		return nil, err
	}
	err = s.store.Update(ctx, func(tx Tx) error {
		if ok, err := exists(tx, keyCTKIP); err != nil || ok {
			return err // another start won the race: keep its key
		}
		return tx.Put(keyCTKIP, sealed)
	})
	if err != nil {
		return nil, err
	}
	return load()
}
