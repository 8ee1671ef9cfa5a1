package mirror_test

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/sync/mirror"
)

var (
	now     = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	earlier = now.Add(-24 * time.Hour)
	longAgo = now.Add(-31 * 24 * time.Hour)
)

func active(id string) mirror.Local {
	return mirror.Local{UserID: "u-" + id, ExternalID: id, UserName: id, DisplayName: "User " + id, Email: id + "@x", Active: true}
}

func entry(id string) mirror.Entry {
	return mirror.Entry{ExternalID: id, UserName: id, DisplayName: "User " + id, Email: id + "@x"}
}

func with(l mirror.Local, f func(*mirror.Local)) mirror.Local { f(&l); return l }

func missingSince(id string, t time.Time) mirror.Local {
	return with(active(id), func(l *mirror.Local) { l.Active, l.DeactivatedAt = false, t })
}

func disabledSince(id string, t time.Time) mirror.Local {
	return with(active(id), func(l *mirror.Local) { l.Active, l.Disabled, l.DeactivatedAt = false, true, t })
}

func disabled(e mirror.Entry) mirror.Entry { e.Disabled = true; return e }

func actives(n int) []mirror.Local {
	out := make([]mirror.Local, n)
	for i := range out {
		out[i] = active(fmt.Sprint(i))
	}
	return out
}

func entries(from, to int) []mirror.Entry {
	var out []mirror.Entry
	for i := from; i < to; i++ {
		out = append(out, entry(fmt.Sprint(i)))
	}
	return out
}

func TestFull(t *testing.T) {
	tests := []struct {
		name    string
		local   []mirror.Local
		remote  []mirror.Entry
		opts    mirror.Options
		want    mirror.Plan
		wantErr error
	}{
		{
			name:   "initial sync adds everyone",
			remote: []mirror.Entry{entry("a"), entry("b")},
			want: mirror.Plan{Add: []mirror.Local{
				{ExternalID: "a", UserName: "a", DisplayName: "User a", Email: "a@x", Active: true},
				{ExternalID: "b", UserName: "b", DisplayName: "User b", Email: "b@x", Active: true},
			}},
		},
		{
			name:   "new directory-disabled user starts inactive",
			remote: []mirror.Entry{disabled(entry("a"))},
			want: mirror.Plan{Add: []mirror.Local{
				{ExternalID: "a", UserName: "a", DisplayName: "User a", Email: "a@x", Disabled: true, DeactivatedAt: now},
			}},
		},
		{
			name:   "nothing changed",
			local:  []mirror.Local{active("a"), active("b")},
			remote: []mirror.Entry{entry("b"), entry("a")},
			want:   mirror.Plan{Unchanged: 2, Active: 2},
		},
		{
			name:   "modified mail and display name",
			local:  []mirror.Local{active("a")},
			remote: []mirror.Entry{{ExternalID: "a", UserName: "a", DisplayName: "New", Email: "new@x"}},
			want: mirror.Plan{Active: 1, Update: []mirror.Local{
				with(active("a"), func(l *mirror.Local) { l.DisplayName, l.Email = "New", "new@x" }),
			}},
		},
		{
			name:   "rename keeps the user (same external id, new login)",
			local:  []mirror.Local{active("a")},
			remote: []mirror.Entry{{ExternalID: "a", UserName: "renamed", DisplayName: "User a", Email: "a@x"}},
			want: mirror.Plan{Active: 1, Update: []mirror.Local{
				with(active("a"), func(l *mirror.Local) { l.UserName = "renamed" }),
			}},
		},
		{
			name:   "missing user is deactivated, not deleted",
			local:  actives(10),
			remote: entries(1, 10),
			want: mirror.Plan{Active: 10, Unchanged: 9, Deactivate: []mirror.Local{
				with(active("0"), func(l *mirror.Local) { l.Active, l.DeactivatedAt = false, now }),
			}},
		},
		{
			name:   "missing user within grace stays",
			local:  []mirror.Local{missingSince("a", earlier)},
			remote: nil,
			want:   mirror.Plan{Unchanged: 1},
		},
		{
			name:  "missing user past grace is purged",
			local: []mirror.Local{missingSince("a", longAgo)},
			want:  mirror.Plan{Purge: []mirror.Local{missingSince("a", longAgo)}},
		},
		{
			name:  "grace boundary: exactly the grace period purges",
			local: []mirror.Local{missingSince("a", now.Add(-mirror.DefaultGracePeriod))},
			want:  mirror.Plan{Purge: []mirror.Local{missingSince("a", now.Add(-mirror.DefaultGracePeriod))}},
		},
		{
			name:  "custom grace period",
			local: []mirror.Local{missingSince("a", earlier)},
			opts:  mirror.Options{GracePeriod: time.Hour},
			want:  mirror.Plan{Purge: []mirror.Local{missingSince("a", earlier)}},
		},
		{
			name:   "reappearing user is reactivated intact",
			local:  []mirror.Local{missingSince("a", longAgo)},
			remote: []mirror.Entry{entry("a")},
			want:   mirror.Plan{Reactivate: []mirror.Local{active("a")}},
		},
		{
			name:   "reappearing user with a new login",
			local:  []mirror.Local{missingSince("a", earlier)},
			remote: []mirror.Entry{{ExternalID: "a", UserName: "new", DisplayName: "User a", Email: "a@x"}},
			want: mirror.Plan{Reactivate: []mirror.Local{
				with(active("a"), func(l *mirror.Local) { l.UserName = "new" }),
			}},
		},
		{
			name:   "directory-disabled user is deactivated",
			local:  actives(10),
			remote: append(entries(1, 10), disabled(entry("0"))),
			want: mirror.Plan{Active: 10, Unchanged: 9, Deactivate: []mirror.Local{
				with(active("0"), func(l *mirror.Local) { l.Active, l.Disabled, l.DeactivatedAt = false, true, now }),
			}},
		},
		{
			name:   "still disabled is unchanged and never purged",
			local:  []mirror.Local{disabledSince("a", longAgo)},
			remote: []mirror.Entry{disabled(entry("a"))},
			want:   mirror.Plan{Unchanged: 1},
		},
		{
			name:   "enabled again is reactivated",
			local:  []mirror.Local{disabledSince("a", longAgo)},
			remote: []mirror.Entry{entry("a")},
			want:   mirror.Plan{Reactivate: []mirror.Local{active("a")}},
		},
		{
			name:  "disabled then deleted: grace starts now, no immediate purge",
			local: []mirror.Local{disabledSince("a", longAgo)},
			want:  mirror.Plan{Update: []mirror.Local{missingSince("a", now)}},
		},
		{
			name:   "missing user reappears disabled: stays inactive, now as disabled",
			local:  []mirror.Local{missingSince("a", earlier)},
			remote: []mirror.Entry{disabled(entry("a"))},
			want:   mirror.Plan{Update: []mirror.Local{disabledSince("a", earlier)}},
		},
		{
			name:  "inactive without a time: grace starts now",
			local: []mirror.Local{missingSince("a", time.Time{})},
			want:  mirror.Plan{Update: []mirror.Local{missingSince("a", now)}},
		},
		{
			name:   "brake: exactly 10% is allowed",
			local:  actives(10),
			remote: entries(1, 10),
			want: mirror.Plan{Active: 10, Unchanged: 9, Deactivate: []mirror.Local{
				with(active("0"), func(l *mirror.Local) { l.Active, l.DeactivatedAt = false, now }),
			}},
		},
		{
			name:    "brake: 20% is refused",
			local:   actives(10),
			remote:  entries(2, 10),
			wantErr: &mirror.BrakeError{WouldDeactivate: 2, Active: 10, Threshold: 0.10},
		},
		{
			name:    "brake: empty directory answer is refused",
			local:   actives(1000),
			wantErr: &mirror.BrakeError{WouldDeactivate: 1000, Active: 1000, Threshold: 0.10},
		},
		{
			name:    "brake: disabling counts too",
			local:   actives(4),
			remote:  []mirror.Entry{entry("0"), entry("1"), disabled(entry("2")), disabled(entry("3"))},
			wantErr: &mirror.BrakeError{WouldDeactivate: 2, Active: 4, Threshold: 0.10},
		},
		{
			name:    "brake: custom threshold",
			local:   actives(10),
			remote:  entries(3, 10),
			opts:    mirror.Options{BrakeThreshold: 0.25},
			wantErr: &mirror.BrakeError{WouldDeactivate: 3, Active: 10, Threshold: 0.25},
		},
		{
			name:  "brake: threshold 1 never refuses",
			local: actives(2),
			opts:  mirror.Options{BrakeThreshold: 1},
			want:  mirror.Plan{Active: 2, Deactivate: []mirror.Local{missingSince("0", now), missingSince("1", now)}},
		},
		{
			name:  "brake: forced",
			local: actives(2),
			opts:  mirror.Options{Force: true},
			want:  mirror.Plan{Active: 2, Deactivate: []mirror.Local{missingSince("0", now), missingSince("1", now)}},
		},
		{
			name:   "brake: inactive users do not count",
			local:  []mirror.Local{active("a"), missingSince("b", earlier), disabledSince("c", earlier)},
			remote: []mirror.Entry{entry("a")},
			want:   mirror.Plan{Active: 1, Unchanged: 2, Update: []mirror.Local{missingSince("c", now)}},
		},
		{
			name:    "duplicate remote id",
			remote:  []mirror.Entry{entry("a"), entry("a")},
			wantErr: mirror.ErrInvalidInput,
		},
		{
			name:    "duplicate remote id of a known user",
			local:   []mirror.Local{active("a")},
			remote:  []mirror.Entry{entry("a"), entry("a")},
			wantErr: mirror.ErrInvalidInput,
		},
		{
			name:    "empty remote id",
			remote:  []mirror.Entry{{UserName: "x"}},
			wantErr: mirror.ErrInvalidInput,
		},
		{
			name:    "duplicate local id",
			local:   []mirror.Local{active("a"), active("a")},
			wantErr: mirror.ErrInvalidInput,
		},
		{
			name:    "empty local id",
			local:   []mirror.Local{{UserID: "x", Active: true}},
			wantErr: mirror.ErrInvalidInput,
		},
		{
			name:    "negative grace",
			opts:    mirror.Options{GracePeriod: -time.Hour},
			wantErr: mirror.ErrInvalidInput,
		},
		{
			name:    "NaN threshold",
			opts:    mirror.Options{BrakeThreshold: math.NaN()},
			wantErr: mirror.ErrInvalidInput,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Now = now
			got, err := mirror.Full(tt.local, tt.remote, opts)
			checkErr(t, err, tt.wantErr)
			if tt.wantErr != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			s := got.Summary()
			if s.Added+s.Updated+s.Deactivated+s.Reactivated+s.Unchanged+s.Purged != len(tt.local)+len(got.Add) {
				t.Errorf("summary %+v does not account for %d local users", s, len(tt.local))
			}
		})
	}
}

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	var wantBrake *mirror.BrakeError
	switch {
	case want == nil:
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
	case errors.As(want, &wantBrake):
		var be *mirror.BrakeError
		if !errors.As(err, &be) {
			t.Fatalf("error %v, want a BrakeError", err)
		}
		if diff := cmp.Diff(wantBrake, be); diff != "" {
			t.Errorf("brake error (-want +got):\n%s", diff)
		}
	default:
		if !errors.Is(err, want) {
			t.Fatalf("error %v, want %v", err, want)
		}
	}
}

func TestIncremental(t *testing.T) {
	tests := []struct {
		name    string
		local   []mirror.Local
		changes mirror.Changes
		opts    mirror.Options
		want    mirror.Plan
		wantErr error
	}{
		{
			name:  "no changes",
			local: actives(3),
			want:  mirror.Plan{Active: 3, Unchanged: 3},
		},
		{
			name:    "add, modify, delete",
			local:   actives(10),
			changes: mirror.Changes{Upserts: []mirror.Entry{entry("new"), {ExternalID: "1", UserName: "one"}}, Deletes: []string{"2"}},
			want: mirror.Plan{Active: 10, Unchanged: 8,
				Add:        []mirror.Local{{ExternalID: "new", UserName: "new", DisplayName: "User new", Email: "new@x", Active: true}},
				Update:     []mirror.Local{{UserID: "u-1", ExternalID: "1", UserName: "one", Active: true}},
				Deactivate: []mirror.Local{missingSince("2", now)},
			},
		},
		{
			name:    "delete of an unknown id is ignored",
			local:   actives(1),
			changes: mirror.Changes{Deletes: []string{"group-uuid"}},
			want:    mirror.Plan{Active: 1, Unchanged: 1},
		},
		{
			name:    "deleted again: already missing, no purge in incremental",
			local:   []mirror.Local{missingSince("a", longAgo)},
			changes: mirror.Changes{Deletes: []string{"a"}},
			want:    mirror.Plan{Unchanged: 1},
		},
		{
			name:    "unchanged upsert",
			local:   actives(2),
			changes: mirror.Changes{Upserts: []mirror.Entry{entry("1")}},
			want:    mirror.Plan{Active: 2, Unchanged: 2},
		},
		{
			name:    "reappear via add",
			local:   []mirror.Local{missingSince("a", earlier)},
			changes: mirror.Changes{Upserts: []mirror.Entry{entry("a")}},
			want:    mirror.Plan{Reactivate: []mirror.Local{active("a")}},
		},
		{
			name:    "brake applies to incremental deletes",
			local:   actives(10),
			changes: mirror.Changes{Deletes: []string{"1", "2"}},
			wantErr: &mirror.BrakeError{WouldDeactivate: 2, Active: 10, Threshold: 0.10},
		},
		{
			name:    "id both changed and deleted",
			local:   actives(1),
			changes: mirror.Changes{Upserts: []mirror.Entry{entry("0")}, Deletes: []string{"0"}},
			wantErr: mirror.ErrInvalidInput,
		},
		{
			name:    "id changed twice",
			changes: mirror.Changes{Upserts: []mirror.Entry{entry("0"), entry("0")}},
			wantErr: mirror.ErrInvalidInput,
		},
		{
			name:    "empty delete id",
			changes: mirror.Changes{Deletes: []string{""}},
			wantErr: mirror.ErrInvalidInput,
		},
		{
			name:    "empty upsert id",
			changes: mirror.Changes{Upserts: []mirror.Entry{{}}},
			wantErr: mirror.ErrInvalidInput,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Now = now
			got, err := mirror.Incremental(tt.local, tt.changes, opts)
			checkErr(t, err, tt.wantErr)
			if tt.wantErr != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestZeroNowRejected(t *testing.T) {
	if _, err := mirror.Full(nil, nil, mirror.Options{}); !errors.Is(err, mirror.ErrInvalidInput) {
		t.Fatalf("got %v", err)
	}
}

func TestBrakeErrorMessage(t *testing.T) {
	err := &mirror.BrakeError{WouldDeactivate: 20, Active: 100, Threshold: 0.1}
	want := "mirror: refusing to deactivate 20 of 100 active users (20.0% > brake threshold 10.0%); check the directory, or force the run"
	if err.Error() != want {
		t.Fatalf("got %q", err.Error())
	}
	if (&mirror.BrakeError{}).Error() == "" {
		t.Fatal("empty message")
	}
}

// FuzzPlan checks that odd inputs (empty ids, duplicates, odd times,
// thresholds) give an error or a consistent plan, never a panic.
func FuzzPlan(f *testing.F) {
	f.Add([]byte("a\x00b\x01c"), int64(0), 0.1, false)
	f.Add([]byte{}, int64(-1), -1.0, true)
	f.Fuzz(func(t *testing.T, data []byte, graceH int64, threshold float64, incremental bool) {
		var local []mirror.Local
		var remote []mirror.Entry
		for i, b := range data {
			id := string(rune('a' + b%8))
			if b%5 == 0 {
				id = ""
			}
			switch (b >> 3) % 4 {
			case 0:
				local = append(local, mirror.Local{UserID: fmt.Sprint(i), ExternalID: id, Active: b%2 == 0, Disabled: b%3 == 0,
					DeactivatedAt: now.Add(-time.Duration(b) * 24 * time.Hour)})
			default:
				remote = append(remote, mirror.Entry{ExternalID: id, UserName: fmt.Sprint(b), Disabled: b%7 == 0})
			}
		}
		opts := mirror.Options{Now: now, GracePeriod: time.Duration(graceH) * time.Hour, BrakeThreshold: threshold}
		var p mirror.Plan
		var err error
		if incremental {
			var ch mirror.Changes
			for i, e := range remote {
				if i%2 == 0 {
					ch.Upserts = append(ch.Upserts, e)
				} else {
					ch.Deletes = append(ch.Deletes, e.ExternalID)
				}
			}
			p, err = mirror.Incremental(local, ch, opts)
		} else {
			p, err = mirror.Full(local, remote, opts)
		}
		var be *mirror.BrakeError
		if err != nil && !errors.As(err, &be) {
			return
		}
		if p.Writes()-len(p.Add)+p.Unchanged != len(local) {
			t.Fatalf("plan %+v does not account for %d local users", p.Summary(), len(local))
		}
	})
}
