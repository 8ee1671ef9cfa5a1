package scim_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The RFC 7643/7644 details real clients and conformance tools trip on,
// each replayed against the real router over a real listener.

const (
	patchPre  = `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":`
	userPre   = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],`
	groupPre  = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],`
	searchPre = `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],`
)

func resources(t *testing.T, body map[string]any) []map[string]any {
	t.Helper()
	list, _ := body["Resources"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, r := range list {
		m, ok := r.(map[string]any)
		if !ok {
			t.Fatalf("resource %v is not an object", r)
		}
		out = append(out, m)
	}
	return out
}

func ids(t *testing.T, body map[string]any) []string {
	t.Helper()
	out := []string{}
	for _, r := range resources(t, body) {
		out = append(out, r["id"].(string))
	}
	return out
}

var sortStrings = cmpopts.SortSlices(func(a, b string) bool { return a < b })

// TestExternalIDNotUnique: several users may carry one externalId; only
// userName is unique.
func TestExternalIDNotUnique(t *testing.T) {
	e := newEnv(t, false)
	var created []string
	for _, n := range []string{"ann", "ben", "cat"} {
		body := expect(t, 201)(e.do(t, "POST", "/Users", userPre+`"userName":"`+n+`@example.com","externalId":"same"}`))
		created = append(created, body["id"].(string))
	}
	for _, f := range []string{`externalId eq "same"`, `externalId eq "same" and active eq true`} {
		t.Run(f, func(t *testing.T) {
			body := expect(t, 200)(e.do(t, "GET", "/Users?filter="+url.QueryEscape(f), ""))
			if diff := cmp.Diff(created, ids(t, body), sortStrings); diff != "" || body["totalResults"] != float64(3) {
				t.Errorf("filter %s: total %v, ids (-want +got):\n%s", f, body["totalResults"], diff)
			}
		})
	}
	dup := expect(t, 409)(e.do(t, "POST", "/Users", userPre+`"userName":"ANN@example.com","externalId":"other"}`))
	if dup["scimType"] != "uniqueness" || dup["detail"] != "userName is already taken" {
		t.Errorf("duplicate userName: %v", dup)
	}
	// PUT and PATCH may set an externalId another user has.
	expect(t, 200)(e.do(t, "PATCH", "/Users/"+created[0], patchPre+`[{"op":"replace","path":"externalId","value":"x"}]}`))
	expect(t, 200)(e.do(t, "PUT", "/Users/"+created[1], userPre+`"userName":"ben@example.com","externalId":"x"}`))
	body := expect(t, 200)(e.do(t, "GET", "/Users?filter="+url.QueryEscape(`externalId eq "x"`), ""))
	if diff := cmp.Diff(created[:2], ids(t, body), sortStrings); diff != "" {
		t.Errorf("after moves (-want +got):\n%s", diff)
	}
}

func memberList(t *testing.T, body map[string]any) []map[string]any {
	t.Helper()
	list, _ := body["members"].([]any)
	out := []map[string]any{}
	for _, m := range list {
		out = append(out, m.(map[string]any))
	}
	return out
}

// TestGroupMembersInAnyOrder: a group write never fails because a member
// is not (yet) a user of the source, or is a group; every reference is
// kept, and a group shows the members that resolve, with their type.
func TestGroupMembersInAnyOrder(t *testing.T) {
	e := newEnv(t, false)
	ctx := t.Context()
	alice := expect(t, 201)(e.do(t, "POST", "/Users", userPre+`"userName":"alice@example.com"}`))["id"].(string)
	inner := expect(t, 201)(e.do(t, "POST", "/Groups", groupPre+`"displayName":"Inner"}`))["id"].(string)
	created := expect(t, 201)(e.do(t, "POST", "/Groups", groupPre+`"displayName":"Outer","members":[
		{"value":"`+alice+`","type":"User"},{"value":"`+inner+`","type":"Group"},{"value":"pushed-later"}]}`))
	outer := created["id"].(string)
	want := []map[string]any{{"value": alice, "type": "User"}, {"value": inner, "type": "Group"}}
	if diff := cmp.Diff(want, memberList(t, created)); diff != "" {
		t.Errorf("create answer members (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, memberList(t, expect(t, 200)(e.do(t, "GET", "/Groups/"+outer, "")))); diff != "" {
		t.Errorf("GET members (-want +got):\n%s", diff)
	}
	stored := func() []string {
		t.Helper()
		g, err := e.svc.GetGroup(ctx, e.source, outer)
		if err != nil {
			t.Fatal(err)
		}
		return g.Members
	}
	if diff := cmp.Diff([]string{alice, inner, "pushed-later"}, stored()); diff != "" {
		t.Errorf("stored references (-want +got):\n%s", diff)
	}

	steps := []struct {
		name, method, body string
		stored             []string
	}{
		{"PATCH rename keeps unresolved references", "PATCH", patchPre + `[{"op":"replace","path":"displayName","value":"Outer 2"}]}`,
			[]string{alice, inner, "pushed-later"}},
		{"PATCH add unknown and group members", "PATCH", patchPre + `[{"op":"add","path":"members","value":[{"value":"other-later"},{"value":"` + outer + `","type":"Group"}]}]}`,
			[]string{alice, inner, "pushed-later", "other-later", outer}},
		{"PATCH remove an unresolved member", "PATCH", patchPre + `[{"op":"remove","path":"members[value eq \"pushed-later\"]"}]}`,
			[]string{alice, inner, "other-later", outer}},
		{"PUT with unknown members", "PUT", groupPre + `"displayName":"Outer","members":[{"value":"x-later"},{"value":"` + alice + `"}]}`,
			[]string{"x-later", alice}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			expect(t, 200)(e.do(t, s.method, "/Groups/"+outer, s.body))
			if diff := cmp.Diff(s.stored, stored()); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
		})
	}
	// A member the source deleted disappears, and returns when revived.
	expect(t, 204)(e.do(t, "DELETE", "/Users/"+alice, ""))
	if got := memberList(t, expect(t, 200)(e.do(t, "GET", "/Groups/"+outer, ""))); len(got) != 0 {
		t.Errorf("deleted user still shown: %v", got)
	}
	expect(t, 201)(e.do(t, "POST", "/Users", userPre+`"userName":"alice@example.com"}`))
	list := expect(t, 200)(e.do(t, "GET", "/Groups?filter="+url.QueryEscape(`members[value eq "`+alice+`"]`), ""))
	if diff := cmp.Diff([]string{outer}, ids(t, list)); diff != "" {
		t.Errorf("filter by revived member (-want +got):\n%s", diff)
	}
	if got := memberList(t, resources(t, list)[0]); len(got) != 1 || got[0]["value"] != alice || got[0]["type"] != "User" {
		t.Errorf("revived member: %v", got)
	}

	for _, tc := range []struct{ name, method, path, body string }{
		{"POST", "POST", "/Groups", groupPre + `"displayName":"Bad","members":["` + alice + `"]}`},
		{"PUT", "PUT", "/Groups/" + outer, groupPre + `"displayName":"Bad","members":["` + alice + `"]}`},
		{"PATCH", "PATCH", "/Groups/" + outer, patchPre + `[{"op":"add","path":"members","value":["` + alice + `"]}]}`},
	} {
		t.Run("bare string member "+tc.name, func(t *testing.T) {
			body := expect(t, 400)(e.do(t, tc.method, tc.path, tc.body))
			if body["scimType"] != "invalidValue" || !strings.Contains(body["detail"].(string), "object") {
				t.Errorf("answer %v, want invalidValue saying members are objects", body)
			}
		})
	}
}

// TestPatchReplaceNoTarget: a replace whose path filter matches no value is
// 400 noTarget and changes nothing; add still creates the value.
func TestPatchReplaceNoTarget(t *testing.T) {
	e := newEnv(t, false)
	id := expect(t, 201)(e.do(t, "POST", "/Users", userPre+`"userName":"nora@example.com","emails":[{"type":"work","value":"nora@example.com"}]}`))["id"].(string)
	for _, tc := range []struct{ name, ops string }{
		{"sub-attribute", `[{"op":"replace","path":"emails[type eq \"home\"].value","value":"n@home.example"}]`},
		{"whole value", `[{"op":"Replace","path":"emails[type eq \"home\"]","value":{"value":"n@home.example"}}]`},
		{"after a good op", `[{"op":"replace","path":"displayName","value":"Nora"},{"op":"replace","path":"emails[value eq \"x@y\"].type","value":"home"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := expect(t, 400)(e.do(t, "PATCH", "/Users/"+id, patchPre+tc.ops+`}`))
			if body["scimType"] != "noTarget" {
				t.Errorf("answer %v, want noTarget", body)
			}
			got := expect(t, 200)(e.do(t, "GET", "/Users/"+id, ""))
			if emails, _ := got["emails"].([]any); len(emails) != 1 || got["displayName"] != nil {
				t.Errorf("user changed by a refused PATCH: %v", got)
			}
		})
	}
	got := expect(t, 200)(e.do(t, "PATCH", "/Users/"+id, patchPre+`[{"op":"add","path":"emails[type eq \"home\"].value","value":"n@home.example"}]}`))
	if emails, _ := got["emails"].([]any); len(emails) != 2 {
		t.Errorf("add with a filter that matches nothing: %v", got["emails"])
	}
}
