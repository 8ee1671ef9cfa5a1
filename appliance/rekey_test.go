package appliance_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/appliance/otp"
	"tokend/appliance/seal"
)

// rekeyWorld is a store holding every kind of sealed value and keyed hash,
// written under one master key, and the secrets to check them with.
type rekeyWorld struct {
	serials        []string // provisioned, one user per three
	users          []string
	pendingUser    string
	pendingSerial  string
	pendingCode    string // an activation code issued and not yet used
	apiToken       string
	radiusSecret   string
	restKey        string
	sourceID       string
	bindPassword   string
	scimToken      string
	emergencyUser  string
	emergencyCode  string
	ctkipPublicKey *rsa.PublicKey
}

func rekeySeed(serial string) []byte {
	sum := sha256.Sum256([]byte(serial))
	return sum[:16]
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, seal.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func sealerOf(t *testing.T, key []byte) *seal.Sealer {
	t.Helper()
	s, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// populate writes a rekeyWorld with n provisioned tokens into store under key.
func populate(t *testing.T, store appliance.Store, key []byte, n int) *rekeyWorld {
	t.Helper()
	f := newFixtureWithKey(t, store, key)
	ctx := f.ctx
	w := &rekeyWorld{}
	f.importCSV(t, serials(n+1, 150000000000))
	if _, err := f.svc.CreateProfile(ctx, appliance.Profile{Name: "p", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeNone, Digits: 8, Interval: 60}); err != nil {
		t.Fatal(err)
	}
	var u appliance.UserView
	for i := range n {
		serial := fmt.Sprintf("%012d", 150000000000+i)
		if i%3 == 0 {
			u = f.user(t, fmt.Sprintf("u%03d", i/3))
			w.users = append(w.users, u.UserName)
		}
		if _, err := f.svc.AssignTokens(ctx, u.ID, []string{serial}); err != nil {
			t.Fatal(err)
		}
		d, err := f.svc.Distribute(ctx, serial, "p")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.CompleteProvisioning(ctx, d.ActivationCode.Reveal(), rekeySeed(serial)); err != nil {
			t.Fatal(err)
		}
		w.serials = append(w.serials, serial)
	}
	pending := f.user(t, "pending")
	w.pendingUser, w.pendingSerial = pending.UserName, fmt.Sprintf("%012d", 150000000000+n)
	if _, err := f.svc.AssignTokens(ctx, pending.ID, []string{w.pendingSerial}); err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.Distribute(ctx, w.pendingSerial, "p")
	if err != nil {
		t.Fatal(err)
	}
	w.pendingCode = d.ActivationCode.Reveal()

	_, tok, err := f.svc.CreateAPIToken(ctx, "ops", appliance.RoleHelpdesk)
	if err != nil {
		t.Fatal(err)
	}
	w.apiToken = tok.Reveal()
	w.radiusSecret = "radius-shared-secret-0123"
	if _, _, err := f.svc.CreateAgent(ctx, appliance.AgentInput{Name: "vpn", Kind: appliance.AgentRADIUS, Address: "192.0.2.1",
		Secret: appliance.Secret(w.radiusSecret)}); err != nil {
		t.Fatal(err)
	}
	_, key2, err := f.svc.CreateAgent(ctx, appliance.AgentInput{Name: "idp", Kind: appliance.AgentREST})
	if err != nil {
		t.Fatal(err)
	}
	w.restKey = key2.Reveal()
	w.bindPassword = "bind-password-for-ldap"
	src, _, err := f.svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "Corp", Type: appliance.SourceTypeLDAP,
		LDAP: &appliance.LDAPSourceConfig{URL: "ldaps://dc.example:636", BaseDN: "dc=example", BindDN: "cn=tokend",
			BindPassword: appliance.Secret(w.bindPassword)}})
	if err != nil {
		t.Fatal(err)
	}
	w.sourceID = src.ID
	_, scim, err := f.svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "Okta", Type: appliance.SourceTypeSCIM})
	if err != nil {
		t.Fatal(err)
	}
	w.scimToken = scim.Reveal()
	eu := f.user(t, "emergency")
	w.emergencyUser = eu.UserName
	ea, err := f.svc.IssueEmergencyAccess(ctx, eu.ID, appliance.EmergencyFixed, 1, 4*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	w.emergencyCode = ea.Codes[0].Reveal()
	k, err := f.svc.CTKIPKey(ctx, 1024)
	if err != nil {
		t.Fatal(err)
	}
	w.ctkipPublicKey = &k.PublicKey
	return w
}

// sealedValue is one sealed value found in a store, with its associated
// data (rebuilt here independently of rekey.go).
type sealedValue struct {
	key, aad string
	sealed   []byte
}

func sealedValues(t *testing.T, st appliance.Store) []sealedValue {
	t.Helper()
	var out []sealedValue
	err := st.View(context.Background(), func(tx appliance.Tx) error {
		out = nil
		for _, k := range []string{"meta/ctkip-key", "meta/hash-key"} {
			v, err := tx.Get([]byte(k))
			if errors.Is(err, appliance.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, sealedValue{k, k, v})
		}
		for _, f := range []struct{ prefix, field, aad string }{
			{"t/", "seed", "token/%s/seed"},
			{"ag/", "secret", "agent/%s/radius-secret"},
			{"src/", "sealed_bind_password", "identity-source/%s/bind-password"},
			{"roi/", "code", "rollout/%s/activation-code"},
		} {
			kvs, err := tx.Scan([]byte(f.prefix), nil, 0)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				var rec map[string]json.RawMessage
				if err := json.Unmarshal(kv.Value, &rec); err != nil {
					return err
				}
				var b []byte
				if raw, ok := rec[f.field]; ok {
					if err := json.Unmarshal(raw, &b); err != nil {
						return err
					}
				}
				if len(b) > 0 {
					id := strings.TrimPrefix(string(kv.Key), f.prefix)
					out = append(out, sealedValue{string(kv.Key), fmt.Sprintf(f.aad, id), b})
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOneKey fails unless every sealed value opens under exactly one of
// the two keys; it returns how many open under each.
func checkOneKey(t *testing.T, st appliance.Store, old, next *seal.Sealer) (underOld, underNew int) {
	t.Helper()
	for _, v := range sealedValues(t, st) {
		_, eo := old.Open(v.sealed, v.aad)
		_, en := next.Open(v.sealed, v.aad)
		switch {
		case eo == nil && en == nil, eo != nil && en != nil:
			t.Fatalf("%s opens under old key: %v, under new key: %v; want exactly one", v.key, eo == nil, en == nil)
		case eo == nil:
			underOld++
		default:
			underNew++
		}
	}
	return underOld, underNew
}

// verifyWorld checks, through a Service holding key, that every secret of w
// works, and that wrongKey no longer opens the store. It uses the codes it
// checks (tokencodes, the pending activation code), so it runs once per store.
func verifyWorld(t *testing.T, st appliance.Store, w *rekeyWorld, key, wrongKey []byte) {
	t.Helper()
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})
	wrong, err := appliance.New(appliance.Config{Store: st, Sealer: sealerOf(t, wrongKey)})
	if err != nil {
		t.Fatal(err)
	}
	if err := wrong.Init(ctx); !errors.Is(err, seal.ErrWrongKey) {
		t.Fatalf("Init with the other key = %v, want ErrWrongKey", err)
	}
	underWrong, underKey := checkOneKey(t, st, sealerOf(t, wrongKey), sealerOf(t, key))
	// The seeds, the CT-KIP key, a RADIUS secret and a bind password (and
	// the hash key once a rotation started).
	if underWrong != 0 || underKey < len(w.serials)+3 {
		t.Fatalf("%d sealed values open under the other key, %d under the store's key (want 0 and ≥ %d)", underWrong, underKey, len(w.serials)+3)
	}
	f := newFixtureWithKey(t, st, key)
	for _, serial := range w.serials {
		seed, err := f.svc.TokenSeed(ctx, serial)
		if err != nil || !bytes.Equal(seed, rekeySeed(serial)) {
			t.Fatalf("seed of %s: %v", serial, err)
		}
	}
	step := f.clock.Now().Unix() / 60
	for i, name := range w.users {
		if i%7 != 0 && i != len(w.users)-1 {
			continue // a sample: the seeds were all checked above
		}
		serial := w.serials[3*i]
		g, err := otp.NewSecurID(rekeySeed(serial), serial, 8, 60)
		if err != nil {
			t.Fatal(err)
		}
		r, err := f.svc.Authenticate(ctx, appliance.AuthRequest{UserName: name, Passcode: codeAt(t, g, step)})
		if err != nil || r.Result != appliance.AuthAccept {
			t.Fatalf("tokencode of %s (%s): %+v %v", name, serial, r, err)
		}
	}
	// Keyed hashes made before the rotation still match.
	pendingSeed := rekeySeed(w.pendingSerial)
	if _, err := f.svc.CompleteProvisioning(ctx, w.pendingCode, pendingSeed); err != nil {
		t.Fatalf("activation code issued before the rotation: %v", err)
	}
	g, err := otp.NewSecurID(pendingSeed, w.pendingSerial, 8, 60)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := f.svc.Authenticate(ctx, appliance.AuthRequest{UserName: w.pendingUser, Passcode: codeAt(t, g, step)}); err != nil || r.Result != appliance.AuthAccept {
		t.Fatalf("token provisioned after the rotation: %+v %v", r, err)
	}
	if _, err := f.svc.AuthenticateAPIToken(ctx, w.apiToken); err != nil {
		t.Fatalf("API token: %v", err)
	}
	if _, err := f.svc.AuthenticateAgentKey(ctx, w.restKey); err != nil {
		t.Fatalf("REST agent access key: %v", err)
	}
	if _, err := f.svc.AuthenticateSCIMToken(ctx, w.scimToken); err != nil {
		t.Fatalf("SCIM token: %v", err)
	}
	if r, err := f.svc.Authenticate(ctx, appliance.AuthRequest{UserName: w.emergencyUser, Passcode: w.emergencyCode}); err != nil || r.Result != appliance.AuthAccept {
		t.Fatalf("emergency code: %+v %v", r, err)
	}
	clients, err := f.svc.RADIUSClients(ctx)
	if err != nil || len(clients) != 1 || clients[0].SharedSecret.Reveal() != w.radiusSecret {
		t.Fatalf("RADIUS secret: %d clients, %v", len(clients), err)
	}
	if pw, err := f.svc.LDAPBindPassword(ctx, w.sourceID); err != nil || pw.Reveal() != w.bindPassword {
		t.Fatalf("LDAP bind password: %v", err)
	}
	k, err := f.svc.CTKIPKey(ctx, 1024)
	if err != nil || !k.PublicKey.Equal(w.ctkipPublicKey) {
		t.Fatalf("CT-KIP key changed or unreadable: %v", err)
	}
	if rep, err := f.svc.VerifyAudit(ctx); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("audit chain: %+v %v", rep, err)
	}
}

// crashStore fails every Update after the first left ones: the process
// dies between two transactions (each of which the store makes atomic).
type crashStore struct {
	appliance.Store
	left, updates int
}

var errCrash = errors.New("crash")

func (c *crashStore) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if c.left == 0 {
		return errCrash
	}
	c.left--
	c.updates++
	return c.Store.Update(ctx, fn)
}

// snapshot returns every key and value of st.
func snapshot(t *testing.T, st appliance.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := st.View(context.Background(), func(tx appliance.Tx) error {
		kvs, err := tx.Scan(nil, nil, 0)
		for _, kv := range kvs {
			out[string(kv.Key)] = string(kv.Value)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cloneStore copies st into a new memstore.
func cloneStore(t *testing.T, st appliance.Store) appliance.Store {
	t.Helper()
	dst := memstore.New()
	t.Cleanup(func() { dst.Close() })
	var batch [][2]string
	flush := func() {
		if err := dst.Update(context.Background(), func(tx appliance.Tx) error {
			for _, kv := range batch {
				if err := tx.Put([]byte(kv[0]), []byte(kv[1])); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	for k, v := range snapshot(t, st) {
		if batch = append(batch, [2]string{k, v}); len(batch) == 50 {
			flush()
		}
	}
	flush()
	return dst
}

var cli = appliance.Actor{ID: "cli", Name: "tokend rekey", Role: appliance.RoleSuperAdmin}

// fixtureNow is the fixture's clock (newFixtureDecoding), so the rotation's
// audit records fall in the same day bucket as the others.
func fixtureNow() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }

func TestRekeyReSealsEverythingAndKeepsCodesAndTokensWorking(t *testing.T) {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	oldKey, nextKey := newKey(t), newKey(t)
	w := populate(t, st, oldKey, 20)
	var chunks int
	got, err := appliance.Rekey(context.Background(), appliance.RekeyConfig{Store: st, Old: sealerOf(t, oldKey), New: sealerOf(t, nextKey),
		Actor: cli, Now: fixtureNow, Chunk: 4, Progress: func(appliance.RekeyStatus) { chunks++ }})
	if err != nil {
		t.Fatal(err)
	}
	if chunks < 5 {
		t.Fatalf("%d chunks, want several", chunks)
	}
	// 20 seeds, the CT-KIP key, the hash key, a RADIUS secret, a bind password.
	if got.State != "" || got.Resealed != 24 || seal.Fingerprint(got.KeyCheck) != seal.Fingerprint(sealerOf(t, nextKey).CheckValue()) {
		t.Fatalf("status after the rotation = %+v, want the new key and no rotation", got)
	}
	verifyWorld(t, st, w, nextKey, oldKey)
	f := newFixtureWithKey(t, st, nextKey)
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: "masterkey.rekey", Limit: 10})
	if err != nil || len(page.Items) != 1 || page.Items[0].Actor.Name != cli.Name {
		t.Fatalf("audit of the rotation: %+v %v", page.Items, err)
	}
}

// TestRekeyInterruptedAtEveryTransaction stops a rotation after each of its
// transactions in turn (and a rollback after each of its own), and checks
// that every sealed value is then under exactly one key, that a Service
// refuses the store, and that resuming or rolling back ends with a store
// that works under the right key only.
func TestRekeyInterruptedAtEveryTransaction(t *testing.T) {
	base := memstore.New()
	t.Cleanup(func() { base.Close() })
	oldKey, nextKey := newKey(t), newKey(t)
	w := populate(t, base, oldKey, 12)
	old, next := sealerOf(t, oldKey), sealerOf(t, nextKey)
	cfg := func(st appliance.Store) appliance.RekeyConfig {
		return appliance.RekeyConfig{Store: st, Old: old, New: next, Actor: cli, Now: fixtureNow, Chunk: 3}
	}
	// How many transactions an uninterrupted rotation takes.
	count := &crashStore{Store: cloneStore(t, base), left: -1}
	if _, err := appliance.Rekey(context.Background(), cfg(count)); err != nil {
		t.Fatal(err)
	}
	total := count.updates
	if total < 6 {
		t.Fatalf("the rotation took %d transactions; want several chunks", total)
	}
	for crashAt := 0; crashAt < total; crashAt++ {
		for _, resume := range []bool{true, false} {
			name := fmt.Sprintf("after %d of %d, rollback", crashAt, total)
			if resume {
				name = fmt.Sprintf("after %d of %d, resume", crashAt, total)
			}
			t.Run(name, func(t *testing.T) {
				st := cloneStore(t, base)
				cs := &crashStore{Store: st, left: crashAt}
				if _, err := appliance.Rekey(context.Background(), cfg(cs)); !errors.Is(err, errCrash) {
					t.Fatalf("Rekey = %v, want the crash", err)
				}
				checkOneKey(t, st, old, next)
				status, err := appliance.ReadRekeyStatus(context.Background(), st)
				if err != nil {
					t.Fatal(err)
				}
				if crashAt > 0 {
					if status.State != appliance.RekeyForward {
						t.Fatalf("status = %+v, want a rotation in progress", status)
					}
					for _, key := range [][]byte{oldKey, nextKey} {
						svc, err := appliance.New(appliance.Config{Store: st, Sealer: sealerOf(t, key)})
						if err != nil {
							t.Fatal(err)
						}
						if err := svc.Init(context.Background()); !errors.Is(err, appliance.ErrRekeyInProgress) {
							t.Fatalf("Init mid-rotation = %v, want ErrRekeyInProgress", err)
						}
						if err := svc.CheckStore(context.Background()); !errors.Is(err, appliance.ErrRekeyInProgress) {
							t.Fatalf("CheckStore mid-rotation = %v, want ErrRekeyInProgress", err)
						}
					}
				}
				if resume {
					if _, err := appliance.Rekey(context.Background(), cfg(st)); err != nil {
						t.Fatalf("resume: %v", err)
					}
					verifyWorld(t, st, w, nextKey, oldKey)
					return
				}
				rb := cfg(st)
				if crashAt == 0 {
					if _, err := appliance.RollbackRekey(context.Background(), rb); !errors.Is(err, appliance.ErrNoRekey) {
						t.Fatalf("rollback with nothing started = %v, want ErrNoRekey", err)
					}
					verifyWorld(t, st, w, oldKey, nextKey)
					return
				}
				// Interrupt the rollback too, once after its first chunk.
				if _, err := appliance.RollbackRekey(context.Background(), appliance.RekeyConfig{Store: &crashStore{Store: st, left: 2},
					Old: old, New: next, Actor: cli, Now: fixtureNow, Chunk: 3}); err != nil && !errors.Is(err, errCrash) {
					t.Fatalf("interrupted rollback: %v", err)
				}
				checkOneKey(t, st, old, next)
				if _, err := appliance.RollbackRekey(context.Background(), rb); err != nil && !errors.Is(err, appliance.ErrNoRekey) {
					t.Fatalf("rollback: %v", err)
				}
				if s, err := appliance.ReadRekeyStatus(context.Background(), st); err != nil || s.State != "" {
					t.Fatalf("status after rollback = %+v, %v", s, err)
				}
				verifyWorld(t, st, w, oldKey, nextKey)
			})
		}
	}
}

func TestRekeyRefusesAndChangesNothing(t *testing.T) {
	base := memstore.New()
	t.Cleanup(func() { base.Close() })
	oldKey, nextKey, otherKey := newKey(t), newKey(t), newKey(t)
	populate(t, base, oldKey, 4)
	old, next, other := sealerOf(t, oldKey), sealerOf(t, nextKey), sealerOf(t, otherKey)
	// Stores in each state a refusal can meet.
	fresh := func(t *testing.T) appliance.Store { return cloneStore(t, base) }
	midway := func(t *testing.T) appliance.Store {
		st := cloneStore(t, base)
		_, err := appliance.Rekey(context.Background(), appliance.RekeyConfig{Store: &crashStore{Store: st, left: 2}, Old: old, New: next, Now: fixtureNow, Chunk: 2})
		if !errors.Is(err, errCrash) {
			t.Fatalf("setup: %v", err)
		}
		return st
	}
	rollingBack := func(t *testing.T) appliance.Store {
		st := midway(t)
		_, err := appliance.RollbackRekey(context.Background(), appliance.RekeyConfig{Store: &crashStore{Store: st, left: 1}, Old: old, New: next, Now: fixtureNow, Chunk: 2})
		if !errors.Is(err, errCrash) {
			t.Fatalf("setup: %v", err)
		}
		return st
	}
	done := func(t *testing.T) appliance.Store {
		st := cloneStore(t, base)
		if _, err := appliance.Rekey(context.Background(), appliance.RekeyConfig{Store: st, Old: old, New: next, Now: fixtureNow}); err != nil {
			t.Fatalf("setup: %v", err)
		}
		return st
	}
	tests := []struct {
		name     string
		store    func(*testing.T) appliance.Store
		old, new *seal.Sealer
		resume   bool
		rollback bool
		want     error
	}{
		{name: "same key", store: fresh, old: old, new: sealerOf(t, oldKey), want: appliance.ErrSameKey},
		{name: "old key is not the store's", store: fresh, old: other, new: next, want: seal.ErrWrongKey},
		{name: "resume with nothing started", store: fresh, old: old, new: next, resume: true, want: appliance.ErrNoRekey},
		{name: "rollback with nothing started", store: fresh, old: old, new: next, rollback: true, want: appliance.ErrNoRekey},
		{name: "resume with another new key", store: midway, old: old, new: other, want: appliance.ErrRekeyMismatch},
		{name: "resume with another old key", store: midway, old: other, new: next, want: appliance.ErrRekeyMismatch},
		{name: "resume with the keys swapped", store: midway, old: next, new: old, want: appliance.ErrRekeyMismatch},
		{name: "rollback with another new key", store: midway, old: old, new: other, rollback: true, want: appliance.ErrRekeyMismatch},
		{name: "resume while rolling back", store: rollingBack, old: old, new: next, want: appliance.ErrRollingBack},
		{name: "run again after it finished", store: done, old: old, new: next, want: appliance.ErrAlreadyRekeyed},
		{name: "rollback after it finished", store: done, old: old, new: next, rollback: true, want: appliance.ErrNoRekey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.store(t)
			before := snapshot(t, st)
			cfg := appliance.RekeyConfig{Store: st, Old: tc.old, New: tc.new, ResumeOnly: tc.resume, Actor: cli, Now: fixtureNow}
			run := appliance.Rekey
			if tc.rollback {
				run = appliance.RollbackRekey
			}
			if _, err := run(context.Background(), cfg); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if diff := cmp.Diff(before, snapshot(t, st)); diff != "" {
				t.Fatalf("a refused rotation changed the store (-before +after):\n%s", diff)
			}
		})
	}
}

// TestRekeySealsEverySealCallSite fails when the appliance seals a value
// with associated data that rekey.go's sealedFields does not list: a
// rotation would leave such a value under the old key.
func TestRekeySealsEverySealCallSite(t *testing.T) {
	known := map[string]bool{"seedAAD": true, "agentSecretAAD": true, "bindPasswordAAD": true, "ctkipKeyAAD": true, "codeAAD": true,
		"linkAAD": true, "fileAAD": true, "ctkipSessionAAD": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	sites := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || name == "rekey.go" {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Seal" && sel.Sel.Name != "SealNonce" || len(call.Args) < 2 {
				return true
			}
			sites++
			aad := call.Args[len(call.Args)-1]
			var id string
			switch a := aad.(type) {
			case *ast.Ident:
				id = a.Name
			case *ast.CallExpr:
				if f, ok := a.Fun.(*ast.Ident); ok {
					id = f.Name
				}
			}
			if !known[id] {
				t.Errorf("%s: a value sealed with associated data %s that the master key rotation does not know: add it to sealedFields in rekey.go",
					fset.Position(call.Pos()), id)
			}
			return true
		})
	}
	if sites < 5 {
		t.Fatalf("found %d sealing call sites; the scan is broken", sites)
	}
}

// TestRekeyFullChunksStayWithinTheStoreLimits rotates with the default chunk
// (99 secrets and the journal: the contract's 100 writes) on memstore, which
// enforces the limits as a real backend does.
func TestRekeyFullChunksStayWithinTheStoreLimits(t *testing.T) {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	oldKey, nextKey := newKey(t), newKey(t)
	w := populate(t, st, oldKey, 150)
	cs := &crashStore{Store: st, left: -1}
	got, err := appliance.Rekey(context.Background(), appliance.RekeyConfig{Store: cs, Old: sealerOf(t, oldKey), New: sealerOf(t, nextKey),
		Actor: cli, Now: fixtureNow})
	if err != nil {
		t.Fatal(err)
	}
	// 150 seeds, the CT-KIP key, the hash key, a RADIUS secret, a bind
	// password: the start, two full chunks, and the finish.
	if got.Resealed != 154 || cs.updates != 4 {
		t.Fatalf("%d re-sealed in %d transactions, want 154 in 4", got.Resealed, cs.updates)
	}
	verifyWorld(t, st, w, nextKey, oldKey)
}

// TestRekeyCheckStopsBeforeEachTransaction: Check runs once the journal is
// written and before every later transaction; the first refusal stops the
// rotation there (the journal in place, nothing re-sealed when it is the
// first call), and the same rotation then resumes to the end.
func TestRekeyCheckStopsBeforeEachTransaction(t *testing.T) {
	errNode := errors.New("a node appeared")
	for _, stopAt := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("refused at call %d", stopAt), func(t *testing.T) {
			st := memstore.New()
			t.Cleanup(func() { st.Close() })
			oldKey, nextKey := newKey(t), newKey(t)
			w := populate(t, st, oldKey, 20)
			calls := 0
			cfg := appliance.RekeyConfig{Store: st, Old: sealerOf(t, oldKey), New: sealerOf(t, nextKey), Actor: cli, Now: fixtureNow, Chunk: 4,
				Check: func() error {
					calls++
					if calls == stopAt {
						return errNode
					}
					return nil
				}}
			if _, err := appliance.Rekey(context.Background(), cfg); !errors.Is(err, errNode) {
				t.Fatalf("rekey = %v; want the Check's error", err)
			}
			s, err := appliance.ReadRekeyStatus(context.Background(), st)
			if err != nil {
				t.Fatal(err)
			}
			if s.State != appliance.RekeyForward || s.Resealed != (stopAt-1)*4 {
				t.Fatalf("after a refusal at call %d: %+v; want a rotation in progress with %d re-sealed", stopAt, s, (stopAt-1)*4)
			}
			cfg.Check = func() error { calls++; return nil }
			chunks := 0
			cfg.Progress = func(appliance.RekeyStatus) { chunks++ }
			calls = 0
			if got, err := appliance.Rekey(context.Background(), cfg); err != nil || got.Resealed != 24 {
				t.Fatalf("resumed: %+v %v", got, err)
			}
			// Once per re-seal transaction and once before the finish.
			if calls != chunks+1 || chunks == 0 {
				t.Errorf("Check called %d times on resume, over %d re-seal transactions; want one more than those", calls, chunks)
			}
			verifyWorld(t, st, w, nextKey, oldKey)
		})
	}
}
