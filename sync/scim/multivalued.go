package scim

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/elimity-com/scim/schema"
)

// Multi-valued attributes (RFC 7643 §2.4): at most one value per attribute
// has primary true, and no (type, value) pair appears twice.

// multiAttrs yields the map holding each multi-valued complex attribute of
// the schema and its canonical name, for those present in res.
func (si *schemaInfo) multiAttrs(res map[string]any, f func(c map[string]any, name string)) {
	visit := func(c map[string]any, attrs []schema.CoreAttribute) {
		for _, a := range attrs {
			if !a.MultiValued() || a.AttributeType() != "complex" {
				continue
			}
			if k, _ := findKey(c, a.Name()); k != "" {
				f(c, k)
			}
		}
	}
	visit(res, si.core.Attributes)
	for _, ext := range si.exts {
		_, v := findKey(res, ext.ID)
		if m, ok := v.(map[string]any); ok {
			visit(m, ext.Attributes)
		}
	}
}

// elementKey identifies a value of a multi-valued attribute: its type and
// value, or the whole element when it has no value (addresses).
func elementKey(el any) string {
	m, ok := el.(map[string]any)
	if !ok {
		b, _ := json.Marshal(el)
		return "\x01" + string(b)
	}
	v, hasValue := lookup(m, "value")
	if !hasValue {
		b, _ := json.Marshal(m)
		return "\x01" + string(b)
	}
	t, _ := lookup(m, "type")
	ts, _ := t.(string)
	return strings.ToLower(ts) + "\x00" + fmt.Sprint(v)
}

func isPrimary(el any) bool {
	m, ok := el.(map[string]any)
	if !ok {
		return false
	}
	_, v := findKey(m, "primary")
	b, _ := toBool(v)
	return b
}

// primaries returns, per attribute, the keys of its primary values.
func (si *schemaInfo) primaries(res map[string]any) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	si.multiAttrs(res, func(c map[string]any, name string) {
		list, _ := c[name].([]any)
		for _, el := range list {
			if isPrimary(el) {
				if out[strings.ToLower(name)] == nil {
					out[strings.ToLower(name)] = map[string]bool{}
				}
				out[strings.ToLower(name)][elementKey(el)] = true
			}
		}
	})
	return out
}

// normalizeMulti drops duplicate values of every multi-valued attribute of
// res (a dropped primary duplicate passes primary to the value kept) and
// keeps one primary per attribute. before holds the primaries before this
// write (nil for a create or replace of the whole resource): a value that
// was primary already yields to one newly made primary; two new primaries
// in one write are an invalidValue error.
func (si *schemaInfo) normalizeMulti(res map[string]any, before map[string]map[string]bool) error {
	var err error
	si.multiAttrs(res, func(c map[string]any, name string) {
		if err != nil {
			return
		}
		list, ok := c[name].([]any)
		if !ok {
			return
		}
		kept := make([]any, 0, len(list))
		at := map[string]int{}
		for _, el := range list {
			k := elementKey(el)
			if i, dup := at[k]; dup {
				if isPrimary(el) && !isPrimary(kept[i]) {
					if m, ok := kept[i].(map[string]any); ok {
						setKey(m, "primary", true)
					}
				}
				continue
			}
			at[k] = len(kept)
			kept = append(kept, el)
		}
		old := before[strings.ToLower(name)]
		var fresh, stale []map[string]any
		for _, el := range kept {
			if !isPrimary(el) {
				continue
			}
			m := el.(map[string]any)
			if old[elementKey(el)] {
				stale = append(stale, m)
			} else {
				fresh = append(fresh, m)
			}
		}
		switch {
		case len(fresh) > 1:
			err = patchErr("invalidValue", "at most one value of %s may be primary", name)
			return
		case len(fresh) == 1:
			for _, m := range stale {
				setKey(m, "primary", false)
			}
		case len(stale) > 1: // stored before this rule: keep the first
			for _, m := range stale[1:] {
				setKey(m, "primary", false)
			}
		}
		c[name] = kept
	})
	return err
}
