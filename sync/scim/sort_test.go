package scim

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSortEntries pins the ordering rules of sortBy: numbers (and numeric
// text) numerically, false before true, text case-insensitively except for
// id and externalId, resources without a value last (first descending),
// ties in their original order, and the primary of a multi-valued
// attribute.
func TestSortEntries(t *testing.T) {
	type res struct {
		id   string
		view map[string]any
	}
	tests := []struct {
		name  string
		query string
		res   []res
		want  []string
	}{
		{name: "numbers numerically", query: "sortBy=n",
			res:  []res{{"a", map[string]any{"n": json.Number("10")}}, {"b", map[string]any{"n": 9.5}}, {"c", map[string]any{"n": "100"}}, {"d", map[string]any{"n": 2}}},
			want: []string{"d", "b", "a", "c"}},
		{name: "booleans false first", query: "sortBy=active",
			res:  []res{{"a", map[string]any{"active": true}}, {"b", map[string]any{"active": false}}, {"c", map[string]any{"active": true}}},
			want: []string{"b", "a", "c"}},
		{name: "text ignores case", query: "sortBy=userName",
			res:  []res{{"a", map[string]any{"userName": "bob"}}, {"b", map[string]any{"userName": "Alice"}}, {"c", map[string]any{"userName": "carol"}}},
			want: []string{"b", "a", "c"}},
		{name: "externalId is case-exact", query: "sortBy=externalId",
			res:  []res{{"a", map[string]any{"externalId": "b"}}, {"b", map[string]any{"externalId": "B"}}, {"c", map[string]any{"externalId": "a"}}},
			want: []string{"b", "c", "a"}},
		{name: "missing last, ties stable", query: "sortBy=title",
			res:  []res{{"a", map[string]any{}}, {"b", map[string]any{"title": "x"}}, {"c", map[string]any{"title": "X"}}, {"d", map[string]any{"title": nil}}},
			want: []string{"b", "c", "a", "d"}},
		{name: "descending: missing first", query: "sortBy=title&sortOrder=descending",
			res:  []res{{"a", map[string]any{}}, {"b", map[string]any{"title": "x"}}, {"c", map[string]any{"title": "y"}}},
			want: []string{"a", "c", "b"}},
		{name: "primary of a multi-valued attribute", query: "sortBy=emails",
			res: []res{
				{"a", map[string]any{"emails": []any{map[string]any{"value": "z@x"}, map[string]any{"value": "b@x", "primary": true}}}},
				{"b", map[string]any{"emails": []any{map[string]any{"value": "a@x"}}}},
			},
			want: []string{"b", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := sortOf(q)
			if err != nil || spec == nil {
				t.Fatalf("sortOf: %v %v", spec, err)
			}
			var entries []sortEntry
			for _, r := range tt.res {
				entries = append(entries, spec.entry(r.view, r.id, false))
			}
			spec.sortEntries(entries)
			var got []string
			for _, en := range entries {
				got = append(got, en.id)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
		})
	}
}
