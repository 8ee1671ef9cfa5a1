package admin

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// encoding/json keeps the last of duplicate keys and matches field names
// case-insensitively, so {"role":"auditor","role":"superadmin"} or
// {"Role": …} reach a handler as something other than what a reviewer or
// a proxy in front of tokend reads. checkKeys refuses both, at any depth,
// after the body has decoded (so it is known to be valid JSON).

// keySchema is what the check knows of one Go type: the exact JSON names
// of a struct's fields (with the schema of their values), or the schema of
// a slice's elements or a map's values. nil accepts any keys once.
type keySchema struct {
	fields map[string]*keySchema // struct fields by exact JSON name
	names  []string              // the same names, for the case-insensitive look
	elem   *keySchema            // slice, array or map values
}

var keySchemas sync.Map // reflect.Type → *keySchema

// schemaOf returns the cached schema of t.
func schemaOf(t reflect.Type) *keySchema {
	if s, ok := keySchemas.Load(t); ok {
		return s.(*keySchema)
	}
	s := buildSchema(t, map[reflect.Type]*keySchema{})
	keySchemas.Store(t, s)
	return s
}

func buildSchema(t reflect.Type, building map[reflect.Type]*keySchema) *keySchema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := building[t]; ok {
		return s
	}
	if t.Implements(reflect.TypeFor[json.Unmarshaler]()) || reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return nil
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		s := &keySchema{}
		building[t] = s
		s.elem = buildSchema(t.Elem(), building)
		return s
	case reflect.Struct:
		s := &keySchema{fields: map[string]*keySchema{}}
		building[t] = s
		addFields(s, t, building)
		return s
	}
	return nil
}

// addFields adds t's fields to s as encoding/json names them, flattening
// untagged embedded structs.
func addFields(s *keySchema, t reflect.Type, building map[reflect.Type]*keySchema) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(s, ft, building)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		s.fields[name] = buildSchema(f.Type, building)
		s.names = append(s.names, name)
	}
}

// keyError is a key the check refuses; path is filled in while unwinding.
type keyError struct {
	path   []string // outermost last
	reason string
}

// checkKeys walks the valid JSON document b against the schema of dst's
// type and refuses the first duplicate key or field name that matches a
// field only case-insensitively, as invalid_request naming the key.
func checkKeys(b []byte, dst any) error {
	sc := keyScanner{b: b}
	ke := sc.value(schemaOf(reflect.TypeOf(dst)))
	if ke == nil {
		return nil
	}
	parts := make([]string, 0, len(ke.path))
	for i := len(ke.path) - 1; i >= 0; i-- {
		parts = append(parts, ke.path[i])
	}
	return invalid(strings.Join(parts, "."), ke.reason)
}

// keyScanner reads a document that encoding/json has already accepted, so
// it only tells strings, objects, arrays and literals apart.
type keyScanner struct {
	b []byte
	i int
}

func (k *keyScanner) ws() {
	for k.i < len(k.b) {
		switch k.b[k.i] {
		case ' ', '\t', '\r', '\n':
			k.i++
		default:
			return
		}
	}
}

func (k *keyScanner) value(s *keySchema) *keyError {
	k.ws()
	if k.i >= len(k.b) {
		return nil
	}
	switch k.b[k.i] {
	case '{':
		return k.object(s)
	case '[':
		k.i++
		var elem *keySchema
		if s != nil {
			elem = s.elem
		}
		for {
			k.ws()
			if k.i >= len(k.b) || k.b[k.i] == ']' {
				k.i++
				return nil
			}
			if err := k.value(elem); err != nil {
				return err
			}
			k.ws()
			if k.i < len(k.b) && k.b[k.i] == ',' {
				k.i++
			}
		}
	case '"':
		k.str()
	default:
		for k.i < len(k.b) {
			switch k.b[k.i] {
			case ',', ']', '}', ' ', '\t', '\r', '\n':
				return nil
			}
			k.i++
		}
	}
	return nil
}

// str consumes a string and returns its raw bytes between the quotes and
// whether it holds an escape.
func (k *keyScanner) str() (raw []byte, escaped bool) {
	k.i++ // opening quote
	start := k.i
	// Most strings hold no escape: find the closing quote at memchr speed.
	if q := bytes.IndexByte(k.b[start:], '"'); q >= 0 && bytes.IndexByte(k.b[start:start+q], '\\') < 0 {
		k.i = start + q + 1
		return k.b[start : start+q], false
	}
	for k.i < len(k.b) {
		switch k.b[k.i] {
		case '\\':
			escaped = true
			k.i += 2
			continue
		case '"':
			raw = k.b[start:k.i]
			k.i++
			return raw, escaped
		}
		k.i++
	}
	return k.b[start:], escaped
}

func (k *keyScanner) object(s *keySchema) *keyError {
	k.i++ // {
	// Request objects have a handful of keys: a linear look over slices of
	// the body beats a map and allocates nothing. A map-valued field may
	// hold thousands of keys, so past len(buf) a set takes over and the
	// check stays linear in the body.
	var buf [16][]byte
	seen := buf[:0]
	var many map[string]struct{}
	for {
		k.ws()
		if k.i >= len(k.b) || k.b[k.i] == '}' {
			k.i++
			return nil
		}
		key, escaped := k.str()
		if escaped {
			// Compare what encoding/json compared: the unescaped key.
			var u string
			if err := json.Unmarshal(k.b[k.i-len(key)-2:k.i], &u); err == nil {
				key = []byte(u)
			}
		}
		dup := false
		switch {
		case many != nil:
			_, dup = many[string(key)]
			many[string(key)] = struct{}{}
		case len(seen) == len(buf):
			many = make(map[string]struct{}, 2*len(buf))
			for _, prev := range seen {
				many[string(prev)] = struct{}{}
			}
			_, dup = many[string(key)]
			many[string(key)] = struct{}{}
		default:
			for _, prev := range seen {
				if bytes.Equal(prev, key) {
					dup = true
					break
				}
			}
			seen = append(seen, key)
		}
		if dup {
			return &keyError{path: []string{quoteKey(string(key))}, reason: "duplicate key"}
		}
		var child *keySchema
		if s != nil {
			switch {
			case s.fields != nil:
				f, ok := s.fields[string(key)]
				if !ok {
					for _, name := range s.names {
						if bytes.EqualFold([]byte(name), key) {
							return &keyError{path: []string{quoteKey(string(key))},
								reason: "unknown field; field names are case-sensitive: did you mean " + strconv.Quote(name) + "?"}
						}
					}
				}
				child = f
			default:
				child = s.elem
			}
		}
		k.ws()
		k.i++ // :
		if err := k.value(child); err != nil {
			err.path = append(err.path, quoteKey(string(key)))
			return err
		}
		k.ws()
		if k.i < len(k.b) && k.b[k.i] == ',' {
			k.i++
		}
	}
}

// quoteKey keeps a refused key readable and bounded in a problem detail:
// a plain name as it is, anything else quoted.
func quoteKey(key string) string {
	const maxLen = 64
	cut := len(key) > maxLen
	if cut {
		key = key[:maxLen]
	}
	plain := key != "" && !strings.ContainsFunc(key, func(r rune) bool {
		return !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
	if !plain {
		key = strconv.Quote(key)
	}
	if cut {
		key += "…"
	}
	return key
}
