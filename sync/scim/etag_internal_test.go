package scim

import (
	"encoding/json"
	"testing"
	"time"

	"tokend/appliance"
)

// TestUserVersionCanonical: the one-marshal ETag equals the round-trip
// digest (version) for what a user can hold, so no ETag a client holds
// changes, and a user just written and the same user read back (numbers
// as json.Number) get one ETag.
func TestUserVersionCanonical(t *testing.T) {
	base := appliance.SourceUser{User: appliance.User{ID: "0193a6c2-7d1e-7000-8000-000000000001", UserName: "ada@example.com",
		DisplayName: "Ada <Lovelace> & co", Email: "ada@example.com", ExternalID: "ext-1", Active: true,
		UpdatedAt: time.Date(2026, 12, 4, 21, 0, 0, 123456789, time.UTC)}}
	tests := []struct {
		name    string
		attrs   map[string]any
		removed time.Time
	}{
		{name: "no attributes"},
		{name: "empty map", attrs: map[string]any{}},
		{name: "removed", removed: time.Date(2026, 12, 4, 21, 1, 2, 987654321, time.UTC)},
		{name: "emails and name", attrs: map[string]any{
			"emails": []any{map[string]any{"type": "work", "primary": true, "value": "ada@example.com"}},
			"name":   map[string]any{"givenName": "Ada", "familyName": "Lovelace"}}},
		{name: "numbers as read back", attrs: map[string]any{"a": json.Number("1.0"), "b": json.Number("1e2"),
			"c": json.Number("12345678901234567890"), "d": json.Number("-0"), "e": json.Number("0.1")}},
		{name: "numbers as decoded or set", attrs: map[string]any{"a": 1.0, "b": 100, "c": int64(1) << 62, "d": 0.1}},
		{name: "odd strings", attrs: map[string]any{"x": "bad \xff utf-8", "y": "<script>&</script>", "z\xfe": "\u2028"}},
		{name: "nil members", attrs: map[string]any{"n": nil, "l": []any(nil), "m": map[string]any(nil), "e": []any{}}},
		{name: "a type the walk does not know", attrs: map[string]any{"tags": []string{"a", "b"}}},
		{name: "a number out of range", attrs: map[string]any{"big": json.Number("1e400")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			su := base
			su.Attributes, su.RemovedAt = tc.attrs, tc.removed
			var attrs map[string]any
			if len(su.Attributes) > 0 {
				attrs = su.Attributes
			}
			want := version(su.UpdatedAt, []any{su.ID, su.UserName, su.DisplayName, su.Email, su.ExternalID, su.Active,
				su.RemovedAt.UnixNano(), attrs})
			if got := userVersion(su); got != want {
				t.Errorf("userVersion = %s, round trip gives %s", got, want)
			}
		})
	}
	// Just written (float64) and read back (json.Number): one ETag.
	written, read := base, base
	written.Attributes = map[string]any{"n": 2.5, "k": []any{1.0}}
	read.Attributes = map[string]any{"n": json.Number("2.5"), "k": []any{json.Number("1")}}
	if a, b := userVersion(written), userVersion(read); a != b {
		t.Errorf("written %s, read back %s", a, b)
	}
}

// BenchmarkUserVersion: the ETag of a SCIM create's user.
func BenchmarkUserVersion(b *testing.B) {
	su := appliance.SourceUser{User: appliance.User{ID: "0193a6c2-7d1e-7000-8000-000000000001", UserName: "bench1@example.com",
		DisplayName: "Bench 1", Email: "bench1@example.com", ExternalID: "b1", Active: true, UpdatedAt: time.Now()},
		Attributes: map[string]any{"emails": []any{map[string]any{"type": "work", "primary": true, "value": "bench1@example.com"}}}}
	b.Run("one-marshal", func(b *testing.B) {
		for b.Loop() {
			_ = userVersion(su)
		}
	})
	b.Run("round-trip", func(b *testing.B) {
		for b.Loop() {
			_ = version(su.UpdatedAt, []any{su.ID, su.UserName, su.DisplayName, su.Email, su.ExternalID, su.Active,
				su.RemovedAt.UnixNano(), su.Attributes})
		}
	})
}
