package scim_test

import (
	"net/url"
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
