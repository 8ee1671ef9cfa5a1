package scim

import (
	"encoding/json"
	"testing"

	"github.com/elimity-com/scim/schema"
	"github.com/google/go-cmp/cmp"
)

func userSchema() *schemaInfo {
	return &schemaInfo{core: withExternalID(schema.CoreUserSchema()), exts: []schema.Schema{schema.ExtensionEnterpriseUser()}}
}

func groupSchema() *schemaInfo { return &schemaInfo{core: withExternalID(schema.CoreGroupSchema())} }

func obj(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestApplyPatch(t *testing.T) {
	const pre = `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":`
	for _, tc := range []struct {
		name, start, ops, want string
		group                  bool
		errType                string
	}{
		{name: "Entra replace filtered email", start: `{"emails":[{"type":"work","value":"a@x"},{"type":"home","value":"h@x"}]}`,
			ops: `[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"b@x"}]`, want: `{"emails":[{"type":"work","value":"b@x"},{"type":"home","value":"h@x"}]}`},
		{name: "Entra add filtered email creates entry", start: `{}`,
			ops: `[{"op":"Add","path":"emails[type eq \"work\"].value","value":"n@x"}]`, want: `{"emails":[{"type":"work","value":"n@x"}]}`},
		{name: "sub-attribute of complex", start: `{"name":{"givenName":"A"}}`,
			ops: `[{"op":"Replace","path":"name.familyName","value":"B"}]`, want: `{"name":{"givenName":"A","familyName":"B"}}`},
		{name: "path-less with attribute-path keys", start: `{"name":{"givenName":"A"}}`,
			ops:  `[{"op":"Add","value":{"name.givenName":"C","emails[type eq \"work\"].value":"c@x","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"D"}}]`,
			want: `{"name":{"givenName":"C"},"emails":[{"type":"work","value":"c@x"}],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"D"}}`},
		{name: "path-less extension object", start: `{}`,
			ops:  `[{"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7"}}}]`,
			want: `{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7"}}`},
		{name: "Okta path-less active with id", start: `{"active":true,"userName":"u"}`,
			ops: `[{"op":"replace","value":{"id":"x","active":false}}]`, want: `{"active":false,"userName":"u"}`},
		{name: "case-insensitive names", start: `{"displayName":"a"}`,
			ops: `[{"op":"replace","path":"DisplayName","value":"b"}]`, want: `{"displayName":"b"}`},
		{name: "remove attribute", start: `{"displayName":"a","title":"t"}`,
			ops: `[{"op":"remove","path":"title"}]`, want: `{"displayName":"a"}`},
		{name: "remove without path", start: `{}`, ops: `[{"op":"remove"}]`, errType: "noTarget"},
		{name: "unknown attribute", start: `{}`, ops: `[{"op":"add","path":"nope","value":1}]`, errType: "invalidPath"},
		{name: "unknown op", start: `{}`, ops: `[{"op":"move","path":"title","value":1}]`, errType: "invalidValue"},
		{name: "Entra remove members by value list keeps others", group: true,
			start: `{"displayName":"g","members":[{"value":"1"},{"value":"2"},{"value":"3"}]}`,
			ops:   `[{"op":"Remove","path":"members","value":[{"value":"2"}]}]`, want: `{"displayName":"g","members":[{"value":"1"},{"value":"3"}]}`},
		{name: "remove members[value eq]", group: true,
			start: `{"displayName":"g","members":[{"value":"1"},{"value":"2"}]}`,
			ops:   `[{"op":"remove","path":"members[value eq \"1\"]"}]`, want: `{"displayName":"g","members":[{"value":"2"}]}`},
		{name: "remove members without value empties", group: true,
			start: `{"displayName":"g","members":[{"value":"1"}]}`,
			ops:   `[{"op":"remove","path":"members"}]`, want: `{"displayName":"g"}`},
		{name: "add members dedupes by value", group: true,
			start: `{"displayName":"g","members":[{"value":"1"}]}`,
			ops:   `[{"op":"add","path":"members","value":[{"value":"1","display":"x"},{"value":"2"}]}]`, want: `{"displayName":"g","members":[{"value":"1"},{"value":"2"}]}`},
		{name: "replace members", group: true,
			start: `{"displayName":"g","members":[{"value":"1"}]}`,
			ops:   `[{"op":"replace","path":"members","value":[{"value":"3"}]}]`, want: `{"displayName":"g","members":[{"value":"3"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := DecodePatch([]byte(pre + tc.ops + `}`))
			if err != nil {
				t.Fatal(err)
			}
			si := userSchema()
			if tc.group {
				si = groupSchema()
			}
			res := obj(t, tc.start)
			err = si.ApplyPatch(res, ops)
			if tc.errType != "" {
				pe, ok := err.(*PatchError)
				if !ok || pe.ScimType != tc.errType {
					t.Fatalf("error %v, want scimType %s", err, tc.errType)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Normalise json.Number vs float64 by a round trip.
			b, _ := json.Marshal(res)
			if diff := cmp.Diff(obj(t, tc.want), obj(t, string(b))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	res := map[string]any{
		"id": "ABC", "userName": "OMalley", "active": true, "displayName": "Pat O'Malley", "externalId": "Ext-1",
		"emails": []any{map[string]any{"type": "work", "value": "pat@corp.example", "primary": true}, map[string]any{"type": "home", "value": "p@home.example"}},
		"meta":   map[string]any{"lastModified": "2026-01-02T03:04:05Z"},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"employeeNumber": "42"},
	}
	for _, tc := range []struct {
		name, filter string
		want         bool
	}{
		{"userName eq case-insensitive", `userName eq "omalley"`, true},
		{"id eq is case-exact", `id eq "abc"`, false},
		{"externalId eq exact", `externalId eq "Ext-1"`, true},
		{"externalId case-exact", `externalId eq "ext-1"`, false},
		{"co", `displayName co "o'mal"`, true},
		{"sw", `userName sw "OM"`, true},
		{"ew", `userName ew "ley"`, true},
		{"pr", `displayName pr`, true},
		{"pr missing", `title pr`, false},
		{"active eq true", `active eq true`, true},
		{"active eq false", `active eq false`, false},
		{"emails.value co", `emails.value co "home.example"`, true},
		{"emails co without sub", `emails co "corp"`, true},
		{"emails[type eq work]", `emails[type eq "work" and value co "corp"]`, true},
		{"emails[type eq work].value rewrite", `emails[type eq "work"].value eq "PAT@corp.example"`, true},
		{"emails[type eq home].value rewrite miss", `emails[type eq "home"].value eq "pat@corp.example"`, false},
		{"and", `active eq true and userName eq "omalley"`, true},
		{"or", `userName eq "x" or displayName sw "pat"`, true},
		{"not", `not (userName eq "omalley")`, false},
		{"ne", `userName ne "someone"`, true},
		{"gt date", `meta.lastModified gt "2025-12-31T00:00:00Z"`, true},
		{"lt date", `meta.lastModified lt "2025-12-31T00:00:00Z"`, false},
		{"extension attribute", `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseFilter(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := Match(e, res); got != tc.want {
				t.Errorf("Match(%s) = %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
}

// FuzzSCIMJSON feeds PATCH bodies and filters through the applier and the
// evaluator: whatever arrives, nothing may panic.
func FuzzSCIMJSON(f *testing.F) {
	f.Add(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"x"}]}`, `emails[type eq "work"].value eq "x"`)
	f.Add(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","value":{"name.givenName":"A","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m"}}}}]}`, `emails co "x"`)
	f.Add(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"members","value":[{"value":"1"},"x",3]}]}`, `members[value eq "1"] or not (active eq true)`)
	f.Add(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails","value":[1,{"value":null}]},{"op":"add","path":"name","value":"str"}]}`, `meta.lastModified gt 3`)
	f.Fuzz(func(t *testing.T, body, flt string) {
		res := map[string]any{"userName": "u", "emails": []any{map[string]any{"type": "work", "value": "a@b"}, "junk"}, "name": "notamap",
			"members": []any{map[string]any{"value": "1"}, 7}}
		if ops, err := DecodePatch([]byte(body)); err == nil {
			_ = userSchema().ApplyPatch(res, ops)
			_ = groupSchema().ApplyPatch(deepCopyMap(res), ops)
		}
		if e, err := ParseFilter(flt); err == nil {
			Match(e, res)
		}
		fixManager([]byte(body))
	})
}
