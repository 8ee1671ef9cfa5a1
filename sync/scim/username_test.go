package scim_test

import (
	"net/url"
	"strings"
	"testing"

	"tokend/appliance"
)

const userSchema = `"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]`

// TestUserNameCharacters: a SCIM client cannot create or rename a user to a
// login with control, bidi-override or zero-width characters; the answer
// is 400 invalidValue with the exact rule, and a decomposed login is stored
// composed (NFC) and found by either form.
func TestUserNameCharacters(t *testing.T) {
	e := newEnv(t, true)
	tests := []struct {
		name     string
		userName string // JSON string content, escapes allowed
	}{
		{name: "BEL", userName: `ali\u0007ce@contoso.com`},
		{name: "ESC sequence", userName: `ali\u001b[2Jce@contoso.com`},
		{name: "right-to-left override", userName: `alice\u202emoc.osotnoc@`},
		{name: "zero-width space", userName: `ali\u200bce@contoso.com`},
		{name: "no-break space", userName: `alice\u00a0smith@contoso.com`},
		{name: "private use", userName: `alice\ue000@contoso.com`},
	}
	for _, tt := range tests {
		t.Run("create "+tt.name, func(t *testing.T) {
			body := expect(t, 400)(e.do(t, "POST", "/Users", `{`+userSchema+`,"userName":"`+tt.userName+`","externalId":"x-`+tt.name+`"}`))
			if body["scimType"] != "invalidValue" || !strings.Contains(body["detail"].(string), appliance.UserNameRule) {
				t.Errorf("answer %v, want invalidValue with the rule", body)
			}
		})
	}

	id := expect(t, 201)(e.do(t, "POST", "/Users", `{`+userSchema+`,"userName":"rene\u0301e@contoso.com","externalId":"renee"}`))["id"].(string)
	if got := e.user(t, id).UserName; got != "ren\u00e9e@contoso.com" {
		t.Fatalf("stored %q, want the NFC form", got)
	}
	for _, form := range []string{"ren\u00e9e@contoso.com", "rene\u0301e@contoso.com"} {
		t.Run("filter finds "+url.QueryEscape(form), func(t *testing.T) {
			body := expect(t, 200)(e.do(t, "GET", "/Users?filter="+url.QueryEscape(`userName eq "`+form+`"`), ""))
			if body["totalResults"] != float64(1) {
				t.Errorf("filter %q: %v", form, body)
			}
		})
	}
	for _, tt := range tests {
		t.Run("rename to "+tt.name, func(t *testing.T) {
			body := expect(t, 400)(e.do(t, "PATCH", "/Users/"+id,
				`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"userName","value":"`+tt.userName+`"}]}`))
			if body["scimType"] != "invalidValue" {
				t.Errorf("answer %v, want invalidValue", body)
			}
			if got := e.user(t, id).UserName; got != "ren\u00e9e@contoso.com" {
				t.Errorf("login changed to %q", got)
			}
		})
	}
}
