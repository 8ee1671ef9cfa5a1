package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	escim "github.com/elimity-com/scim"
	scimerr "github.com/elimity-com/scim/errors"
	"github.com/scim2/filter-parser/v2"

	"tokend/appliance"
)

// Queries by POST (RFC 7644 §3.4.3) and against the root (§3.4.2.1), and
// sorting (§3.4.2.3).
//
// POST /Users/.search, /Groups/.search and /.search are turned into the
// equivalent GET query before the library sees them, so a SearchRequest
// behaves exactly like the query string it stands for. The root query
// (GET / or POST /.search) runs over the source's users and groups; its
// resources carry schemas and meta.resourceType.

const searchRequestURN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"

// searchQuery converts a SearchRequest body into query parameters.
func searchQuery(body []byte) (url.Values, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil {
		return nil, patchErr("invalidSyntax", "the body is not a SearchRequest object")
	}
	if k, v := findKey(doc, "schemas"); k != "" {
		list, _ := v.([]any)
		if !slices.ContainsFunc(list, func(s any) bool { return s == searchRequestURN }) {
			return nil, patchErr("invalidValue", "schemas must be [%q]", searchRequestURN)
		}
	}
	q := url.Values{}
	for _, name := range []string{"filter", "sortBy", "sortOrder"} {
		if _, v := findKey(doc, name); v != nil {
			s, ok := v.(string)
			if !ok {
				return nil, patchErr("invalidValue", "%s must be a string", name)
			}
			q.Set(name, s)
		}
	}
	for _, name := range []string{"attributes", "excludedAttributes"} {
		_, v := findKey(doc, name)
		switch v := v.(type) {
		case nil:
		case string:
			q.Set(name, v)
		case []any:
			parts := make([]string, 0, len(v))
			for _, el := range v {
				s, ok := el.(string)
				if !ok {
					return nil, patchErr("invalidValue", "%s must be a list of attribute names", name)
				}
				parts = append(parts, s)
			}
			q.Set(name, strings.Join(parts, ","))
		default:
			return nil, patchErr("invalidValue", "%s must be a list of attribute names", name)
		}
	}
	for _, name := range []string{"startIndex", "count"} {
		_, v := findKey(doc, name)
		switch v := v.(type) {
		case nil:
		case json.Number:
			n, err := v.Int64()
			if err != nil {
				return nil, patchErr("invalidValue", "%s must be an integer", name)
			}
			q.Set(name, strconv.FormatInt(n, 10))
		default:
			return nil, patchErr("invalidValue", "%s must be an integer", name)
		}
	}
	return q, nil
}

// sortSpec is a parsed sortBy / sortOrder.
type sortSpec struct {
	path       filter.AttributePath
	descending bool
}

// sortOf reads sortBy and sortOrder; nil when there is no sortBy.
func sortOf(q url.Values) (*sortSpec, error) {
	by := strings.TrimSpace(q.Get("sortBy"))
	if by == "" {
		return nil, nil
	}
	p, err := filter.ParseAttrPath([]byte(by))
	if err != nil {
		return nil, patchErr("invalidValue", "sortBy is not an attribute path")
	}
	s := &sortSpec{path: p}
	switch strings.ToLower(strings.TrimSpace(q.Get("sortOrder"))) {
	case "", "ascending":
	case "descending":
		s.descending = true
	default:
		return nil, patchErr("invalidValue", `sortOrder is "ascending" or "descending"`)
	}
	return s, nil
}

// sortKey is the value a resource sorts by: for a multi-valued attribute
// its primary value, else its first (RFC 7644 §3.4.2.3).
func (s *sortSpec) sortKey(view map[string]any) (any, bool) {
	c := container(view, s.path)
	if c == nil {
		return nil, false
	}
	raw, ok := lookup(c, s.path.AttributeName)
	if !ok || raw == nil {
		return nil, false
	}
	if list, isList := raw.([]any); isList {
		for _, el := range list {
			if isPrimary(el) {
				return s.pick(el)
			}
		}
		if len(list) == 0 {
			return nil, false
		}
		return s.pick(list[0])
	}
	return s.pick(raw)
}

func (s *sortSpec) pick(v any) (any, bool) {
	m, isMap := v.(map[string]any)
	sub := s.path.SubAttributeName()
	switch {
	case isMap && sub != "":
		sv, ok := lookup(m, sub)
		return sv, ok && sv != nil
	case isMap:
		sv, ok := lookup(m, "value")
		return sv, ok && sv != nil
	case sub != "":
		return nil, false
	}
	return v, true
}

// sortEntry is what a sorted query keeps per match: its sort value, in
// the forms compareEntries needs (worked out once here, not at each of
// the n log n comparisons), and how to find the resource again, not the
// record, so memory stays small per match.
type sortEntry struct {
	ok     bool    // the resource has a value to sort by
	num    float64 // the value as a number, when isNum
	isNum  bool
	b      bool // the value, when isBool
	isBool bool
	str    string // the value as text, lower-cased unless case-exact
	id     string
	group  bool
}

func (s *sortSpec) entry(view map[string]any, id string, group bool) sortEntry {
	e := sortEntry{id: id, group: group}
	k, ok := s.sortKey(view)
	if !ok {
		return e
	}
	e.ok = true
	e.num, e.isNum = toFloat(k)
	e.b, e.isBool = k.(bool)
	e.str = fmt.Sprint(k)
	if !caseExact(s.path) {
		e.str = strings.ToLower(e.str)
	}
	return e
}

// compareEntries orders two sort values: numbers numerically, booleans
// false first, strings case-insensitively (id and externalId exactly).
func compareEntries(a, b sortEntry) int {
	switch {
	case a.isNum && b.isNum:
		switch {
		case a.num < b.num:
			return -1
		case a.num > b.num:
			return 1
		}
		return 0
	case a.isBool && b.isBool:
		switch {
		case a.b == b.b:
			return 0
		case !a.b:
			return -1
		}
		return 1
	}
	return strings.Compare(a.str, b.str)
}

// sortEntries orders entries; resources without a value sort last in
// ascending order (first in descending); ties keep their order.
func (s *sortSpec) sortEntries(entries []sortEntry) {
	slices.SortStableFunc(entries, func(a, b sortEntry) int {
		c := 0
		switch {
		case !a.ok && !b.ok:
		case !a.ok:
			c = 1
		case !b.ok:
			c = -1
		default:
			c = compareEntries(a, b)
		}
		if s.descending {
			c = -c
		}
		return c
	})
}

// pageSlice cuts one page (1-based startIndex) out of n results.
func pageSlice(n, startIndex, count int) (int, int) {
	from := min(max(startIndex, 1)-1, n)
	return from, min(from+max(count, 0), n)
}

// rootHandler answers queries against the server root: the source's users
// (not deleted) and groups, filtered, sorted and paged together. Unsorted,
// it streams (only the page is rendered); sorted, it keeps one sortEntry
// per match and loads the page's users again.
type rootHandler struct{ h *Handler }

func (rh *rootHandler) GetAll(r *http.Request, params escim.ListRequestParams) (escim.Page, error) {
	var expr filter.Expression
	if f := r.URL.Query().Get("filter"); f != "" {
		e, err := ParseFilter(f)
		if err != nil {
			return escim.Page{}, scimerr.ScimErrorInvalidFilter
		}
		expr = e
	}
	spec, err := sortOf(r.URL.Query())
	if err != nil {
		return escim.Page{}, rh.h.toSCIMError(err, "")
	}
	ctx, src := r.Context(), sourceFrom(r)
	uh, gh := &userHandler{h: rh.h}, &groupHandler{h: rh.h}
	base := baseFrom(r)
	renderUser := func(su appliance.SourceUser) escim.Resource {
		return withType(uh.resource(r, su), "User", userSchemaURN, base+"/Users/"+su.ID, enterpriseSchemaURN)
	}
	page := escim.Page{Resources: []escim.Resource{}}
	from, to := pageSlice(math.MaxInt, params.StartIndex, params.Count)
	var entries []sortEntry
	// take counts a match and renders it when it falls on the page.
	take := func(render func() escim.Resource) {
		if page.TotalResults >= from && page.TotalResults < to {
			page.Resources = append(page.Resources, render())
		}
		page.TotalResults++
	}
	after := ""
	for {
		users, next, err := rh.h.svc.ScanSourceUsers(ctx, src, after, scanPage)
		if err != nil {
			return escim.Page{}, rh.h.toSCIMError(err, "")
		}
		for _, su := range users {
			if !su.RemovedAt.IsZero() {
				continue
			}
			v := evalView(su)
			switch {
			case expr != nil && !Match(expr, v):
			case spec != nil:
				entries = append(entries, spec.entry(v, su.ID, false))
			default:
				take(func() escim.Resource { return renderUser(su) })
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	groups, err := rh.h.svc.ListGroups(ctx, src)
	if err != nil {
		return escim.Page{}, rh.h.toSCIMError(err, "")
	}
	resolved, err := gh.resolve(r, groups...)
	if err != nil {
		return escim.Page{}, rh.h.toSCIMError(err, "")
	}
	byID := make(map[string]appliance.Group, len(groups))
	renderGroup := func(g appliance.Group) escim.Resource {
		return withType(gh.resource(r, g, resolved), "Group", groupSchemaURN, base+"/Groups/"+g.ID)
	}
	for _, g := range groups {
		v := evalGroupView(g, resolved)
		switch {
		case expr != nil && !Match(expr, v):
		case spec != nil:
			byID[g.ID] = g
			entries = append(entries, spec.entry(v, g.ID, true))
		default:
			take(func() escim.Resource { return renderGroup(g) })
		}
	}
	if spec == nil {
		return page, nil
	}
	spec.sortEntries(entries)
	page.TotalResults = len(entries)
	from, to = pageSlice(len(entries), params.StartIndex, params.Count)
	for _, en := range entries[from:to] {
		if en.group {
			page.Resources = append(page.Resources, renderGroup(byID[en.id]))
			continue
		}
		su, err := uh.get(r, en.id)
		if errors.Is(err, appliance.ErrNotFound) { // deleted since the scan
			continue
		}
		if err != nil {
			return escim.Page{}, rh.h.toSCIMError(err, "")
		}
		page.Resources = append(page.Resources, renderUser(su))
	}
	return page, nil
}

// withType adds what the library adds to a typed resource but cannot to a
// root query's: schemas, meta.resourceType and meta.location.
func withType(res escim.Resource, typ, core, location string, exts ...string) escim.Resource {
	attrs := make(map[string]any, len(res.Attributes)+2)
	for k, v := range res.Attributes {
		attrs[k] = v
	}
	attrs["schemas"] = append([]string{core}, exts...)
	attrs["meta"] = map[string]any{"resourceType": typ, "location": location}
	res.Attributes = attrs
	return res
}

// errSearchBody marks a SearchRequest that cannot be turned into a query.
var errSearchBody = errors.New("scim: bad SearchRequest")

// searchAsGet rewrites a POST …/.search into the equivalent GET query.
func searchAsGet(r *http.Request, path string, body []byte) (*http.Request, error) {
	q, err := searchQuery(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSearchBody, err)
	}
	if q.Has("filter") {
		q.Set("filter", RewriteFilter(q.Get("filter")))
	}
	r2 := r.Clone(r.Context())
	r2.Method = http.MethodGet
	u := *r.URL
	u.Path, u.RawPath = strings.TrimSuffix(strings.TrimSuffix(path, ".search"), "/"), ""
	if u.Path == "" {
		u.Path = "/"
	}
	u.RawQuery = q.Encode()
	r2.URL = &u
	r2.Body, r2.ContentLength = http.NoBody, 0
	return r2, nil
}
