package scim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/elimity-com/scim/schema"
	"github.com/scim2/filter-parser/v2"
)

// Our own PATCH applier (RFC 7644 §3.5.2): elimity-com/scim validates
// operations but does not apply them. It covers what Entra ID and Okta
// send (docs/sync.md §2): path-less add/replace whose value keys are
// attribute paths ("name.givenName", `emails[type eq "work"].value`, full
// URN-prefixed names) or extension objects; value-filtered paths that
// create the element when nothing matches (add, and keys of a path-less
// value; a replace "path" that matches nothing is noTarget); member removal by a value list
// that removes only those members; members[value eq "…"] removal.

// Operation is one PATCH operation: Op is add, replace or remove (any case).
type Operation struct {
	Op    string
	Path  *filter.Path
	Value any
}

// PatchError is a PATCH the applier refuses; it becomes a SCIM 400 with
// the given scimType.
type PatchError struct {
	ScimType string // invalidPath, noTarget, invalidValue, mutability
	Detail   string
}

func (e *PatchError) Error() string { return "scim patch: " + e.ScimType + ": " + e.Detail }

func patchErr(typ, format string, a ...any) error {
	return &PatchError{ScimType: typ, Detail: fmt.Sprintf(format, a...)}
}

// maxPatchOps bounds one request.
const maxPatchOps = 1000

// DecodePatch decodes a PATCH request body without schema validation (the
// server gets operations already validated by the library; tests and the
// fuzz target use this). Keys are case-insensitive; a top-level "id" in a
// map value is dropped as Okta sends it.
func DecodePatch(body []byte) ([]Operation, error) {
	var req struct {
		Schemas    []string
		Operations []struct {
			Op    string
			Path  string
			Value any
		}
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&req); err != nil {
		return nil, patchErr("invalidSyntax", "body is not a PATCH request")
	}
	if len(req.Schemas) != 1 || req.Schemas[0] != patchOpURN {
		return nil, patchErr("invalidValue", "schemas must be [%q]", patchOpURN)
	}
	if len(req.Operations) == 0 || len(req.Operations) > maxPatchOps {
		return nil, patchErr("invalidValue", "between 1 and %d operations", maxPatchOps)
	}
	ops := make([]Operation, 0, len(req.Operations))
	for _, o := range req.Operations {
		op := Operation{Op: strings.ToLower(o.Op), Value: o.Value}
		if m, ok := op.Value.(map[string]any); ok {
			for k := range m {
				if strings.EqualFold(k, "id") {
					delete(m, k)
				}
			}
		}
		if o.Path != "" {
			p, err := filter.ParsePath([]byte(o.Path))
			if err != nil {
				return nil, patchErr("invalidPath", "cannot parse path")
			}
			op.Path = &p
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// schemaInfo answers the applier's questions about attribute shapes.
type schemaInfo struct {
	core schema.Schema
	exts []schema.Schema
}

func (si *schemaInfo) extension(uri string) (schema.Schema, bool) {
	for _, e := range si.exts {
		if strings.EqualFold(e.ID, uri) {
			return e, true
		}
	}
	return schema.Schema{}, false
}

// attribute returns the schema attribute an attribute path names.
func (si *schemaInfo) attribute(p filter.AttributePath) (schema.CoreAttribute, bool) {
	s := si.core
	if uri := p.URI(); uri != "" && !strings.EqualFold(uri, si.core.ID) {
		var ok bool
		if s, ok = si.extension(uri); !ok {
			return schema.CoreAttribute{}, false
		}
	}
	for _, a := range s.Attributes {
		if strings.EqualFold(a.Name(), p.AttributeName) {
			return a, true
		}
	}
	return schema.CoreAttribute{}, false
}

func subAttribute(a schema.CoreAttribute, name string) (schema.CoreAttribute, bool) {
	for _, s := range a.SubAttributes() {
		if strings.EqualFold(s.Name(), name) {
			return s, true
		}
	}
	return schema.CoreAttribute{}, false
}

// ApplyPatch applies ops to res (a resource's attributes, modified in
// place). Attribute names are matched case-insensitively and written with
// the schema's spelling. It never panics, whatever the operations hold.
func (si *schemaInfo) ApplyPatch(res map[string]any, ops []Operation) error {
	for _, op := range ops {
		before := si.primaries(res)
		if err := si.applyOne(res, op); err != nil {
			return err
		}
		// Per operation, so a later operation's primary wins.
		if err := si.normalizeMulti(res, before); err != nil {
			return err
		}
	}
	return nil
}

func (si *schemaInfo) applyOne(res map[string]any, op Operation) error {
	switch strings.ToLower(op.Op) {
	case "add", "replace", "remove":
	default:
		return patchErr("invalidValue", "unknown op %q", truncate(op.Op, 32))
	}
	kind := strings.ToLower(op.Op)
	if op.Path == nil {
		if kind == "remove" {
			return patchErr("noTarget", "remove needs a path")
		}
		m, ok := op.Value.(map[string]any)
		if !ok {
			return patchErr("invalidValue", "a path-less %s needs an object value", kind)
		}
		return si.applyPathless(res, kind, m, "")
	}
	return si.applyPath(res, kind, *op.Path, op.Value, true)
}

// applyPathless applies each key of a path-less value as its own path.
// uri is set when m is an extension object.
func (si *schemaInfo) applyPathless(res map[string]any, kind string, m map[string]any, uri string) error {
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch {
		case strings.EqualFold(k, "id"), strings.EqualFold(k, "schemas"), strings.EqualFold(k, "meta"):
			continue
		case uri == "" && strings.EqualFold(k, si.core.ID):
			sub, ok := v.(map[string]any)
			if !ok {
				return patchErr("invalidValue", "the value of %s must be an object", si.core.ID)
			}
			if err := si.applyPathless(res, kind, sub, ""); err != nil {
				return err
			}
			continue
		case uri == "":
			if ext, ok := si.extension(k); ok {
				sub, ok := v.(map[string]any)
				if !ok {
					return patchErr("invalidValue", "the value of %s must be an object", ext.ID)
				}
				if err := si.applyPathless(res, kind, sub, ext.ID); err != nil {
					return err
				}
				continue
			}
		}
		raw := k
		if uri != "" {
			raw = uri + ":" + k
		}
		p, err := filter.ParsePath([]byte(raw))
		if err != nil {
			return patchErr("invalidPath", "cannot parse attribute path %q", truncate(k, 64))
		}
		if err := si.applyPath(res, kind, p, v, false); err != nil {
			return err
		}
	}
	return nil
}

// target resolves the map holding the attribute (creating an extension
// object when create is set) and the attribute's canonical name.
func (si *schemaInfo) target(res map[string]any, p filter.AttributePath, create bool) (map[string]any, string, schema.CoreAttribute, error) {
	attr, ok := si.attribute(p)
	if !ok {
		return nil, "", attr, patchErr("invalidPath", "unknown attribute %q", truncate(p.String(), 128))
	}
	c := res
	if uri := p.URI(); uri != "" && !strings.EqualFold(uri, si.core.ID) {
		ext, _ := si.extension(uri)
		key, v := findKey(res, ext.ID)
		m, ok := v.(map[string]any)
		if !ok {
			if !create {
				return nil, attr.Name(), attr, nil
			}
			m = map[string]any{}
			if key == "" {
				key = ext.ID
			}
			res[key] = m
		}
		c = m
	}
	return c, attr.Name(), attr, nil
}

// findKey returns the key spelled in m that equals name case-insensitively.
func findKey(m map[string]any, name string) (string, any) {
	if v, ok := m[name]; ok {
		return name, v
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return k, v
		}
	}
	return "", nil
}

// setKey replaces name (in whatever case it is stored) with the canonical key.
func setKey(m map[string]any, name string, v any) {
	if k, _ := findKey(m, name); k != "" && k != name {
		delete(m, k)
	}
	m[name] = v
}

// setList sets a multi-valued attribute, or removes it once it is empty
// (RFC 7644 §3.5.2.2: removing the last value unassigns the attribute).
func setList(m map[string]any, name string, list []any) {
	if len(list) == 0 {
		delKey(m, name)
		return
	}
	setKey(m, name, list)
}

func delKey(m map[string]any, name string) {
	for k := range m {
		if strings.EqualFold(k, name) {
			delete(m, k)
		}
	}
}

// applyPath applies one operation at p. explicit is set when p is the
// operation's "path" (not a key of a path-less value).
func (si *schemaInfo) applyPath(res map[string]any, kind string, p filter.Path, value any, explicit bool) error {
	c, name, attr, err := si.target(res, p.AttributePath, kind != "remove")
	if err != nil {
		return err
	}
	if c == nil { // removing from an extension object that is not there
		return nil
	}
	// name.givenName style: a sub-attribute in the attribute path.
	sub := p.AttributePath.SubAttributeName()
	if p.ValueExpression == nil && sub == "" && p.SubAttributeName() != "" {
		sub = p.SubAttributeName()
	}
	if sub != "" {
		sa, ok := subAttribute(attr, sub)
		if !ok {
			return patchErr("invalidPath", "unknown sub-attribute %q of %s", truncate(sub, 64), name)
		}
		sub = sa.Name()
	}
	if p.ValueExpression != nil {
		if !attr.MultiValued() {
			return patchErr("invalidPath", "%s is not multi-valued", name)
		}
		return si.applyFiltered(c, kind, name, p.ValueExpression, p.SubAttributeName(), attr, value, explicit)
	}
	_, cur := findKey(c, name)
	if sub != "" {
		return applySub(c, kind, name, sub, attr, cur, value)
	}
	switch kind {
	case "remove":
		if value != nil && attr.MultiValued() {
			list, _ := cur.([]any)
			rm := asList(value)
			kept := make([]any, 0, len(list))
			for _, el := range list {
				if !containsValue(rm, el) {
					kept = append(kept, el)
				}
			}
			setList(c, name, kept)
			return nil
		}
		delKey(c, name)
		return nil
	case "add":
		if attr.MultiValued() {
			list, _ := cur.([]any)
			for _, v := range asList(value) {
				if !containsValue(list, v) {
					list = append(list, v)
				}
			}
			setKey(c, name, list)
			return nil
		}
		fallthrough
	default: // replace, and add of a single value
		if attr.MultiValued() {
			setKey(c, name, asList(value))
			return nil
		}
		if m, ok := value.(map[string]any); ok && attr.AttributeType() == "complex" {
			old, _ := cur.(map[string]any)
			if old == nil {
				old = map[string]any{}
			}
			for k, v := range m {
				if sa, ok := subAttribute(attr, k); ok {
					setKey(old, sa.Name(), v)
				}
			}
			setKey(c, name, old)
			return nil
		}
		setKey(c, name, value)
		return nil
	}
}

// applySub handles attr.sub on a complex attribute (name.givenName) or on
// every element of a multi-valued one (emails.value).
func applySub(c map[string]any, kind, name, sub string, attr schema.CoreAttribute, cur, value any) error {
	if attr.MultiValued() {
		list, _ := cur.([]any)
		if len(list) == 0 {
			if kind != "remove" {
				setKey(c, name, []any{map[string]any{sub: value}})
			}
			return nil
		}
		for _, el := range list {
			if m, ok := el.(map[string]any); ok {
				if kind == "remove" {
					delKey(m, sub)
				} else {
					setKey(m, sub, value)
				}
			}
		}
		return nil
	}
	m, _ := cur.(map[string]any)
	if kind == "remove" {
		if m != nil {
			delKey(m, sub)
			if len(m) == 0 {
				delKey(c, name)
			}
		}
		return nil
	}
	if m == nil {
		m = map[string]any{}
	}
	setKey(m, sub, value)
	setKey(c, name, m)
	return nil
}

// applyFiltered handles attr[filter] and attr[filter].sub.
// A replace whose "path" value filter matches nothing is a noTarget error
// (RFC 7644 §3.5.2.3); an add creates the element the filter describes.
func (si *schemaInfo) applyFiltered(c map[string]any, kind, name string, expr filter.Expression, sub string, attr schema.CoreAttribute, value any, explicit bool) error {
	if sub != "" {
		sa, ok := subAttribute(attr, sub)
		if !ok {
			return patchErr("invalidPath", "unknown sub-attribute %q of %s", truncate(sub, 64), name)
		}
		sub = sa.Name()
	}
	_, cur := findKey(c, name)
	list, _ := cur.([]any)
	matched := 0
	kept := make([]any, 0, len(list))
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok || !Match(expr, m) {
			kept = append(kept, el)
			continue
		}
		matched++
		switch {
		case kind == "remove" && sub == "":
			continue // drop the element
		case kind == "remove":
			delKey(m, sub)
			if _, has := lookup(m, "value"); !has && !hasOtherThan(m, expr) {
				continue // nothing left but the selector
			}
		case sub != "":
			setKey(m, sub, value)
		default:
			if vm, ok := value.(map[string]any); ok {
				for k, v := range vm {
					if sa, ok := subAttribute(attr, k); ok {
						setKey(m, sa.Name(), v)
					}
				}
			} else {
				return patchErr("invalidValue", "the value for %s[...] must be an object", name)
			}
		}
		kept = append(kept, m)
	}
	if matched == 0 && kind == "replace" && explicit {
		return patchErr("noTarget", "no value of %s matches the path's filter", name)
	}
	if matched == 0 && kind != "remove" {
		// Entra sends Add emails[type eq "work"].value (or that key in a
		// path-less value) for a user with no work e-mail yet: create the
		// element the filter describes.
		el := equalities(expr, attr)
		if sub != "" {
			el[sub] = value
		} else if vm, ok := value.(map[string]any); ok {
			for k, v := range vm {
				if sa, ok := subAttribute(attr, k); ok {
					el[sa.Name()] = v
				}
			}
		} else {
			return patchErr("invalidValue", "the value for %s[...] must be an object", name)
		}
		kept = append(kept, el)
	}
	setList(c, name, kept)
	return nil
}

// hasOtherThan reports whether m holds attributes besides those the
// selector's equalities name.
func hasOtherThan(m map[string]any, expr filter.Expression) bool {
	sel := map[string]bool{}
	collectEqualities(expr, func(k string, _ any) { sel[strings.ToLower(k)] = true })
	for k := range m {
		if !sel[strings.ToLower(k)] {
			return true
		}
	}
	return false
}

// equalities builds an element from the filter's attr eq "literal" terms
// joined by and.
func equalities(expr filter.Expression, attr schema.CoreAttribute) map[string]any {
	out := map[string]any{}
	collectEqualities(expr, func(k string, v any) {
		if sa, ok := subAttribute(attr, k); ok {
			k = sa.Name()
		}
		out[k] = v
	})
	return out
}

func collectEqualities(expr filter.Expression, f func(string, any)) {
	switch e := expr.(type) {
	case *filter.LogicalExpression:
		if e.Operator == filter.AND {
			collectEqualities(e.Left, f)
			collectEqualities(e.Right, f)
		}
	case *filter.AttributeExpression:
		if e.Operator == filter.EQ && e.AttributePath.SubAttribute == nil && e.AttributePath.URIPrefix == nil {
			f(e.AttributePath.AttributeName, e.CompareValue)
		}
	}
}

func asList(v any) []any {
	switch v := v.(type) {
	case nil:
		return []any{}
	case []any:
		return v
	}
	return []any{v}
}

// containsValue reports whether list holds an element equal to v: complex
// values are compared by their "value" sub-attribute when both have one
// (so {"value":"id","display":"x"} matches {"value":"id"}).
func containsValue(list []any, v any) bool {
	for _, el := range list {
		if sameValue(el, v) {
			return true
		}
	}
	return false
}

func sameValue(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		av, ah := lookup(am, "value")
		bv, bh := lookup(bm, "value")
		if ah && bh {
			return fmt.Sprint(av) == fmt.Sprint(bv)
		}
	}
	return reflect.DeepEqual(a, b)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Deterministic order: extension objects and plain names first, so a
	// later filtered path refines what an earlier plain one set.
	slices.Sort(keys)
	return keys
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
