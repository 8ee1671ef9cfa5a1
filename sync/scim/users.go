package scim

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	escim "github.com/elimity-com/scim"
	"github.com/elimity-com/scim/optional"
	"github.com/scim2/filter-parser/v2"

	"tokend/appliance"
)

// userHandler maps SCIM Users onto the appliance's users of the source the
// bearer token belongs to: userName → UserName, displayName (else
// name.formatted, else given + family name) → DisplayName, the primary
// (else work, else first) e-mail → Email, externalId → ExternalID, active →
// Active. Everything else the pusher sent is kept in the source-user record
// so GET returns it; a password is never stored or returned.
type userHandler struct{ h *Handler }

// Attributes owned by the User record rather than the stored map.
var userOwned = []string{"id", "meta", "schemas", "password", "userName", "active", "externalId"}

// userView renders a source user as SCIM attributes (without id,
// externalId, schemas and meta, which the library adds).
func userView(su appliance.SourceUser) map[string]any {
	a := deepCopyMap(su.Attributes)
	for _, k := range userOwned {
		delKey(a, k)
	}
	a["userName"] = su.UserName
	a["active"] = su.Active
	if k, _ := findKey(a, "displayName"); k == "" && su.DisplayName != "" {
		a["displayName"] = su.DisplayName
	}
	return a
}

// evalView is the map filters are evaluated over: the view plus the common
// attributes.
func evalView(su appliance.SourceUser) map[string]any {
	a := userView(su)
	a["id"] = su.ID
	if su.ExternalID != "" {
		a["externalId"] = su.ExternalID
	}
	a["meta"] = map[string]any{
		"resourceType": "User",
		"created":      su.CreatedAt.UTC().Format(time.RFC3339),
		"lastModified": su.UpdatedAt.UTC().Format(time.RFC3339),
	}
	return a
}

// version is a resource's ETag: a digest of what it holds and when it was
// last written, so a change made within one clock tick still changes it.
func version(updated time.Time, content any) string {
	b, _ := json.Marshal(content)
	// A number reads back from the store as json.Number and may be held
	// as a float or int just after a write: digest one form.
	var canon any
	if json.Unmarshal(b, &canon) == nil {
		b, _ = json.Marshal(canon)
	}
	return digestVersion(updated, b)
}

// digestVersion is the ETag of content already in canonical JSON.
func digestVersion(updated time.Time, b []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00", updated.UnixNano())
	h.Write(b)
	return fmt.Sprintf(`W/"%x"`, h.Sum(nil)[:12])
}

// userVersion digests what SCIM shows of a user, in a form that is the
// same whether the user was just written or read back from the store.
func userVersion(su appliance.SourceUser) string {
	var attrs map[string]any // the store drops an empty map
	if len(su.Attributes) > 0 {
		attrs = su.Attributes
	}
	// The canonical form built directly (numbers as float64, as version's
	// round trip leaves them) and marshalled once: the same ETag at a
	// third of the JSON work, on every create and read.
	if canon, ok := canonicalJSON(attrs); ok {
		b, err := json.Marshal([]any{su.ID, su.UserName, su.DisplayName, su.Email, su.ExternalID, su.Active,
			float64(su.RemovedAt.UnixNano()), canon})
		if err == nil {
			return digestVersion(su.UpdatedAt, b)
		}
	}
	return version(su.UpdatedAt, []any{su.ID, su.UserName, su.DisplayName, su.Email, su.ExternalID, su.Active,
		su.RemovedAt.UnixNano(), attrs})
}

// canonicalJSON returns v as json.Unmarshal into an any would give it
// back after json.Marshal, for the types attributes hold; ok is false for
// anything else (the caller then takes the round trip).
func canonicalJSON(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		// Marshal rewrites invalid UTF-8: leave that to the round trip.
		return x, utf8.ValidString(x)
	case nil, bool:
		return x, true
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case map[string]any:
		if x == nil {
			return nil, true
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, ok := canonicalJSON(e)
			if !ok || !utf8.ValidString(k) {
				return nil, false
			}
			out[k] = c
		}
		return out, true
	case []any:
		if x == nil {
			return nil, true
		}
		out := make([]any, len(x))
		for i, e := range x {
			c, ok := canonicalJSON(e)
			if !ok {
				return nil, false
			}
			out[i] = c
		}
		return out, true
	}
	return nil, false
}

func groupVersion(g appliance.Group) string {
	return version(g.UpdatedAt, []any{g.ID, g.DisplayName, g.ExternalID, g.Members})
}

func (uh *userHandler) resource(r *http.Request, su appliance.SourceUser) escim.Resource {
	p := projectionOf(r.URL.Query())
	created, modified := su.CreatedAt, su.UpdatedAt
	res := escim.Resource{
		ID:         su.ID,
		Attributes: p.apply(userView(su), userSchemaURN),
		Meta:       escim.Meta{Created: &created, LastModified: &modified, Version: userVersion(su)},
	}
	if su.ExternalID != "" && p.keepExternalID(userSchemaURN) {
		res.ExternalID = optional.NewString(su.ExternalID)
	}
	return res
}

// applyUserAttrs derives the User fields from a full attribute map and
// stores the rest. On create a missing active means true; otherwise it
// keeps the current value.
func applyUserAttrs(su *appliance.SourceUser, attrs map[string]any, create bool) error {
	for _, k := range []string{"id", "meta", "schemas", "password"} {
		delKey(attrs, k)
	}
	_, un := findKey(attrs, "userName")
	name, _ := un.(string)
	if strings.TrimSpace(name) == "" {
		return patchErr("invalidValue", "userName is required")
	}
	su.UserName = name
	su.ExternalID = ""
	if _, v := findKey(attrs, "externalId"); v != nil {
		s, ok := v.(string)
		if !ok {
			return patchErr("invalidValue", "externalId must be a string")
		}
		su.ExternalID = s
	}
	if _, v := findKey(attrs, "active"); v != nil {
		b, ok := toBool(v)
		if !ok {
			return patchErr("invalidValue", "active must be a boolean")
		}
		su.Active = b
	} else if create {
		su.Active = true
	}
	su.DisplayName = displayName(attrs)
	su.Email = primaryEmail(attrs)
	for _, k := range []string{"userName", "active", "externalId"} {
		delKey(attrs, k)
	}
	su.Attributes = attrs
	return nil
}

func displayName(attrs map[string]any) string {
	if _, v := findKey(attrs, "displayName"); v != nil {
		if s, ok := v.(string); ok && strings.TrimSpace(s) != "" {
			return strings.TrimSpace(s)
		}
	}
	_, nv := findKey(attrs, "name")
	n, _ := nv.(map[string]any)
	if n == nil {
		return ""
	}
	str := func(k string) string {
		_, v := findKey(n, k)
		s, _ := v.(string)
		return strings.TrimSpace(s)
	}
	if f := str("formatted"); f != "" {
		return f
	}
	return strings.TrimSpace(str("givenName") + " " + str("familyName"))
}

// primaryEmail picks the primary e-mail, else the work one, else the first;
// an address the appliance would refuse is left out of Email (it stays in
// the attributes).
func primaryEmail(attrs map[string]any) string {
	_, v := findKey(attrs, "emails")
	list, _ := v.([]any)
	var first, work, primary string
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			continue
		}
		_, vv := findKey(m, "value")
		addr, _ := vv.(string)
		if addr == "" {
			continue
		}
		if first == "" {
			first = addr
		}
		_, t := findKey(m, "type")
		if ts, _ := t.(string); strings.EqualFold(ts, "work") && work == "" {
			work = addr
		}
		_, p := findKey(m, "primary")
		if b, _ := toBool(p); b && primary == "" {
			primary = addr
		}
	}
	for _, addr := range []string{primary, work, first} {
		if addr == "" {
			continue
		}
		if a, err := mail.ParseAddress(addr); err == nil && a.Address == addr && len(addr) <= 256 {
			return addr
		}
		return ""
	}
	return ""
}

func (uh *userHandler) Create(r *http.Request, attrs escim.ResourceAttributes) (escim.Resource, error) {
	var su appliance.SourceUser
	if err := uh.h.users.normalizeMulti(attrs, nil); err != nil {
		return escim.Resource{}, uh.h.toSCIMError(err, "")
	}
	if err := applyUserAttrs(&su, map[string]any(attrs), true); err != nil {
		return escim.Resource{}, uh.h.toSCIMError(err, "")
	}
	out, err := uh.h.svc.CreateSourceUser(r.Context(), sourceFrom(r), su)
	if err != nil {
		return escim.Resource{}, uh.h.toSCIMError(err, "")
	}
	return uh.resource(r, out), nil
}

// get loads a user; users the source deleted answer 404 like never-seen ones.
func (uh *userHandler) get(r *http.Request, id string) (appliance.SourceUser, error) {
	su, err := uh.h.svc.GetSourceUser(r.Context(), sourceFrom(r), id)
	if err == nil && !su.RemovedAt.IsZero() {
		err = fmt.Errorf("user %q was deleted: %w", id, appliance.ErrNotFound)
	}
	return su, err
}

func (uh *userHandler) Get(r *http.Request, id string) (escim.Resource, error) {
	su, err := uh.get(r, id)
	if err != nil {
		return escim.Resource{}, uh.h.toSCIMError(err, id)
	}
	return uh.resource(r, su), nil
}

// scanPage is how many users one read transaction of a filtered scan loads.
const scanPage = 500

func (uh *userHandler) GetAll(r *http.Request, params escim.ListRequestParams) (escim.Page, error) {
	var expr filter.Expression
	if params.FilterValidator != nil {
		expr = params.FilterValidator.GetFilter()
	}
	spec, err := sortOf(r.URL.Query())
	if err != nil {
		return escim.Page{}, uh.h.toSCIMError(err, "")
	}
	page := escim.Page{Resources: []escim.Resource{}}
	skip := max(params.StartIndex, 1) - 1
	// Sorted: one small entry per match, then the page's users loaded again.
	var matched []sortEntry
	finish := func() (escim.Page, error) {
		if spec == nil {
			return page, nil
		}
		spec.sortEntries(matched)
		from, to := pageSlice(len(matched), params.StartIndex, params.Count)
		for _, en := range matched[from:to] {
			su, err := uh.get(r, en.id)
			if errors.Is(err, appliance.ErrNotFound) { // deleted since the scan
				continue
			}
			if err != nil {
				return escim.Page{}, uh.h.toSCIMError(err, "")
			}
			page.Resources = append(page.Resources, uh.resource(r, su))
		}
		return page, nil
	}
	add := func(su appliance.SourceUser) {
		if su.RemovedAt.IsZero() && spec != nil {
			if v := evalView(su); expr == nil || Match(expr, v) {
				page.TotalResults++
				matched = append(matched, spec.entry(v, su.ID, false))
			}
			return
		}
		if !su.RemovedAt.IsZero() || (expr != nil && !Match(expr, evalView(su))) {
			return
		}
		page.TotalResults++
		if skip > 0 {
			skip--
			return
		}
		if len(page.Resources) < params.Count {
			page.Resources = append(page.Resources, uh.resource(r, su))
		}
	}
	ctx, src := r.Context(), sourceFrom(r)
	// The lookups pushers make before every create use the indexes.
	if attr, val, ok := indexable(expr); ok {
		var found []appliance.SourceUser
		var err error
		switch attr {
		case "username":
			var su appliance.SourceUser
			su, err = uh.h.svc.FindSourceUserByName(ctx, src, val)
			found = []appliance.SourceUser{su}
		case "externalid":
			// Not unique (RFC 7643 §3.1): every user carrying it.
			found, err = uh.h.svc.FindSourceUsersByExternalID(ctx, src, val)
		default:
			var su appliance.SourceUser
			su, err = uh.h.svc.GetSourceUser(ctx, src, val)
			found = []appliance.SourceUser{su}
		}
		switch {
		case errors.Is(err, appliance.ErrNotFound):
		case err != nil:
			return escim.Page{}, uh.h.toSCIMError(err, "")
		default:
			for _, su := range found {
				add(su)
			}
		}
		return finish()
	}
	after := ""
	for {
		users, next, err := uh.h.svc.ScanSourceUsers(ctx, src, after, scanPage)
		if err != nil {
			return escim.Page{}, uh.h.toSCIMError(err, "")
		}
		for _, su := range users {
			add(su)
		}
		if next == "" {
			return finish()
		}
		after = next
	}
}

// indexable recognises userName eq "x", externalId eq "x" and id eq "x".
func indexable(e filter.Expression) (attr, val string, ok bool) {
	ae, isAttr := e.(*filter.AttributeExpression)
	if !isAttr || ae.Operator != filter.EQ || ae.AttributePath.SubAttribute != nil {
		return "", "", false
	}
	if uri := ae.AttributePath.URI(); uri != "" && !strings.EqualFold(uri, userSchemaURN) {
		return "", "", false
	}
	s, isStr := ae.CompareValue.(string)
	if !isStr {
		return "", "", false
	}
	switch a := strings.ToLower(ae.AttributePath.AttributeName); a {
	case "username", "externalid", "id":
		return a, s, true
	}
	return "", "", false
}

func (uh *userHandler) Replace(r *http.Request, id string, attrs escim.ResourceAttributes) (escim.Resource, error) {
	out, err := uh.h.svc.UpdateSourceUser(r.Context(), sourceFrom(r), id, func(su *appliance.SourceUser) error {
		if !su.RemovedAt.IsZero() {
			return fmt.Errorf("user %q was deleted: %w", id, appliance.ErrNotFound)
		}
		if err := checkIfMatch(r, userVersion(*su)); err != nil {
			return err
		}
		a := deepCopyMap(attrs)
		if err := uh.h.users.normalizeMulti(a, nil); err != nil {
			return err
		}
		return applyUserAttrs(su, a, false)
	})
	if err != nil {
		return escim.Resource{}, uh.h.toSCIMError(err, id)
	}
	return uh.resource(r, out), nil
}

// Delete deactivates the user and starts the grace period: one request
// never takes tokens away (PurgeExpiredUsers does, later). Afterwards the
// user answers 404, as Entra ID expects. An If-Match is checked in the
// same transaction.
func (uh *userHandler) Delete(r *http.Request, id string) error {
	_, err := uh.h.svc.DeactivateSourceUserIf(r.Context(), sourceFrom(r), id, true, func(su appliance.SourceUser) error {
		if !su.RemovedAt.IsZero() {
			return fmt.Errorf("user %q was deleted: %w", id, appliance.ErrNotFound)
		}
		return checkIfMatch(r, userVersion(su))
	})
	if err != nil {
		return uh.h.toSCIMError(err, id)
	}
	return nil
}

func (uh *userHandler) Patch(r *http.Request, id string, ops []escim.PatchOperation) (escim.Resource, error) {
	converted := make([]Operation, len(ops))
	for i, o := range ops {
		converted[i] = Operation{Op: o.Op, Path: o.Path, Value: o.Value}
	}
	out, err := uh.h.svc.UpdateSourceUser(r.Context(), sourceFrom(r), id, func(su *appliance.SourceUser) error {
		if !su.RemovedAt.IsZero() {
			return fmt.Errorf("user %q was deleted: %w", id, appliance.ErrNotFound)
		}
		if err := checkIfMatch(r, userVersion(*su)); err != nil {
			return err
		}
		view := userView(*su)
		if su.ExternalID != "" {
			view["externalId"] = su.ExternalID
		}
		if err := uh.h.users.ApplyPatch(view, copyOps(converted)); err != nil {
			return err
		}
		return applyUserAttrs(su, view, false)
	})
	if err != nil {
		return escim.Resource{}, uh.h.toSCIMError(err, id)
	}
	return uh.resource(r, out), nil
}

// copyOps deep-copies operation values: the applier may link them into
// the resource, and a transaction function can run more than once.
func copyOps(ops []Operation) []Operation {
	out := make([]Operation, len(ops))
	for i, o := range ops {
		out[i] = Operation{Op: o.Op, Path: o.Path, Value: deepCopy(o.Value)}
	}
	return out
}

// deepCopyMap copies the JSON-shaped map so edits inside a transaction
// function (which may run twice) never touch the caller's value.
func deepCopyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopy(v)
	}
	return out
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return deepCopyMap(v)
	case escim.ResourceAttributes:
		return deepCopyMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}
