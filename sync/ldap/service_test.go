package ldap

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/internal/slapdtest"
	"tokend/sync/mirror"
)

// TestSyncIntoTheAppliance runs the syncer against a real slapd and the
// real Service: users arrive, a user gone from the directory keeps its token while
// inactive, comes back intact, and the brake protects against a mass
// deletion.
func TestSyncIntoTheAppliance(t *testing.T) {
	srv := slapdtest.Start(t, slapdtest.Options{Users: 30})
	svc := appliancetest.Service(t, appliance.Config{})
	ctx := context.Background()
	src, _, err := svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "corp", Type: appliance.SourceTypeLDAP,
		LDAP: &appliance.LDAPSourceConfig{URL: srv.URL, BindDN: srv.ReaderDN, BindPassword: appliance.Secret(srv.ReaderPassword), BaseDN: srv.PeopleDN}})
	if err != nil {
		t.Fatal(err)
	}
	pw, err := svc.LDAPBindPassword(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ConfigFromSource(src, pw)
	cfg.Timeout = 10 * time.Second
	// employeeType=gone takes an entry out of scope as a deletion or a move
	// out of the subtree would, keeping its entryUUID for the way back.
	cfg.UserFilter = "(&(objectClass=inetOrgPerson)(!(employeeType=gone)))"
	syncer := NewSyncer(ServiceTarget{Dir: svc}, slog.New(slog.DiscardHandler), nil)
	run := func(opts RunOptions) (mirror.Summary, error) { return syncer.Run(ctx, src.ID, cfg, opts) }

	if sum, err := run(RunOptions{}); err != nil || sum.Added != 30 {
		t.Fatalf("first sync: %+v, %v", sum, err)
	}
	page, err := svc.ListUsers(ctx, appliance.UserQuery{Source: src.ID})
	if err != nil || page.Total != 30 {
		t.Fatalf("users of the source: %d, %v", page.Total, err)
	}
	u5, err := svc.FindUserByName(ctx, "user5")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader("serial\n777000000001\n")}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AssignTokens(ctx, u5.ID, []string{"777000000001"}); err != nil {
		t.Fatal(err)
	}

	srv.Replace(t, srv.UserDN(5), "employeeType", "gone")
	if sum, err := run(RunOptions{Full: true}); err != nil || sum.Deactivated != 1 {
		t.Fatalf("after delete: %+v, %v", sum, err)
	}
	v, _ := svc.GetUser(ctx, u5.ID)
	if v.Active || len(v.Tokens) != 1 {
		t.Fatalf("deleted user: active=%v tokens=%d, want inactive with its token", v.Active, len(v.Tokens))
	}
	srv.Replace(t, srv.UserDN(5), "employeeType", "staff")
	if sum, err := run(RunOptions{Full: true}); err != nil || sum.Reactivated != 1 {
		t.Fatalf("after reappearing: %+v, %v", sum, err)
	}
	v, _ = svc.GetUser(ctx, u5.ID)
	if !v.Active || len(v.Tokens) != 1 {
		t.Fatalf("reappeared user: active=%v tokens=%d", v.Active, len(v.Tokens))
	}

	for i := 10; i < 20; i++ {
		srv.Replace(t, srv.UserDN(i), "employeeType", "gone")
	}
	_, err = run(RunOptions{Full: true})
	var brake *mirror.BrakeError
	if !errors.As(err, &brake) {
		t.Fatalf("mass deletion: %v, want the brake", err)
	}
	if page, _ := svc.ListUsers(ctx, appliance.UserQuery{Source: src.ID}); page.Total != 30 {
		t.Fatalf("brake applied something: %d users", page.Total)
	}
	if sum, err := run(RunOptions{Full: true, Force: true}); err != nil || sum.Deactivated != 10 {
		t.Fatalf("forced: %+v, %v", sum, err)
	}
}
