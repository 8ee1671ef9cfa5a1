package appliance_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/appliance/seal"
)

// clock is an adjustable time source for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	svc   *appliance.Service
	store appliance.Store
	clock *clock
	key   []byte
	ctx   context.Context
}

func newFixture(t *testing.T, store appliance.Store) *fixture {
	t.Helper()
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return newFixtureWithKey(t, store, key)
}

func newFixtureWithKey(t *testing.T, store appliance.Store, key []byte) *fixture {
	t.Helper()
	return newFixtureDecoding(t, store, key, nil)
}

// newFixtureDecoding builds the fixture's Service with a record decoder
// (nil: encoding/json).
func newFixtureDecoding(t *testing.T, store appliance.Store, key []byte, decode appliance.RecordDecoder) *fixture {
	t.Helper()
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	svc, err := appliance.New(appliance.Config{Store: store, Sealer: sealer, Now: clk.Now,
		CTKIPURL: "https://tokend.example:8444/ctkip/services/CtkipService", DecodeRecord: decode})
	if err != nil {
		t.Fatal(err)
	}
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, store: store, clock: clk, key: key, ctx: ctx}
}

func (f *fixture) importCSV(t *testing.T, csv string) appliance.ImportJob {
	t.Helper()
	job, err := f.svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csv)})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return job
}

func serials(n int, first int) string {
	var b strings.Builder
	b.WriteString("serial\n")
	for i := range n {
		fmt.Fprintf(&b, "%012d\n", first+i)
	}
	return b.String()
}

func (f *fixture) user(t *testing.T, name string) appliance.UserView {
	t.Helper()
	u, err := f.svc.CreateUser(f.ctx, appliance.NewUser{UserName: name, DisplayName: strings.ToUpper(name), Email: name + "@example.org"})
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	return u
}

func (f *fixture) profile(t *testing.T) appliance.Profile {
	t.Helper()
	p, err := f.svc.CreateProfile(f.ctx, appliance.Profile{Name: "android-ctkip", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP})
	if err != nil {
		t.Fatalf("create profile: %v", err)
	}
	return p
}

func TestSeedProcedure(t *testing.T) {
	f := newFixture(t, memstore.New())
	job := f.importCSV(t, serials(10, 100000000000))
	if job.Imported != 10 || job.RejectedTotal != 0 {
		t.Fatalf("job = %+v", job)
	}
	p := f.profile(t)
	if p.Digits != 8 || p.Interval != 60 || p.ActivationCodeTTL != 7*24*time.Hour {
		t.Fatalf("profile defaults = %+v", p)
	}
	alice := f.user(t, "alice")
	page, err := f.svc.ListUsers(f.ctx, appliance.UserQuery{Search: "ALI"})
	if err != nil || page.Total != 1 || page.Items[0].ID != alice.ID {
		t.Fatalf("quick search = %+v, %v", page, err)
	}
	unassigned := false
	toks, err := f.svc.ListTokens(f.ctx, appliance.TokenQuery{Search: "10000000000", Assigned: &unassigned})
	if err != nil || toks.Total != 10 {
		t.Fatalf("unassigned = %d, %v", toks.Total, err)
	}
	for _, tok := range toks.Items {
		if tok.State != appliance.StateDisabled || tok.UserID != "" {
			t.Fatalf("imported token %+v not disabled and unassigned", tok)
		}
	}
	view, err := f.svc.AssignTokens(f.ctx, alice.ID, []string{"100000000000", "100000000001", "100000000002"})
	if err != nil || len(view.Tokens) != 3 {
		t.Fatalf("assign three = %+v, %v", view, err)
	}
	for _, tok := range view.Tokens {
		if tok.State != appliance.StateEnabled {
			t.Fatalf("assigned token %s not enabled", tok.Serial)
		}
	}
	if _, err := f.svc.AssignTokens(f.ctx, alice.ID, []string{"100000000003"}); !errors.Is(err, appliance.ErrLimit) {
		t.Fatalf("fourth assign err = %v, want ErrLimit", err)
	}
	d, err := f.svc.Distribute(f.ctx, "100000000000", p.Name)
	if err != nil {
		t.Fatal(err)
	}
	code := d.ActivationCode.Reveal()
	if len(code) != 12 || strings.Trim(code, "0123456789") != "" {
		t.Fatalf("code %q is not 12 digits", code)
	}
	if !d.ExpiresAt.Equal(f.clock.Now().Add(7 * 24 * time.Hour)) {
		t.Fatalf("expires %v", d.ExpiresAt)
	}
	want := "com.rsa.securid://ctkip?scheme=https&url=tokend.example:8444/ctkip/services/CtkipService&activationCode=" + code
	if d.DeviceURL.Reveal() != want {
		t.Fatalf("device url %q", d.DeviceURL.Reveal())
	}
	if fmt.Sprint(d.ActivationCode) == code || fmt.Sprintf("%v", d) == code {
		t.Fatal("activation code prints itself")
	}
	ticket, err := f.svc.BeginProvisioning(f.ctx, code)
	if err != nil || ticket.Serial != "100000000000" || ticket.Digits != 8 {
		t.Fatalf("begin = %+v, %v", ticket, err)
	}
	seed := bytes.Repeat([]byte{0x5a}, 16)
	done, err := f.svc.CompleteProvisioning(f.ctx, code, seed)
	if err != nil || done.Serial != "100000000000" || done.UserName != "alice" || done.Digits != 8 {
		t.Fatalf("complete = %+v, %v", done, err)
	}
	tok, _ := f.svc.GetToken(f.ctx, "100000000000")
	if !tok.Provisioned || tok.Algorithm != appliance.AlgSecurID {
		t.Fatalf("token after provisioning = %+v", tok)
	}
	got, err := f.svc.TokenSeed(f.ctx, "100000000000")
	if err != nil || !bytes.Equal(got, seed) {
		t.Fatalf("seed = %x, %v", got, err)
	}
	var ce *appliance.CodeError
	if _, err := f.svc.BeginProvisioning(f.ctx, code); !errors.As(err, &ce) || ce.Reason != appliance.ProvisionUsed {
		t.Fatalf("reuse err = %v", err)
	}
	if _, err := f.svc.VerifyAudit(f.ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSecretsNeverStoredInClear(t *testing.T) {
	store := memstore.New()
	f := newFixture(t, store)
	f.importCSV(t, serials(1, 200000000000))
	f.profile(t)
	u := f.user(t, "bob")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"200000000000"}); err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.Distribute(f.ctx, "200000000000", "android-ctkip")
	if err != nil {
		t.Fatal(err)
	}
	seed := []byte("SEED-0123456789!")
	if _, err := f.svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), seed); err != nil {
		t.Fatal(err)
	}
	_, tokSecret, err := f.svc.CreateAPIToken(f.ctx, "ci", appliance.RoleHelpdesk)
	if err != nil {
		t.Fatal(err)
	}
	err = store.View(f.ctx, func(tx appliance.Tx) error {
		kvs, err := tx.Scan(nil, nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			for _, secret := range [][]byte{[]byte(d.ActivationCode.Reveal()), seed, []byte(tokSecret.Reveal()), f.key} {
				if bytes.Contains(kv.Key, secret) || bytes.Contains(kv.Value, secret) {
					t.Errorf("record %q holds a secret in clear", kv.Key)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentAssignsHoldTheLimit(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.importCSV(t, serials(50, 300000000000))
	u := f.user(t, "carol")
	var ok, limited atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_, err := f.svc.AssignTokens(f.ctx, u.ID, []string{fmt.Sprintf("%012d", 300000000000+i)})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, appliance.ErrLimit):
				limited.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 3 || limited.Load() != 47 {
		t.Fatalf("ok=%d limited=%d, want 3 and 47", ok.Load(), limited.Load())
	}
	v, _ := f.svc.GetUser(f.ctx, u.ID)
	if len(v.Tokens) != 3 {
		t.Fatalf("user holds %d tokens", len(v.Tokens))
	}
}

func TestCodeIsConsumedExactlyOnce(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.importCSV(t, serials(1, 400000000000))
	f.profile(t)
	u := f.user(t, "dave")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"400000000000"}); err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.Distribute(f.ctx, "400000000000", "android-ctkip")
	if err != nil {
		t.Fatal(err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			seed := bytes.Repeat([]byte{byte(i)}, 16)
			_, err := f.svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), seed)
			if err == nil {
				won.Add(1)
			} else if !errors.Is(err, appliance.ErrInvalidCode) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d devices provisioned with one code", won.Load())
	}
}

func TestActivationCodeLifecycle(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.importCSV(t, serials(1, 500000000000))
	f.profile(t)
	u := f.user(t, "erin")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"500000000000"}); err != nil {
		t.Fatal(err)
	}
	first, err := f.svc.Distribute(f.ctx, "500000000000", "android-ctkip")
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.svc.Distribute(f.ctx, "500000000000", "android-ctkip")
	if err != nil {
		t.Fatal(err)
	}
	reason := func(code string) string {
		_, err := f.svc.BeginProvisioning(f.ctx, code)
		var ce *appliance.CodeError
		if err == nil {
			return "ok"
		}
		if errors.As(err, &ce) {
			return ce.Reason
		}
		return err.Error()
	}
	tests := []struct {
		name string
		code string
		step func()
		want string
	}{
		{"previous code voided by re-issue", first.ActivationCode.Reveal(), nil, appliance.ProvisionBadCode},
		{"current code valid", second.ActivationCode.Reveal(), nil, "ok"},
		{"unknown code", "000000000000", nil, appliance.ProvisionBadCode},
		{"expired after the profile's lifetime", second.ActivationCode.Reveal(), func() { f.clock.Add(7*24*time.Hour + time.Second) }, appliance.ProvisionExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.step != nil {
				tc.step()
			}
			if got := reason(tc.code); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	third, err := f.svc.Distribute(f.ctx, "500000000000", "android-ctkip")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.VoidDistribution(f.ctx, "500000000000"); err != nil {
		t.Fatal(err)
	}
	if got := reason(third.ActivationCode.Reveal()); got != appliance.ProvisionBadCode {
		t.Fatalf("voided code: %q", got)
	}
}

func TestDistributeRefusals(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.importCSV(t, "serial,kind\n600000000000,software\n600000000001,hardware\n600000000002,software\n")
	f.profile(t)
	if _, err := f.svc.CreateProfile(f.ctx, appliance.Profile{Name: "file", DeviceType: appliance.DeviceWindows, DeliveryMethod: appliance.DeliveryFile}); err != nil {
		t.Fatal(err)
	}
	u := f.user(t, "frank")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"600000000000", "600000000001"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, serial, profile string
		want                  error
	}{
		{"unassigned token", "600000000002", "android-ctkip", appliance.ErrInvalidState},
		{"hardware token", "600000000001", "android-ctkip", appliance.ErrInvalidState},
		{"unknown profile", "600000000000", "nope", appliance.ErrNotFound},
		{"non-ctkip profile", "600000000000", "file", appliance.ErrInvalidState},
		{"unknown token", "699999999999", "android-ctkip", appliance.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.svc.Distribute(f.ctx, tc.serial, tc.profile); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	var v *appliance.ValidationError
	if _, err := f.svc.Distribute(f.ctx, "12ab", "android-ctkip"); !errors.As(err, &v) {
		t.Fatalf("bad serial err = %v", err)
	}
}

func TestImportDuplicatesAndOverwrite(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.importCSV(t, "serial,digits\n700000000000,8\n700000000001,8\n")
	u := f.user(t, "gina")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"700000000000"}); err != nil {
		t.Fatal(err)
	}
	job := f.importCSV(t, "serial,digits\n700000000000,6\n700000000001,6\n700000000002,6\nbad,6\n")
	if job.Imported != 1 || job.Skipped != 2 || job.RejectedTotal != 1 || job.Rejected[0].Row != 5 {
		t.Fatalf("skip job = %+v", job)
	}
	job, err := f.svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, OnDuplicate: appliance.OnDuplicateOverwrite,
		Body: strings.NewReader("serial,digits\n700000000000,6\n700000000001,6\n")})
	if err != nil {
		t.Fatal(err)
	}
	if job.Overwritten != 1 || job.Skipped != 1 {
		t.Fatalf("overwrite job = %+v", job)
	}
	assigned, _ := f.svc.GetToken(f.ctx, "700000000000")
	free, _ := f.svc.GetToken(f.ctx, "700000000001")
	if assigned.Digits != 8 || assigned.UserID != u.ID || free.Digits != 6 {
		t.Fatalf("assigned=%+v free=%+v", assigned, free)
	}
	if got, err := f.svc.GetImportJob(f.ctx, job.ID); err != nil || got.Overwritten != 1 {
		t.Fatalf("stored job = %+v, %v", got, err)
	}
}

func TestImportDryRunWritesNoToken(t *testing.T) {
	f := newFixture(t, memstore.New())
	job, err := f.svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, DryRun: true, Body: strings.NewReader(serials(200, 800000000000))})
	if err != nil || job.Imported != 200 {
		t.Fatalf("dry run = %+v, %v", job, err)
	}
	page, _ := f.svc.ListTokens(f.ctx, appliance.TokenQuery{})
	if page.Total != 0 {
		t.Fatalf("dry run stored %d tokens", page.Total)
	}
}

func TestImportFileErrorsImportNothing(t *testing.T) {
	f := newFixture(t, memstore.New())
	tests := []struct{ name, body string }{
		{"unknown column", "serial,colour\n900000000000,red\n"},
		{"no serial column", "digits\n8\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(tc.body)})
			if !errors.Is(err, appliance.ErrImportFile) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	page, _ := f.svc.ListTokens(f.ctx, appliance.TokenQuery{})
	if page.Total != 0 {
		t.Fatalf("%d tokens stored", page.Total)
	}
}

func TestImportManyRowsIsChunked(t *testing.T) {
	f := newFixture(t, memstore.New())
	job := f.importCSV(t, serials(5000, 110000000000))
	if job.Imported != 5000 {
		t.Fatalf("imported %d", job.Imported)
	}
	page, err := f.svc.ListTokens(f.ctx, appliance.TokenQuery{Limit: 1000})
	if err != nil || page.Total != 5000 || len(page.Items) != 1000 || page.NextCursor == "" {
		t.Fatalf("page total=%d items=%d next=%q err=%v", page.Total, len(page.Items), page.NextCursor, err)
	}
}

func TestListPagination(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.importCSV(t, serials(25, 120000000000))
	var got []string
	cursor := ""
	for {
		page, err := f.svc.ListTokens(f.ctx, appliance.TokenQuery{Limit: 10, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range page.Items {
			got = append(got, tok.Serial)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(got) != 25 || got[0] != "120000000000" || got[24] != "120000000024" {
		t.Fatalf("paged serials = %v", got)
	}
	for i := range 12 {
		f.user(t, fmt.Sprintf("user%02d", i))
	}
	var names []string
	cursor = ""
	for {
		page, err := f.svc.ListUsers(f.ctx, appliance.UserQuery{Limit: 5, Cursor: cursor})
		if err != nil || page.Total != 12 {
			t.Fatalf("users page total=%d err=%v", page.Total, err)
		}
		for _, u := range page.Items {
			names = append(names, u.UserName)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(names) != 12 || names[0] != "user00" || names[11] != "user11" {
		t.Fatalf("paged users = %v", names)
	}
}

func TestUserValidationAndUniqueness(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.user(t, "Heidi")
	if _, err := f.svc.CreateUser(f.ctx, appliance.NewUser{UserName: "heidi"}); !errors.Is(err, appliance.ErrExists) {
		t.Fatalf("case-insensitive duplicate: %v", err)
	}
	var v *appliance.ValidationError
	_, err := f.svc.CreateUser(f.ctx, appliance.NewUser{UserName: "", Email: "not-an-address"})
	if !errors.As(err, &v) || len(v.Problems) != 2 {
		t.Fatalf("validation: %v", err)
	}
}

func TestWrongMasterKeyIsRefused(t *testing.T) {
	store := memstore.New()
	newFixture(t, store)
	other := make([]byte, seal.KeySize)
	sealer, _ := seal.New(other, rand.Reader)
	svc, _ := appliance.New(appliance.Config{Store: store, Sealer: sealer})
	if err := svc.Init(context.Background()); !errors.Is(err, seal.ErrWrongKey) {
		t.Fatalf("err = %v", err)
	}
}

func TestAPITokens(t *testing.T) {
	f := newFixture(t, memstore.New())
	tok, secret, err := f.svc.CreateAPIToken(f.ctx, "desk", appliance.RoleHelpdesk)
	if err != nil {
		t.Fatal(err)
	}
	actor, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal())
	if err != nil || actor.Role != appliance.RoleHelpdesk {
		t.Fatalf("auth = %+v, %v", actor, err)
	}
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()+"x"); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("tampered token: %v", err)
	}
	if err := f.svc.RevokeAPIToken(f.ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("revoked token: %v", err)
	}
}

func TestStats(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.importCSV(t, "serial,kind\n160000000000,software\n160000000001,software\n160000000002,hardware\n")
	f.profile(t)
	u := f.user(t, "mia")
	if _, err := f.svc.CreateUser(f.ctx, appliance.NewUser{UserName: "ned", Active: new(bool)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"160000000000", "160000000001"}); err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.Distribute(f.ctx, "160000000000", "android-ctkip")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Distribute(f.ctx, "160000000001", "android-ctkip"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	st, err := f.svc.Stats(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := appliance.Stats{
		Tokens:           map[[2]string]int{{"software", "enabled"}: 2, {"hardware", "disabled"}: 1},
		Assigned:         2,
		Provisioned:      1,
		Users:            map[[2]string]int{{"internal", "true"}: 1, {"internal", "false"}: 1},
		OutstandingCodes: 1,
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Fatalf("stats (-want +got):\n%s", diff)
	}
}

func TestCTKIPKeyPersists(t *testing.T) {
	store := memstore.New()
	f := newFixture(t, store)
	k1, err := f.svc.CTKIPKey(f.ctx, 1024)
	if err != nil || k1.N.BitLen() != 1024 {
		t.Fatalf("key: %v", err)
	}
	again := newFixtureWithKey(t, store, f.key)
	k2, err := again.svc.CTKIPKey(f.ctx, 2048)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("second start got another key: %v", err)
	}
}

// TestRecordDecoder shows that a Service given a record decoder reads every
// kind of record through it, inside counter-buffered transactions too, and
// that its errors reach the caller.
func TestRecordDecoder(t *testing.T) {
	store := memstore.New()
	key := make([]byte, seal.KeySize)
	var calls atomic.Int64
	var fail atomic.Bool
	errBroken := errors.New("decoder broken")
	decode := func(b []byte, v any) error {
		calls.Add(1)
		if fail.Load() {
			return errBroken
		}
		return json.Unmarshal(b, v)
	}
	f := newFixtureDecoding(t, store, key, decode)
	f.importCSV(t, serials(2, 300000000000)) // counter-buffered chunks
	p := f.profile(t)
	u := f.user(t, "carol")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"300000000000"}); err != nil {
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
	// The code, the token, the user, the audit chain head and the counts.
	if n := calls.Load() - before; n < 5 {
		t.Fatalf("provisioning decoded %d records through the decoder, want at least 5", n)
	}
	profiles, err := f.svc.ListProfiles(f.ctx)
	if err != nil || len(profiles) != 1 {
		t.Fatalf("profiles = %v, %v", profiles, err)
	}
	tok, err := f.svc.GetToken(f.ctx, "300000000000")
	if err != nil || !tok.Provisioned || tok.UserID != u.ID {
		t.Fatalf("token = %+v, %v", tok, err)
	}

	fail.Store(true)
	if _, err := f.svc.GetToken(f.ctx, "300000000000"); !errors.Is(err, errBroken) {
		t.Fatalf("GetToken with a failing decoder: err = %v", err)
	}
	if _, err := f.svc.ListProfiles(f.ctx); !errors.Is(err, errBroken) {
		t.Fatalf("ListProfiles with a failing decoder: err = %v", err)
	}
}
