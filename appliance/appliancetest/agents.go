package appliancetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/otp"
)

// Clock is a settable clock for a Service (Config.Now), starting at the
// real time.
type Clock struct {
	mu  sync.Mutex
	off time.Duration
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.off += d; c.mu.Unlock() }

// User gives svc a user with one provisioned SecurID token (8 digits, 60 s)
// under a CT-KIP profile with the given PIN mode, and returns the token's
// generator. Each call must use a distinct serial; profiles are created as
// needed ("pin-<mode>").
func User(t testing.TB, ctx context.Context, svc *appliance.Service, userName, serial, pinMode string) otp.SecurID {
	t.Helper()
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV,
		Body: strings.NewReader("serial\n" + serial + "\n")}); err != nil {
		t.Fatal(err)
	}
	profile := "pin-" + pinMode
	if _, err := svc.GetProfile(ctx, profile); err != nil {
		if _, err := svc.CreateProfile(ctx, appliance.Profile{Name: profile, DeviceType: appliance.DeviceAndroid,
			DeliveryMethod: appliance.DeliveryCTKIP, PINMode: pinMode, Digits: 8, Interval: 60}); err != nil {
			t.Fatal(err)
		}
	}
	u, err := svc.CreateUser(ctx, appliance.NewUser{UserName: userName})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AssignTokens(ctx, u.ID, []string{serial}); err != nil {
		t.Fatal(err)
	}
	d, err := svc.Distribute(ctx, serial, profile)
	if err != nil {
		t.Fatal(err)
	}
	seed := Seed(serial)
	if _, err := svc.CompleteProvisioning(ctx, d.ActivationCode.Reveal(), seed); err != nil {
		t.Fatal(err)
	}
	gen, err := otp.NewSecurID(seed, serial, 8, 60)
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

// Seed is the test seed User provisions for a serial.
func Seed(serial string) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("%-4.4s", serial[len(serial)-4:])), 4)
}

// Code returns gen's tokencode at step.
func Code(t testing.TB, gen otp.SecurID, step int64) string {
	t.Helper()
	c, err := gen.CodeAt(step)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// OpenBoltStore opens the production bbolt store at path; the caller closes
// it (tests that stop and start a node on the same data).
func OpenBoltStore(path string) (appliance.Store, error) {
	return boltstore.Open(path, boltstore.Options{})
}
