package appliance_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

// TestCheckConsistency: a store written only by the Service checks clean;
// each kind of damage a torn or partial write could leave (written straight
// into the store, as a crash between two writes would) is reported.
func TestCheckConsistency(t *testing.T) {
	build := func(t *testing.T) (*fixture, string) {
		t.Helper()
		f := newFixture(t, memstore.New())
		f.importCSV(t, serials(6, 100000000000))
		f.profile(t)
		alice := f.user(t, "alice")
		f.user(t, "bob")
		if _, err := f.svc.AssignTokens(f.ctx, alice.ID, []string{"100000000000", "100000000001", "100000000002"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Distribute(f.ctx, "100000000000", "android-ctkip"); err != nil {
			t.Fatal(err)
		}
		return f, alice.ID
	}
	put := func(key, val string) func(appliance.Tx) error {
		return func(tx appliance.Tx) error { return tx.Put([]byte(key), []byte(val)) }
	}
	del := func(key string) func(appliance.Tx) error {
		return func(tx appliance.Tx) error { return tx.Delete([]byte(key)) }
	}
	// edit rewrites one JSON record field by string replacement.
	edit := func(key, from, to string) func(appliance.Tx) error {
		return func(tx appliance.Tx) error {
			v, err := tx.Get([]byte(key))
			if err != nil {
				return err
			}
			if !strings.Contains(string(v), from) {
				return errors.New("edit: " + from + " not in " + key)
			}
			return tx.Put([]byte(key), []byte(strings.Replace(string(v), from, to, 1)))
		}
	}
	tests := []struct {
		name   string
		damage func(alice string) func(appliance.Tx) error
		want   string // in a problem; "" means clean
	}{
		{name: "clean", want: ""},
		{name: "token state index missing", damage: func(string) func(appliance.Tx) error { return del("ti/s/100000000003") },
			want: "token 100000000003: no state index entry"},
		{name: "stale state index", damage: func(string) func(appliance.Tx) error {
			return edit("ti/s/100000000001", "enabled", "disabled")
		}, want: "token 100000000001: state index entry"},
		{name: "orphan state index", damage: func(string) func(appliance.Tx) error {
			return put("ti/s/999999999999", "software\x00disabled\x00\x00local\x000")
		}, want: "state index entry of token 999999999999, which does not exist"},
		{name: "tokens-by-user entry missing", damage: func(a string) func(appliance.Tx) error {
			return del("ti/u/" + a + "/100000000002")
		}, want: "no tokens-by-user entry"},
		{name: "fourth token", damage: func(a string) func(appliance.Tx) error {
			return func(tx appliance.Tx) error {
				// As an unguarded assignment would write it.
				if err := edit("t/100000000003", `"state":"disabled"`, `"state":"enabled","user_id":"`+a+`"`)(tx); err != nil {
					return err
				}
				if err := put("ti/s/100000000003", "software\x00enabled\x00"+a+"\x00local\x000")(tx); err != nil {
					return err
				}
				return put("ti/u/"+a+"/100000000003", "")(tx)
			}
		}, want: "holds 4 tokens that count toward the limit of 3"},
		{name: "token counter off", damage: func(string) func(appliance.Tx) error {
			return edit("meta/counters/local/tokens", `":3`, `":4`)
		}, want: "token counter"},
		{name: "user counter off", damage: func(string) func(appliance.Tx) error {
			return edit("meta/counters/local/users", `":2`, `":1`)
		}, want: "user counter"},
		{name: "login index missing", damage: func(a string) func(appliance.Tx) error { return del("ui/n/bob") },
			want: "no login index entry"},
		{name: "orphan login index", damage: func(a string) func(appliance.Tx) error {
			return put("ui/n/carol", "0190c1f0-0000-7000-8000-000000000000\x00internal\x001")
		}, want: `names user "0190c1f0-0000-7000-8000-000000000000", which does not exist`},
		{name: "assigned to a missing user", damage: func(a string) func(appliance.Tx) error { return del("u/" + a) },
			want: "which does not exist"},
		{name: "code record missing", damage: func(string) func(appliance.Tx) error {
			return func(tx appliance.Tx) error {
				kvs, err := tx.Scan([]byte("ac/"), nil, 0)
				if err != nil || len(kvs) != 1 {
					return errors.New("want one code")
				}
				return tx.Delete(kvs[0].Key)
			}
		}, want: "its outstanding activation code has no record"},
		{name: "token names a missing job", damage: func(string) func(appliance.Tx) error {
			return func(tx appliance.Tx) error {
				kvs, err := tx.Scan([]byte("j/"), nil, 0)
				if err != nil || len(kvs) != 1 {
					return errors.New("want one job")
				}
				return tx.Delete(kvs[0].Key)
			}
		}, want: "names import job"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, alice := build(t)
			if tc.damage != nil {
				if err := f.store.Update(context.Background(), tc.damage(alice)); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := f.svc.CheckConsistency(context.Background())
			if tc.want == "" {
				if err != nil || rep.Tokens != 6 || rep.Users != 2 || rep.Jobs != 1 || rep.Codes != 1 {
					t.Fatalf("clean store: %+v, %v", rep, err)
				}
				return
			}
			if !errors.Is(err, appliance.ErrInconsistent) {
				t.Fatalf("err = %v, want ErrInconsistent (%+v)", err, rep)
			}
			found := false
			for _, p := range rep.Problems {
				found = found || strings.Contains(p, tc.want)
			}
			if !found || rep.ProblemsTotal != len(rep.Problems) {
				t.Fatalf("problems %q do not mention %q", rep.Problems, tc.want)
			}
		})
	}
}
