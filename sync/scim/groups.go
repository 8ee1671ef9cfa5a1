package scim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	escim "github.com/elimity-com/scim"
	"github.com/elimity-com/scim/optional"

	"tokend/appliance"
)

// groupHandler maps SCIM Groups onto the appliance's groups of the source.
// Every member reference is kept, whether or not it names a user or group
// of the source yet (providers push groups and users in any order); a
// group is rendered with its resolved members only, each with its type,
// so a member appears once it has been pushed and disappears once deleted.
// Display names of members are not stored.
type groupHandler struct{ h *Handler }

// groupView renders the group; with resolved set, only the members that
// resolve (with their type), else every stored reference (the form PATCH
// edits, so unresolved references survive it).
func groupView(g appliance.Group, resolved map[string]string) map[string]any {
	members := make([]any, 0, len(g.Members))
	for _, m := range g.Members {
		if resolved == nil {
			members = append(members, map[string]any{"value": m})
			continue
		}
		if typ, ok := resolved[m]; ok {
			members = append(members, map[string]any{"value": m, "type": typ})
		}
	}
	return map[string]any{"displayName": g.DisplayName, "members": members}
}

func evalGroupView(g appliance.Group, resolved map[string]string) map[string]any {
	a := groupView(g, resolved)
	a["id"] = g.ID
	if g.ExternalID != "" {
		a["externalId"] = g.ExternalID
	}
	a["meta"] = map[string]any{
		"resourceType": "Group",
		"created":      g.CreatedAt.UTC().Format(time.RFC3339),
		"lastModified": g.UpdatedAt.UTC().Format(time.RFC3339),
	}
	return a
}

// resolve looks up which member references of the groups exist, in one read.
func (gh *groupHandler) resolve(r *http.Request, groups ...appliance.Group) (map[string]string, error) {
	var refs []string
	for _, g := range groups {
		refs = append(refs, g.Members...)
	}
	return gh.h.svc.ResolveGroupMembers(r.Context(), sourceFrom(r), refs)
}

// resourceOf renders one group, resolving its members.
func (gh *groupHandler) resourceOf(r *http.Request, g appliance.Group) (escim.Resource, error) {
	resolved, err := gh.resolve(r, g)
	if err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, g.ID)
	}
	return gh.resource(r, g, resolved), nil
}

func (gh *groupHandler) resource(r *http.Request, g appliance.Group, resolved map[string]string) escim.Resource {
	p := projectionOf(r.URL.Query())
	created, modified := g.CreatedAt, g.UpdatedAt
	view := groupView(g, resolved)
	res := escim.Resource{
		ID:         g.ID,
		Attributes: p.apply(view, groupSchemaURN),
		Meta:       escim.Meta{Created: &created, LastModified: &modified, Version: groupVersion(g)},
	}
	if g.ExternalID != "" && p.keepExternalID(groupSchemaURN) {
		res.ExternalID = optional.NewString(g.ExternalID)
	}
	return res
}

// applyGroupAttrs sets the group's fields from a full attribute map.
func applyGroupAttrs(g *appliance.Group, attrs map[string]any) error {
	_, dn := findKey(attrs, "displayName")
	name, _ := dn.(string)
	if strings.TrimSpace(name) == "" {
		return patchErr("invalidValue", "displayName is required")
	}
	g.DisplayName = name
	g.ExternalID = ""
	if _, v := findKey(attrs, "externalId"); v != nil {
		s, ok := v.(string)
		if !ok {
			return patchErr("invalidValue", "externalId must be a string")
		}
		g.ExternalID = s
	}
	_, mv := findKey(attrs, "members")
	list, _ := mv.([]any)
	g.Members = make([]string, 0, len(list))
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			return patchErr("invalidValue", "%s", bareMemberMsg(jsonKind(el)))
		}
		_, v := findKey(m, "value")
		id, ok := v.(string)
		if !ok || id == "" {
			return patchErr("invalidValue", `each member needs a string "value" (the id of a user or group)`)
		}
		if _, t := findKey(m, "type"); t != nil {
			if ts, _ := t.(string); !strings.EqualFold(ts, "User") && !strings.EqualFold(ts, "Group") {
				return patchErr("invalidValue", `a member's "type" is "User" or "Group"`)
			}
		}
		g.Members = append(g.Members, id)
	}
	return nil
}

func (gh *groupHandler) Create(r *http.Request, attrs escim.ResourceAttributes) (escim.Resource, error) {
	var g appliance.Group
	if err := gh.h.groups.normalizeMulti(attrs, nil); err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, "")
	}
	if err := applyGroupAttrs(&g, attrs); err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, "")
	}
	out, err := gh.h.svc.CreateGroup(r.Context(), sourceFrom(r), g)
	if err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, "")
	}
	return gh.resourceOf(r, out)
}

func (gh *groupHandler) Get(r *http.Request, id string) (escim.Resource, error) {
	g, err := gh.h.svc.GetGroup(r.Context(), sourceFrom(r), id)
	if err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, id)
	}
	return gh.resourceOf(r, g)
}

func (gh *groupHandler) GetAll(r *http.Request, params escim.ListRequestParams) (escim.Page, error) {
	groups, err := gh.h.svc.ListGroups(r.Context(), sourceFrom(r))
	if err != nil {
		return escim.Page{}, gh.h.toSCIMError(err, "")
	}
	resolved, err := gh.resolve(r, groups...)
	if err != nil {
		return escim.Page{}, gh.h.toSCIMError(err, "")
	}
	spec, err := sortOf(r.URL.Query())
	if err != nil {
		return escim.Page{}, gh.h.toSCIMError(err, "")
	}
	matched := make([]appliance.Group, 0, len(groups))
	var entries []sortEntry
	for _, g := range groups {
		v := evalGroupView(g, resolved)
		if params.FilterValidator == nil || Match(params.FilterValidator.GetFilter(), v) {
			matched = append(matched, g)
			if spec != nil {
				entries = append(entries, spec.entry(v, g.ID, true))
			}
		}
	}
	if spec != nil { // groups are in memory already: reorder them
		spec.sortEntries(entries)
		byID := make(map[string]appliance.Group, len(matched))
		for _, g := range matched {
			byID[g.ID] = g
		}
		for i, en := range entries {
			matched[i] = byID[en.id]
		}
	}
	from, to := pageSlice(len(matched), params.StartIndex, params.Count)
	page := escim.Page{TotalResults: len(matched), Resources: make([]escim.Resource, 0, to-from)}
	for _, g := range matched[from:to] {
		page.Resources = append(page.Resources, gh.resource(r, g, resolved))
	}
	return page, nil
}

func (gh *groupHandler) Replace(r *http.Request, id string, attrs escim.ResourceAttributes) (escim.Resource, error) {
	out, err := gh.h.svc.UpdateGroup(r.Context(), sourceFrom(r), id, func(g *appliance.Group) error {
		if err := checkIfMatch(r, groupVersion(*g)); err != nil {
			return err
		}
		a := deepCopyMap(attrs)
		if err := gh.h.groups.normalizeMulti(a, nil); err != nil {
			return err
		}
		return applyGroupAttrs(g, a)
	})
	if err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, id)
	}
	return gh.resourceOf(r, out)
}

// Delete removes the group; an If-Match is checked in the same transaction.
func (gh *groupHandler) Delete(r *http.Request, id string) error {
	err := gh.h.svc.DeleteGroupIf(r.Context(), sourceFrom(r), id, func(g appliance.Group) error {
		return checkIfMatch(r, groupVersion(g))
	})
	if err != nil {
		return gh.h.toSCIMError(err, id)
	}
	return nil
}

func (gh *groupHandler) Patch(r *http.Request, id string, ops []escim.PatchOperation) (escim.Resource, error) {
	converted := make([]Operation, len(ops))
	for i, o := range ops {
		converted[i] = Operation{Op: o.Op, Path: o.Path, Value: o.Value}
	}
	out, err := gh.h.svc.UpdateGroup(r.Context(), sourceFrom(r), id, func(g *appliance.Group) error {
		if err := checkIfMatch(r, groupVersion(*g)); err != nil {
			return err
		}
		view := groupView(*g, nil)
		if g.ExternalID != "" {
			view["externalId"] = g.ExternalID
		}
		if err := gh.h.groups.ApplyPatch(view, copyOps(converted)); err != nil {
			return err
		}
		return applyGroupAttrs(g, view)
	})
	if err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, id)
	}
	return gh.resourceOf(r, out)
}

// jsonKind names the JSON type of a decoded value, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "number"
}

// bareMemberMsg is the answer to a member sent as a bare value of kind.
func bareMemberMsg(kind string) string {
	return `each member must be an object such as {"value":"<id>","type":"User"}, not a bare ` + kind
}

// bareMember returns the JSON kind of the first member a Groups
// POST/PUT/PATCH body gives as something other than an object ("" when
// there is none): the library's validation refuses it with a generic
// message, and clients deserve the exact one.
func bareMember(body []byte) string {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var doc map[string]any
	if d.Decode(&doc) != nil {
		return ""
	}
	bare := func(v any) string {
		list, ok := v.([]any)
		if !ok {
			if _, isMap := v.(map[string]any); v == nil || isMap {
				return ""
			}
			return jsonKind(v)
		}
		for _, el := range list {
			if _, ok := el.(map[string]any); !ok {
				return jsonKind(el)
			}
		}
		return ""
	}
	if k, v := findKey(doc, "members"); k != "" {
		if kind := bare(v); kind != "" {
			return kind
		}
	}
	_, ops := findKey(doc, "Operations")
	list, _ := ops.([]any)
	for _, o := range list {
		om, _ := o.(map[string]any)
		_, p := findKey(om, "path")
		ps, _ := p.(string)
		_, v := findKey(om, "value")
		switch {
		case strings.EqualFold(strings.TrimSpace(ps), "members"):
			if kind := bare(v); kind != "" {
				return kind
			}
		case ps == "":
			if vm, ok := v.(map[string]any); ok {
				if k, mv := findKey(vm, "members"); k != "" {
					if kind := bare(mv); kind != "" {
						return kind
					}
				}
			}
		}
	}
	return ""
}
