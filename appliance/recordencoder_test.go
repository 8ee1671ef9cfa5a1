package appliance_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/appliance/seal"
)

// newFixtureEncoding builds the fixture's Service with a record encoder.
func newFixtureEncoding(t *testing.T, encode appliance.RecordEncoder) *fixture {
	t.Helper()
	store := memstore.New()
	key := make([]byte, seal.KeySize)
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	svc, err := appliance.New(appliance.Config{Store: store, Sealer: sealer, Now: clk.Now,
		CTKIPURL: "https://tokend.example:8444/ctkip/services/CtkipService", EncodeRecord: encode})
	if err != nil {
		t.Fatal(err)
	}
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, store: store, clock: clk, key: key, ctx: ctx}
}

// TestRecordEncoder shows that a Service given a record encoder writes
// records and audit entries through it, inside counter-buffered
// transactions too, that its errors reach the caller, and that the audit
// chain verifies with the encoder's bytes.
func TestRecordEncoder(t *testing.T) {
	var calls atomic.Int64
	var fail atomic.Bool
	errBroken := errors.New("encoder broken")
	encode := func(v any) ([]byte, error) {
		calls.Add(1)
		if fail.Load() {
			return nil, errBroken
		}
		return json.Marshal(v)
	}
	f := newFixtureEncoding(t, encode)
	f.importCSV(t, serials(3, 300000000000)) // counter-buffered chunks
	p := f.profile(t)
	u := f.user(t, "carol")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"300000000000", "300000000001"}); err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.Distribute(f.ctx, "300000000000", p.Name)
	if err != nil {
		t.Fatal(err)
	}
	before := calls.Load()
	if _, err := f.svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), bytes.Repeat([]byte{1}, 16)); err != nil {
		t.Fatal(err)
	}
	// The code, the token, the audit record and its chain head.
	if n := calls.Load() - before; n < 4 {
		t.Fatalf("provisioning encoded %d records through the encoder, want at least 4", n)
	}
	if rep, err := f.svc.VerifyAudit(f.ctx); err != nil || rep.Records == 0 {
		t.Fatalf("VerifyAudit = %+v, %v", rep, err)
	}

	fail.Store(true)
	if _, err := f.svc.Distribute(f.ctx, "300000000001", p.Name); !errors.Is(err, errBroken) {
		t.Fatalf("Distribute with a failing encoder: err = %v", err)
	}
	if _, err := f.svc.CreateUser(f.ctx, appliance.NewUser{UserName: "dave"}); !errors.Is(err, errBroken) {
		t.Fatalf("CreateUser with a failing encoder: err = %v", err)
	}
	fail.Store(false)
	if _, err := f.svc.Distribute(f.ctx, "300000000001", p.Name); err != nil {
		t.Fatalf("Distribute after the encoder recovered: %v", err)
	}
}

// TestRecordEncoderBytesAreHashed shows why an encoder must give
// encoding/json's bytes: audit records are verified by re-encoding them with
// encoding/json, so an encoder whose JSON is valid but spaced differently
// breaks the chain.
func TestRecordEncoderBytesAreHashed(t *testing.T) {
	indent := func(v any) ([]byte, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		var out bytes.Buffer
		if err := json.Indent(&out, b, "", " "); err != nil {
			return nil, err
		}
		return out.Bytes(), nil
	}
	f := newFixtureEncoding(t, indent)
	f.user(t, "carol")
	if _, err := f.svc.VerifyAudit(f.ctx); !errors.Is(err, appliance.ErrAuditBroken) {
		t.Fatalf("VerifyAudit over records from an indenting encoder: err = %v, want ErrAuditBroken", err)
	}
}
