package scim_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
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
	// The answer names what was sent instead of an object.
	for _, tc := range []struct{ name, members, kind string }{
		{"number", `[7]`, "number"}, {"null", `[null]`, "null"}, {"string", `"` + alice + `"`, "string"},
	} {
		t.Run("bare "+tc.name+" member", func(t *testing.T) {
			body := expect(t, 400)(e.do(t, "POST", "/Groups", groupPre+`"displayName":"Bad","members":`+tc.members+`}`))
			if detail, _ := body["detail"].(string); body["scimType"] != "invalidValue" || !strings.HasSuffix(detail, "not a bare "+tc.kind) {
				t.Errorf("answer %v, want invalidValue ending %q", body, "not a bare "+tc.kind)
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

func primaryValues(t *testing.T, body map[string]any, attr string) (values, primaries []string) {
	t.Helper()
	list, _ := body[attr].([]any)
	for _, el := range list {
		m := el.(map[string]any)
		v, _ := m["value"].(string)
		values = append(values, v)
		if p, _ := m["primary"].(bool); p {
			primaries = append(primaries, v)
		}
	}
	return values, primaries
}

// TestMultiValuedPrimary: one primary per attribute; a new primary demotes
// the old one; two primaries in one write are 400 invalidValue; duplicate
// (type, value) pairs are stored once.
func TestMultiValuedPrimary(t *testing.T) {
	e := newEnv(t, false)
	for _, tc := range []struct{ name, method, path, body string }{
		{"POST two primary emails", "POST", "/Users", userPre + `"userName":"p1@example.com","emails":[{"value":"a@x.example","primary":true},{"value":"b@x.example","primary":true}]}`},
		{"POST two primary phones", "POST", "/Users", userPre + `"userName":"p2@example.com","phoneNumbers":[{"value":"1","primary":true},{"value":"2","primary":"True"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if body := expect(t, 400)(e.do(t, tc.method, tc.path, tc.body)); body["scimType"] != "invalidValue" {
				t.Errorf("answer %v", body)
			}
		})
	}
	created := expect(t, 201)(e.do(t, "POST", "/Users", userPre+`"userName":"pia@example.com","emails":[
		{"type":"work","value":"pia@work.example","primary":true},{"type":"work","value":"pia@work.example"},
		{"type":"home","value":"pia@home.example"},{"type":"Home","value":"pia@home.example","primary":false}]}`))
	id := created["id"].(string)
	if vals, prim := primaryValues(t, created, "emails"); !cmp.Equal(vals, []string{"pia@work.example", "pia@home.example"}) || !cmp.Equal(prim, []string{"pia@work.example"}) {
		t.Errorf("create: values %v primaries %v", vals, prim)
	}
	steps := []struct {
		name, ops    string
		status       int
		values, prim []string
		email        string // the appliance's e-mail, the primary one
	}{
		{"add a new primary demotes the old", `[{"op":"add","path":"emails","value":[{"type":"other","value":"pia@other.example","primary":true}]}]`, 200,
			[]string{"pia@work.example", "pia@home.example", "pia@other.example"}, []string{"pia@other.example"}, "pia@other.example"},
		{"replace filtered primary", `[{"op":"replace","path":"emails[type eq \"home\"].primary","value":true}]`, 200,
			[]string{"pia@work.example", "pia@home.example", "pia@other.example"}, []string{"pia@home.example"}, "pia@home.example"},
		{"later operation wins", `[{"op":"replace","path":"emails[type eq \"work\"].primary","value":true},{"op":"replace","path":"emails[type eq \"other\"].primary","value":true}]`, 200,
			[]string{"pia@work.example", "pia@home.example", "pia@other.example"}, []string{"pia@other.example"}, "pia@other.example"},
		{"add of a duplicate is dropped", `[{"op":"add","path":"emails","value":[{"type":"WORK","value":"pia@work.example"}]}]`, 200,
			[]string{"pia@work.example", "pia@home.example", "pia@other.example"}, []string{"pia@other.example"}, "pia@other.example"},
		{"add with two primaries", `[{"op":"add","path":"emails","value":[{"value":"c@x.example","primary":true},{"value":"d@x.example","primary":true}]}]`, 400,
			nil, nil, ""},
		{"path-less replace with two primaries", `[{"op":"replace","value":{"emails":[{"value":"c@x.example","primary":true},{"value":"d@x.example","primary":true}]}}]`, 400,
			nil, nil, ""},
		{"replace all", `[{"op":"replace","path":"emails","value":[{"value":"c@x.example","primary":true},{"value":"c@x.example"}]}]`, 200,
			[]string{"c@x.example"}, []string{"c@x.example"}, "c@x.example"},
	}
	last := steps[0].values
	lastPrim := steps[0].prim
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			status, body, _ := e.do(t, "PATCH", "/Users/"+id, patchPre+s.ops+`}`)
			if status != s.status {
				t.Fatalf("status %d, want %d: %v", status, s.status, body)
			}
			if s.status != 200 {
				if body["scimType"] != "invalidValue" {
					t.Errorf("answer %v", body)
				}
				body = expect(t, 200)(e.do(t, "GET", "/Users/"+id, ""))
				s.values, s.prim = last, lastPrim
			} else {
				last, lastPrim = s.values, s.prim
				if got := e.user(t, id).Email; got != s.email {
					t.Errorf("stored e-mail %q, want %q", got, s.email)
				}
			}
			vals, prim := primaryValues(t, body, "emails")
			if diff := cmp.Diff(s.values, vals); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(s.prim, prim); diff != "" {
				t.Errorf("primaries (-want +got):\n%s", diff)
			}
		})
	}
	body := expect(t, 400)(e.do(t, "PUT", "/Users/"+id, userPre+`"userName":"pia@example.com","emails":[{"value":"a@x.example","primary":true},{"value":"b@x.example","primary":true}]}`))
	if body["scimType"] != "invalidValue" {
		t.Errorf("PUT two primaries: %v", body)
	}
}

// doH is e.do with request headers.
func (e *env) doH(t *testing.T, method, path, body string, hdr map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	return e.doTokenH(t, e.token, method, path, body, hdr)
}

// TestETags: If-Match on PUT, PATCH and DELETE is honoured (412 when it
// names an old version), If-None-Match on GET answers 304, and the
// ServiceProviderConfig says so.
func TestETags(t *testing.T) {
	e := newEnv(t, false)
	spc := expect(t, 200)(e.do(t, "GET", "/ServiceProviderConfig", ""))
	if et, _ := spc["etag"].(map[string]any); et["supported"] != true {
		t.Errorf("ServiceProviderConfig etag: %v", spc["etag"])
	}
	for _, kind := range []struct{ name, path, create, put, patch string }{
		{"Users", "/Users", userPre + `"userName":"etag@example.com"}`, userPre + `"userName":"etag@example.com","displayName":"PUT"}`,
			patchPre + `[{"op":"replace","path":"displayName","value":"PATCH"}]}`},
		{"Groups", "/Groups", groupPre + `"displayName":"etag"}`, groupPre + `"displayName":"PUT"}`,
			patchPre + `[{"op":"replace","path":"displayName","value":"PATCH"}]}`},
	} {
		t.Run(kind.name, func(t *testing.T) {
			_, created, hdr := e.do(t, "POST", kind.path, kind.create)
			id := created["id"].(string)
			loc := kind.path + "/" + id
			v0 := hdr.Get("ETag")
			if meta, _ := created["meta"].(map[string]any); v0 == "" || meta["version"] != v0 {
				t.Fatalf("create: ETag %q, meta %v", v0, created["meta"])
			}
			current := func() string {
				t.Helper()
				_, body, hdr := e.do(t, "GET", loc, "")
				if meta, _ := body["meta"].(map[string]any); meta["version"] != hdr.Get("ETag") {
					t.Fatalf("GET: ETag %q, meta.version %v", hdr.Get("ETag"), meta["version"])
				}
				return hdr.Get("ETag")
			}
			if got := current(); got != v0 {
				t.Fatalf("GET ETag %q, create said %q", got, v0)
			}
			// Conditional GET.
			if st, body, _ := e.doH(t, "GET", loc, "", map[string]string{"If-None-Match": v0}); st != 304 || body != nil {
				t.Errorf("If-None-Match current: %d %v", st, body)
			}
			if st, _, _ := e.doH(t, "GET", loc, "", map[string]string{"If-None-Match": `W/"old"`}); st != 200 {
				t.Errorf("If-None-Match other: %d", st)
			}
			// PATCH: current version proceeds, then the old one is refused.
			st, body, hdr := e.doH(t, "PATCH", loc, kind.patch, map[string]string{"If-Match": v0})
			if st != 200 || body["displayName"] != "PATCH" {
				t.Fatalf("PATCH with current If-Match: %d %v", st, body)
			}
			v1 := hdr.Get("ETag")
			if v1 == v0 || v1 != current() {
				t.Fatalf("after PATCH: ETag %q (was %q), GET says %q", v1, v0, current())
			}
			for _, m := range []struct{ method, body string }{{"PATCH", kind.patch}, {"PUT", kind.put}, {"DELETE", ""}} {
				st, body, _ := e.doH(t, m.method, loc, m.body, map[string]string{"If-Match": v0})
				if st != 412 {
					t.Errorf("%s with a stale If-Match: %d %v", m.method, st, body)
				}
			}
			if current() != v1 {
				t.Fatal("a refused request changed the resource")
			}
			// PUT with the current version (weak or strong form), then DELETE.
			st, body, hdr = e.doH(t, "PUT", loc, kind.put, map[string]string{"If-Match": `"nope", ` + strings.TrimPrefix(v1, "W/")})
			if st != 200 || body["displayName"] != "PUT" {
				t.Fatalf("PUT with current If-Match: %d %v", st, body)
			}
			v2 := hdr.Get("ETag")
			if st, _, _ := e.doH(t, "DELETE", loc, "", map[string]string{"If-Match": v1}); st != 412 {
				t.Errorf("DELETE with a stale If-Match: %d", st)
			}
			if st, _, _ := e.doH(t, "DELETE", loc, "", map[string]string{"If-Match": v2}); st != 204 {
				t.Errorf("DELETE with current If-Match: %d", st)
			}
			expect(t, 404)(e.do(t, "GET", loc, ""))
		})
	}
}

// TestSearchAndRootQueries: POST …/.search works like the GET query it
// stands for, and GET / and POST /.search query users and groups together.
func TestSearchAndRootQueries(t *testing.T) {
	e := newEnv(t, true)
	users := map[string]string{}
	for _, n := range []string{"carol", "alice", "bob"} {
		users[n] = expect(t, 201)(e.do(t, "POST", "/Users", userPre+`"userName":"`+n+`@example.com","displayName":"`+n+`","emails":[{"type":"work","value":"`+n+`@work.example"}]}`))["id"].(string)
	}
	grp := expect(t, 201)(e.do(t, "POST", "/Groups", groupPre+`"displayName":"admins","members":[{"value":"`+users["alice"]+`"}]}`))["id"].(string)

	for _, tc := range []struct {
		name, method, path, body string
		ids                      []string
		total                    float64
	}{
		{"Users/.search filter", "POST", "/Users/.search", searchPre + `"filter":"userName sw \"a\" or userName sw \"b\"","sortBy":"userName"}`,
			[]string{users["alice"], users["bob"]}, 2},
		{"Users/.search sorted descending, paged", "POST", "/Users/.search", searchPre + `"sortBy":"userName","sortOrder":"descending","startIndex":2,"count":1}`,
			[]string{users["bob"]}, 3},
		{"GET sorted by emails", "GET", "/Users?sortBy=emails.value", "",
			[]string{users["alice"], users["bob"], users["carol"]}, 3},
		{"Users/.search count 0", "POST", "/Users/.search", searchPre + `"count":0}`, []string{}, 3},
		{"GET count=0", "GET", "/Users?count=0", "", []string{}, 3},
		{"Groups/.search", "POST", "/Groups/.search", searchPre + `"filter":"displayName eq \"ADMINS\""}`, []string{grp}, 1},
		{"root GET filter", "GET", "/?filter=" + url.QueryEscape(`userName eq "bob@example.com" or displayName eq "admins"`), "", []string{users["bob"], grp}, 2},
		{"root GET by resourceType", "GET", "/?filter=" + url.QueryEscape(`meta.resourceType eq "Group"`), "", []string{grp}, 1},
		{"root .search sorted", "POST", "/.search", searchPre + `"filter":"displayName pr","sortBy":"displayName","count":10}`,
			[]string{grp, users["alice"], users["bob"], users["carol"]}, 4},
		{"root GET all", "GET", "/", "", nil, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := expect(t, 200)(e.do(t, tc.method, tc.path, tc.body))
			if body["totalResults"] != tc.total {
				t.Errorf("totalResults %v, want %v", body["totalResults"], tc.total)
			}
			if s, _ := body["schemas"].([]any); len(s) != 1 || s[0] != "urn:ietf:params:scim:api:messages:2.0:ListResponse" {
				t.Errorf("schemas %v", body["schemas"])
			}
			if tc.ids != nil {
				if diff := cmp.Diff(tc.ids, ids(t, body)); diff != "" {
					t.Errorf("ids (-want +got):\n%s", diff)
				}
			}
			if strings.HasPrefix(tc.path, "/?") || tc.path == "/" || tc.path == "/.search" {
				for _, r := range resources(t, body) {
					meta, _ := r["meta"].(map[string]any)
					typ, _ := meta["resourceType"].(string)
					loc, _ := meta["location"].(string)
					if (typ != "User" && typ != "Group") || loc != e.srv.URL+"/scim/v2/"+typ+"s/"+r["id"].(string) || r["schemas"] == nil {
						t.Errorf("root resource without its type, location or schemas: %v", r)
					}
				}
			}
		})
	}
	// The projection and excludedAttributes of a SearchRequest apply.
	body := expect(t, 200)(e.do(t, "POST", "/Users/.search", searchPre+`"filter":"userName eq \"bob@example.com\"","attributes":["userName"]}`))
	if r := resources(t, body); len(r) != 1 || r[0]["userName"] != "bob@example.com" || r[0]["emails"] != nil || r[0]["displayName"] != nil {
		t.Errorf("attributes: %v", body)
	}
	body = expect(t, 200)(e.do(t, "POST", "/Users/.search", searchPre+`"filter":"userName eq \"bob@example.com\"","excludedAttributes":["emails"]}`))
	if r := resources(t, body); len(r) != 1 || r[0]["emails"] != nil || r[0]["displayName"] != "bob" {
		t.Errorf("excludedAttributes: %v", body)
	}
	for _, tc := range []struct{ name, path, body string }{
		{"bad filter", "/Users/.search", searchPre + `"filter":"userName eq"}`},
		{"wrong schema", "/Users/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}`},
		{"not JSON", "/.search", `filter=x`},
		{"count not a number", "/Groups/.search", searchPre + `"count":"ten"}`},
		{"bad sortOrder", "/Users/.search", searchPre + `"sortBy":"userName","sortOrder":"up"}`},
		{"root bad filter", "/.search", searchPre + `"filter":"(("}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, 400)(e.do(t, "POST", tc.path, tc.body))
		})
	}
	expect(t, 400)(e.do(t, "GET", "/?filter=%28%28", ""))
}

// TestLocationsAbsolute: Location and meta.location are absolute URLs, and
// PATCH answers 200 with the full resource.
func TestLocationsAbsolute(t *testing.T) {
	e := newEnv(t, true)
	st, body, hdr := e.do(t, "POST", "/Users", userPre+`"userName":"loc@example.com"}`)
	if st != 201 {
		t.Fatalf("status %d", st)
	}
	want := e.srv.URL + "/scim/v2/Users/" + body["id"].(string)
	if meta, _ := body["meta"].(map[string]any); hdr.Get("Location") != want || meta["location"] != want {
		t.Errorf("Location %q, meta.location %v, want %q", hdr.Get("Location"), body["meta"], want)
	}
	got := expect(t, 200)(e.do(t, "PATCH", "/Users/"+body["id"].(string), patchPre+`[{"op":"replace","path":"displayName","value":"Loc"}]}`))
	if got["userName"] != "loc@example.com" || got["displayName"] != "Loc" || got["id"] != body["id"] {
		t.Errorf("PATCH answer: %v", got)
	}
	st, g, hdr := e.do(t, "POST", "/Groups", groupPre+`"displayName":"loc"}`)
	if want := e.srv.URL + "/scim/v2/Groups/" + g["id"].(string); st != 201 || hdr.Get("Location") != want {
		t.Errorf("group Location %q, want %q", hdr.Get("Location"), want)
	}
}

// TestAttributesWithValueFilter: attributes=emails[type eq "work"] returns
// the matching values, never an error; excludedAttributes drops them.
func TestAttributesWithValueFilter(t *testing.T) {
	e := newEnv(t, false)
	id := expect(t, 201)(e.do(t, "POST", "/Users", userPre+`"userName":"vf@example.com","displayName":"VF",
		"emails":[{"type":"work","value":"vf@work.example","primary":true},{"type":"home","value":"vf@home.example"}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Ops"}}`))["id"].(string)
	q := url.QueryEscape
	for _, tc := range []struct {
		name, query string
		want        map[string]any // attributes besides id, schemas, meta
	}{
		{"work e-mails", "attributes=" + q(`emails[type eq "work"]`),
			map[string]any{"emails": []any{map[string]any{"type": "work", "value": "vf@work.example", "primary": true}}}},
		{"work e-mail value and userName", "attributes=" + q(`emails[type eq "work"].value,userName`),
			map[string]any{"userName": "vf@example.com", "emails": []any{map[string]any{"value": "vf@work.example"}}}},
		{"two filters on one attribute", "attributes=" + q(`emails[type eq "work"].value,emails[type eq "home"].value`),
			map[string]any{"emails": []any{map[string]any{"value": "vf@work.example"}, map[string]any{"value": "vf@home.example"}}}},
		{"core URN prefix", "attributes=" + q(`urn:ietf:params:scim:schemas:core:2.0:User:emails[primary eq true].value`),
			map[string]any{"emails": []any{map[string]any{"value": "vf@work.example"}}}},
		{"no match", "attributes=" + q(`emails[type eq "other"],displayName`), map[string]any{"displayName": "VF"}},
		{"unparsable", "attributes=" + q(`emails[type eq,displayName`), map[string]any{"displayName": "VF"}},
		{"excluded", "attributes=" + q(`emails,userName`) + "&excludedAttributes=" + q(`emails[type eq "home"]`),
			map[string]any{"userName": "vf@example.com", "emails": []any{map[string]any{"type": "work", "value": "vf@work.example", "primary": true}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/Users/" + id + "?" + tc.query, "/Users?filter=" + q(`userName eq "vf@example.com"`) + "&" + tc.query} {
				body := expect(t, 200)(e.do(t, "GET", path, ""))
				if list, ok := body["Resources"].([]any); ok {
					if len(list) != 1 {
						t.Fatalf("%s: %v", path, body)
					}
					body = list[0].(map[string]any)
				}
				for _, k := range []string{"id", "schemas", "meta"} {
					if body[k] == nil {
						t.Errorf("%s: no %s", path, k)
					}
					delete(body, k)
				}
				if diff := cmp.Diff(tc.want, body); diff != "" {
					t.Errorf("%s (-want +got):\n%s", path, diff)
				}
			}
		})
	}
	body := expect(t, 200)(e.do(t, "POST", "/Users/.search", searchPre+`"attributes":["emails[type eq \"home\"].value"]}`))
	if r := resources(t, body); len(r) != 1 || !cmp.Equal(r[0]["emails"], []any{map[string]any{"value": "vf@home.example"}}) {
		t.Errorf(".search attributes with a value filter: %v", body)
	}
}

// TestIfMatchConcurrent: many clients PATCH with the same If-Match at once;
// the check is part of the updating transaction, so exactly one wins and
// every other gets 412 (no lost update).
func TestIfMatchConcurrent(t *testing.T) {
	e := newEnv(t, false)
	for _, kind := range []struct{ path, create string }{
		{"/Users", userPre + `"userName":"race@example.com"}`},
		{"/Groups", groupPre + `"displayName":"race"}`},
	} {
		t.Run(kind.path, func(t *testing.T) {
			_, created, hdr := e.do(t, "POST", kind.path, kind.create)
			loc, v0 := kind.path+"/"+created["id"].(string), hdr.Get("ETag")
			const clients = 32
			// Open the connections first, then release every PATCH at once,
			// so their reads overlap.
			e.srv.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = clients
			var warm sync.WaitGroup
			for range clients {
				warm.Go(func() { e.do(t, "GET", loc, "") })
			}
			warm.Wait()
			statuses := make(chan int, clients)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range clients {
				wg.Go(func() {
					<-start
					st, _, _ := e.doH(t, "PATCH", loc, patchPre+`[{"op":"replace","path":"displayName","value":"writer `+strconv.Itoa(i)+`"}]}`,
						map[string]string{"If-Match": v0})
					statuses <- st
				})
			}
			close(start)
			wg.Wait()
			close(statuses)
			count := map[int]int{}
			for st := range statuses {
				count[st]++
			}
			if diff := cmp.Diff(map[int]int{200: 1, 412: clients - 1}, count); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}

			// DELETE racing PATCH on one version: one of them wins.
			_, created, hdr = e.do(t, "POST", kind.path, strings.Replace(kind.create, "race", "race2", 1))
			loc, v0 = kind.path+"/"+created["id"].(string), hdr.Get("ETag")
			results := make(chan int, clients)
			start = make(chan struct{})
			for i := range clients {
				wg.Go(func() {
					<-start
					method, body := "DELETE", ""
					if i%2 == 0 {
						method, body = "PATCH", patchPre+`[{"op":"replace","path":"displayName","value":"w`+strconv.Itoa(i)+`"}]}`
					}
					st, _, _ := e.doH(t, method, loc, body, map[string]string{"If-Match": v0})
					results <- st
				})
			}
			close(start)
			wg.Wait()
			close(results)
			won := 0
			for st := range results {
				switch st {
				case 200, 204:
					won++
				case 404, 412:
				default:
					t.Errorf("status %d", st)
				}
			}
			if won != 1 {
				t.Errorf("%d requests with one If-Match succeeded, want 1", won)
			}
		})
	}
}
