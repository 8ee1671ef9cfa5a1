package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/otp"
	"tokend/appliance/seal"
)

// RunService runs the appliance's seed procedure on a store: import →
// assign → distribute → provision → verify, plus the invariants that depend
// on the store's isolation (the token limit and one-time codes under
// concurrency, a tokencode accepted once).
func RunService(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	// (appliancetest cannot serve here: it opens bbolt stores, whose tests
	// import this package.)
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	svc, err := appliance.New(appliance.Config{Store: s, Sealer: sealer, Now: func() time.Time { return now },
		CTKIPURL: "https://tokend.test:8444/ctkip/services/CtkipService"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "storetest", Name: "storetest", Role: appliance.RoleSuperAdmin})
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("serial\n")
	for i := range 300 { // several chunks: the import must respect the write limit
		fmt.Fprintf(&csv, "%012d\n", 500000000000+i)
	}
	job, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csv.String())})
	if err != nil || job.Imported != 300 {
		t.Fatalf("import: %+v, %v", job, err)
	}
	if _, err := svc.CreateProfile(ctx, appliance.Profile{Name: "ctkip", DeviceType: appliance.DeviceIOS,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeNone}); err != nil {
		t.Fatal(err)
	}
	u, err := svc.CreateUser(ctx, appliance.NewUser{UserName: "storetest-user", Email: "st@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	// 20 concurrent assigns against one user: the limit holds.
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := svc.AssignTokens(ctx, u.ID, []string{fmt.Sprintf("%012d", 500000000000+i)}); err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != appliance.MaxTokensPerUser {
		t.Fatalf("%d concurrent assigns succeeded, want %d", ok.Load(), appliance.MaxTokensPerUser)
	}
	view, err := svc.GetUser(ctx, u.ID)
	if err != nil || len(view.Tokens) != appliance.MaxTokensPerUser {
		t.Fatalf("user holds %d tokens: %v", len(view.Tokens), err)
	}
	serial := view.Tokens[0].Serial
	d, err := svc.Distribute(ctx, serial, "ctkip")
	if err != nil {
		t.Fatal(err)
	}
	seed := bytes.Repeat([]byte{0x3c}, 16)
	var won atomic.Int32
	for range 8 {
		wg.Go(func() {
			if _, err := svc.CompleteProvisioning(ctx, d.ActivationCode.Reveal(), seed); err == nil {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("one code provisioned %d times", won.Load())
	}
	got, err := svc.TokenSeed(ctx, serial)
	if err != nil || !bytes.Equal(got, seed) {
		t.Fatalf("seed round trip: %v", err)
	}
	gen, err := otp.NewSecurID(seed, serial, 8, 60)
	if err != nil {
		t.Fatal(err)
	}
	code, err := gen.Code(now)
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	for range 8 {
		wg.Go(func() {
			r, err := svc.Authenticate(ctx, appliance.AuthRequest{UserName: "storetest-user", Passcode: code})
			if err != nil {
				t.Error(err)
			}
			if r.Result == appliance.AuthAccept {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if accepted.Load() != 1 {
		t.Fatalf("one tokencode accepted %d times", accepted.Load())
	}
	if rep, err := svc.VerifyAudit(ctx); err != nil {
		t.Fatalf("audit chain: %+v, %v", rep, err)
	}
}
