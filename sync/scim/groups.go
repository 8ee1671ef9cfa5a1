package scim

import (
	"net/http"
	"strings"

	escim "github.com/elimity-com/scim"
	"github.com/elimity-com/scim/optional"

	"tokend/appliance"
)

// groupHandler maps SCIM Groups onto the appliance's groups of the source.
// Members are user ids of the same source; display names of members are
// not stored.
type groupHandler struct{ h *Handler }

func groupView(g appliance.Group) map[string]any {
	members := make([]any, 0, len(g.Members))
	for _, m := range g.Members {
		members = append(members, map[string]any{"value": m, "type": "User"})
	}
	return map[string]any{"displayName": g.DisplayName, "members": members}
}

func evalGroupView(g appliance.Group) map[string]any {
	a := groupView(g)
	a["id"] = g.ID
	if g.ExternalID != "" {
		a["externalId"] = g.ExternalID
	}
	return a
}

func (gh *groupHandler) resource(r *http.Request, g appliance.Group) escim.Resource {
	p := projectionOf(r.URL.Query())
	created, modified := g.CreatedAt, g.UpdatedAt
	res := escim.Resource{
		ID:         g.ID,
		Attributes: p.apply(groupView(g), groupSchemaURN),
		Meta:       escim.Meta{Created: &created, LastModified: &modified, Version: version(g.UpdatedAt)},
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
			return patchErr("invalidValue", "members must be objects with a value")
		}
		_, v := findKey(m, "value")
		id, ok := v.(string)
		if !ok || id == "" {
			return patchErr("invalidValue", "members must be objects with a value")
		}
		g.Members = append(g.Members, id)
	}
	return nil
}

func (gh *groupHandler) Create(r *http.Request, attrs escim.ResourceAttributes) (escim.Resource, error) {
	var g appliance.Group
	if err := applyGroupAttrs(&g, attrs); err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, "")
	}
	out, err := gh.h.svc.CreateGroup(r.Context(), sourceFrom(r), g)
	if err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, "")
	}
	return gh.resource(r, out), nil
}

func (gh *groupHandler) Get(r *http.Request, id string) (escim.Resource, error) {
	g, err := gh.h.svc.GetGroup(r.Context(), sourceFrom(r), id)
	if err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, id)
	}
	return gh.resource(r, g), nil
}

func (gh *groupHandler) GetAll(r *http.Request, params escim.ListRequestParams) (escim.Page, error) {
	groups, err := gh.h.svc.ListGroups(r.Context(), sourceFrom(r))
	if err != nil {
		return escim.Page{}, gh.h.toSCIMError(err, "")
	}
	page := escim.Page{Resources: []escim.Resource{}}
	skip := max(params.StartIndex, 1) - 1
	for _, g := range groups {
		if params.FilterValidator != nil && !Match(params.FilterValidator.GetFilter(), evalGroupView(g)) {
			continue
		}
		page.TotalResults++
		if skip > 0 {
			skip--
			continue
		}
		if len(page.Resources) < params.Count {
			page.Resources = append(page.Resources, gh.resource(r, g))
		}
	}
	return page, nil
}

func (gh *groupHandler) Replace(r *http.Request, id string, attrs escim.ResourceAttributes) (escim.Resource, error) {
	out, err := gh.h.svc.UpdateGroup(r.Context(), sourceFrom(r), id, func(g *appliance.Group) error {
		return applyGroupAttrs(g, deepCopyMap(attrs))
	})
	if err != nil {
		return escim.Resource{}, gh.h.toSCIMError(err, id)
	}
	return gh.resource(r, out), nil
}

func (gh *groupHandler) Delete(r *http.Request, id string) error {
	if err := gh.h.svc.DeleteGroup(r.Context(), sourceFrom(r), id); err != nil {
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
		view := groupView(*g)
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
	return gh.resource(r, out), nil
}
