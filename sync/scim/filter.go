package scim

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/scim2/filter-parser/v2"
	"golang.org/x/text/unicode/norm"
)

// Our own filter evaluator. The library's PassesFilter never matches a
// sub-attribute of a multi-valued attribute (emails.value co "x") and panics
// on a complex attribute without sub-attribute (emails co "x"); this one
// walks the parsed expression over the rendered resource map instead.
//
// Attribute names are case-insensitive. String comparisons are
// case-insensitive except for id and externalId (caseExact in RFC 7643).
// A multi-valued attribute matches when any of its values does; a complex
// value compared without a sub-attribute is compared by its "value".

// ParseFilter parses a SCIM filter, first rewriting the common non-RFC form
// attr[valFilter].sub op value (which pushers send and the grammar lacks)
// into attr[(valFilter) and sub op value].
func ParseFilter(s string) (filter.Expression, error) {
	e, err := filter.ParseFilter([]byte(RewriteFilter(s)))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFilter, err)
	}
	return e, nil
}

// ErrInvalidFilter wraps filter syntax errors.
var ErrInvalidFilter = errors.New("scim: invalid filter")

var subValuePath = regexp.MustCompile(`([A-Za-z][\w:.\-]*)\[([^\]]*)\]\.([A-Za-z][\w\-]*)\s+(?i:(pr)|(eq|ne|co|sw|ew|gt|ge|lt|le)\s+("(?:[^"\\]|\\.)*"|true|false|null|[\d.+\-eE]+))`)

// RewriteFilter turns attr[f].sub op v into attr[(f) and sub op v].
func RewriteFilter(s string) string {
	if !strings.Contains(s, "].") {
		return s
	}
	return subValuePath.ReplaceAllStringFunc(s, func(m string) string {
		g := subValuePath.FindStringSubmatch(m)
		cond := g[3] + " pr"
		if g[4] == "" {
			cond = g[3] + " " + g[5] + " " + g[6]
		}
		inner := g[2]
		if strings.Contains(strings.ToLower(inner), " or ") {
			inner = "(" + inner + ")"
		}
		return g[1] + "[" + inner + " and " + cond + "]"
	})
}

// Match reports whether the resource passes the expression. It never
// panics on well-typed input and treats unknown shapes as "no match".
func Match(e filter.Expression, res map[string]any) bool {
	switch e := e.(type) {
	case *filter.LogicalExpression:
		if e.Operator == filter.OR {
			return Match(e.Left, res) || Match(e.Right, res)
		}
		return Match(e.Left, res) && Match(e.Right, res)
	case *filter.NotExpression:
		return !Match(e.Expression, res)
	case *filter.ValuePath:
		for _, el := range valuesAt(res, e.AttributePath, false) {
			if m, ok := el.(map[string]any); ok && e.ValueFilter != nil && Match(e.ValueFilter, m) {
				return true
			}
		}
		return false
	case *filter.AttributeExpression:
		return matchAttr(e, res)
	}
	return false
}

// lookup finds a key case-insensitively.
func lookup(m map[string]any, name string) (any, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// container returns the map an attribute path addresses: the resource for
// core attributes, the extension object for an extension URN.
func container(res map[string]any, p filter.AttributePath) map[string]any {
	uri := p.URI()
	if uri == "" || isCoreURN(uri) {
		return res
	}
	v, _ := lookup(res, uri)
	m, _ := v.(map[string]any)
	return m
}

func isCoreURN(uri string) bool {
	return strings.EqualFold(uri, userSchemaURN) || strings.EqualFold(uri, groupSchemaURN)
}

// valuesAt flattens the values an attribute path addresses. With
// complexValue, a complex value without sub-attribute yields its "value".
func valuesAt(res map[string]any, p filter.AttributePath, complexValue bool) []any {
	c := container(res, p)
	if c == nil {
		return nil
	}
	v, ok := lookup(c, p.AttributeName)
	if !ok || v == nil {
		return nil
	}
	var list []any
	if l, ok := v.([]any); ok {
		list = l
	} else {
		list = []any{v}
	}
	sub := p.SubAttributeName()
	out := make([]any, 0, len(list))
	for _, el := range list {
		m, isMap := el.(map[string]any)
		switch {
		case sub != "" && isMap:
			if sv, ok := lookup(m, sub); ok && sv != nil {
				out = append(out, sv)
			}
		case sub != "":
		case isMap && complexValue:
			if sv, ok := lookup(m, "value"); ok && sv != nil {
				out = append(out, sv)
			}
		default:
			out = append(out, el)
		}
	}
	return out
}

func caseExact(p filter.AttributePath) bool {
	return p.SubAttributeName() == "" && (strings.EqualFold(p.AttributeName, "id") || strings.EqualFold(p.AttributeName, "externalId"))
}

func matchAttr(e *filter.AttributeExpression, res map[string]any) bool {
	vals := valuesAt(res, e.AttributePath, true)
	if e.Operator == filter.PR {
		for _, v := range vals {
			if present(v) {
				return true
			}
		}
		return false
	}
	if e.Operator == filter.NE {
		// ne: no value equals (an absent attribute is "not equal").
		for _, v := range vals {
			if compare(filter.EQ, v, e.CompareValue, caseExact(e.AttributePath)) {
				return false
			}
		}
		return true
	}
	for _, v := range vals {
		if compare(e.Operator, v, e.CompareValue, caseExact(e.AttributePath)) {
			return true
		}
	}
	return false
}

func present(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}

// compare applies op to an attribute value and a filter literal.
func compare(op filter.CompareOperator, v, ref any, exact bool) bool {
	switch r := ref.(type) {
	case nil:
		return op == filter.EQ && v == nil
	case bool:
		b, ok := toBool(v)
		return ok && op == filter.EQ && b == r
	case string:
		s, ok := toString(v)
		if !ok {
			return false
		}
		if op == filter.GT || op == filter.GE || op == filter.LT || op == filter.LE {
			if tv, err1 := time.Parse(time.RFC3339Nano, s); err1 == nil {
				if tr, err2 := time.Parse(time.RFC3339Nano, r); err2 == nil {
					return order(op, tv.Compare(tr))
				}
			}
		}
		if !exact {
			// Case-insensitive is also canonical-equivalence blind: the
			// appliance stores logins in NFC and a client may send NFD.
			s, r = norm.NFC.String(strings.ToLower(s)), norm.NFC.String(strings.ToLower(r))
		}
		switch op {
		case filter.EQ:
			return s == r
		case filter.CO:
			return strings.Contains(s, r)
		case filter.SW:
			return strings.HasPrefix(s, r)
		case filter.EW:
			return strings.HasSuffix(s, r)
		default:
			return order(op, strings.Compare(s, r))
		}
	default:
		rf, ok := toFloat(ref)
		if !ok {
			return false
		}
		f, ok := toFloat(v)
		if !ok {
			return false
		}
		switch op {
		case filter.EQ:
			return f == rf
		case filter.GT, filter.GE, filter.LT, filter.LE:
			c := 0
			if f < rf {
				c = -1
			} else if f > rf {
				c = 1
			}
			return order(op, c)
		}
		return false
	}
}

func order(op filter.CompareOperator, c int) bool {
	switch op {
	case filter.GT:
		return c > 0
	case filter.GE:
		return c >= 0
	case filter.LT:
		return c < 0
	case filter.LE:
		return c <= 0
	}
	return false
}

func toBool(v any) (bool, bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		b, err := strconv.ParseBool(v)
		return b, err == nil
	}
	return false, false
}

func toString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	}
	return "", false
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case float64:
		return v, true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(v, 64)
		return f, err == nil
	}
	return 0, false
}
