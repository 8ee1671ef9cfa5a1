package main

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// configOrigins says where each configuration key got its value: "FILE:LINE"
// for the config file, "--flag" or "TOKEND_VAR" for the layers that override
// it. Keys are dotted YAML paths ("auth.max_failures"); keys left at their
// defaults are absent.
type configOrigins map[string]string

// fileLines records the line of every key with a value (not a section) in
// a YAML document. It is best effort: a document that does not parse adds
// nothing, and the decoder reports why.
func (o configOrigins) fileLines(data []byte, name string) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return
	}
	var walk func(n *yaml.Node, prefix string, depth int)
	walk = func(n *yaml.Node, prefix string, depth int) {
		if n.Kind != yaml.MappingNode || depth > 4 {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := prefix + k.Value
			if v.Kind == yaml.MappingNode {
				walk(v, path+".", depth+1)
				continue
			}
			if v.Tag == "!!null" {
				continue // a null leaves the default in place
			}
			o[path] = fmt.Sprintf("%s:%d", name, k.Line)
		}
	}
	walk(doc.Content[0], "", 0)
}

// flagKey returns the key an override flag sets: the YAML path of the
// Config field that Config.field gives for it, so a new flag needs no entry
// here.
func flagKey(flag string) (string, bool) {
	var c Config
	target := reflect.ValueOf(c.field(flag)).Pointer()
	var find func(v reflect.Value, prefix string) (string, bool)
	find = func(v reflect.Value, prefix string) (string, bool) {
		for i := range v.NumField() {
			f, sf := v.Field(i), v.Type().Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			if f.Kind() == reflect.Struct && f.Type() != reflect.TypeFor[time.Time]() {
				if k, ok := find(f, prefix+name+"."); ok {
					return k, true
				}
				continue
			}
			if f.Addr().Pointer() == target {
				return prefix + name, true
			}
		}
		return "", false
	}
	return find(reflect.ValueOf(&c).Elem(), "")
}

// setFlag records that the key of flag was set by origin (a later layer
// wins).
func (o configOrigins) setFlag(flag, origin string) {
	if key, ok := flagKey(flag); ok {
		o[key] = origin
	}
}

// keyToken finds the dotted key names a validation problem mentions; the
// problem starts with the key it is about.
var keyToken = regexp.MustCompile(`[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*`)

// locate prefixes each validation problem with where its key was set:
// "tokend.yaml:12: auth.max_failures -1: must be positive", or
// "--admin-listen: …" / "TOKEND_LOG_FORMAT: …". A problem about a key left
// at its default is located by the first other key it names that was set
// ("auth.large_window 10: must be between auth.small_window (20) …" points
// at auth.small_window).
func (o configOrigins) locate(problems []string) []string {
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = p
		for _, key := range keyToken.FindAllString(p, -1) {
			if where, ok := o[key]; ok {
				out[i] = where + ": " + p
				break
			}
		}
	}
	return out
}
