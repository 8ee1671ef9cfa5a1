package main

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/ctkip"
)

func TestGuessLimiter(t *testing.T) {
	g := newGuessLimiter(0.0001, 3, 0.0001, 5, slog.New(slog.DiscardHandler))
	a, b, c := "192.0.2.1:1111", "192.0.2.1:2222", "198.51.100.7:3333"
	for range 3 {
		if !g.Allow(a) {
			t.Fatal("refused before the per-client burst was used")
		}
		g.Fail(a)
	}
	if g.Allow(b) {
		t.Fatal("the same address on another port was not throttled")
	}
	if !g.Allow(c) {
		t.Fatal("another address was throttled")
	}
	g.Fail(c)
	g.Fail(c)
	if g.Allow(c) || g.Allow("203.0.113.9:1") {
		t.Fatal("the total bucket did not stop guessing from everywhere")
	}
}

func TestCTKIPErrorTranslation(t *testing.T) {
	tests := []struct {
		name string
		in   error
		want error
	}{
		{"unknown code", &appliance.CodeError{Reason: appliance.ProvisionBadCode}, ctkip.ErrInvalidCode},
		{"expired code", &appliance.CodeError{Reason: appliance.ProvisionExpired}, ctkip.ErrCodeExpired},
		{"used code", &appliance.CodeError{Reason: appliance.ProvisionUsed}, ctkip.ErrCodeUsed},
		{"store failure stays internal", appliance.ErrClosed, appliance.ErrClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ctkipError(tc.in); !errors.Is(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAuthPolicyFromConfig(t *testing.T) {
	tests := []struct {
		name    string
		lockout time.Duration
		want    time.Duration
	}{
		{"timed lockout", 30 * time.Minute, 30 * time.Minute},
		{"zero means until an admin unlocks", 0, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := defaultConfig().Auth
			a.LockoutDuration = tc.lockout
			p := authPolicy(a)
			if p.LockoutDuration != tc.want || p.MaxFailures != 5 || p.LargeWindow != 10 || p.PIN.MaxLength != 8 {
				t.Fatalf("policy = %+v", p)
			}
		})
	}
}
