package admin

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// A query parameter an endpoint does not know is refused like an unknown
// body field: ?cursor= on /audit (which pages with ?after=) must not
// quietly answer page 1. The allowed names come from the operations'
// parameters in openapi.json, which TestOpenAPIMatchesRouter keeps in step
// with the router, so the check and the document cannot drift.

var openAPIPathParam = regexp.MustCompile(`\{([A-Za-z_]+)\}`)

// queryParamsOf returns, for every operation of an OpenAPI document, the
// names of its query parameters keyed by "METHOD /gin/path".
func queryParamsOf(doc string) (map[string][]string, error) {
	type param struct {
		Ref  string `json:"$ref"`
		Name string `json:"name"`
		In   string `json:"in"`
	}
	var d struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Parameters map[string]param `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	resolve := func(ps []param) ([]string, error) {
		var names []string
		for _, p := range ps {
			if p.Ref != "" {
				ref, ok := d.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
				if !ok {
					return nil, fmt.Errorf("openapi document: unresolved parameter %s", p.Ref)
				}
				p = ref
			}
			if p.In == "query" {
				names = append(names, p.Name)
			}
		}
		return names, nil
	}
	out := map[string][]string{}
	for path, item := range d.Paths {
		var common []string
		if raw, ok := item["parameters"]; ok {
			var ps []param
			if err := json.Unmarshal(raw, &ps); err != nil {
				return nil, fmt.Errorf("openapi document: %s parameters: %w", path, err)
			}
			var err error
			if common, err = resolve(ps); err != nil {
				return nil, err
			}
		}
		ginPath := openAPIPathParam.ReplaceAllString(path, ":$1")
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var op struct {
				Parameters []param `json:"parameters"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, fmt.Errorf("openapi document: %s %s: %w", method, path, err)
			}
			names, err := resolve(op.Parameters)
			if err != nil {
				return nil, err
			}
			names = append(names, common...)
			slices.Sort(names)
			out[strings.ToUpper(method)+" "+ginPath] = slices.Compact(names)
		}
	}
	return out, nil
}

// knownQuery refuses a request whose query string has a parameter not in
// allowed, or one parameter twice (only the first would be read), with 400
// invalid_request naming it.
func knownQuery(allowed []string) gin.HandlerFunc {
	takes := "takes no query parameters"
	if len(allowed) > 0 {
		takes = "takes only " + strings.Join(allowed, ", ")
	}
	return func(c *gin.Context) {
		if c.Request.URL.RawQuery == "" {
			c.Next()
			return
		}
		// Malformed pairs are dropped here as c.Query drops them.
		q := c.Request.URL.Query()
		var fps []FieldProblem
		for _, name := range slices.Sorted(maps.Keys(q)) {
			switch {
			case !slices.Contains(allowed, name):
				fps = append(fps, FieldProblem{quoteKey(name), "unknown query parameter: this endpoint " + takes})
			case len(q[name]) > 1:
				fps = append(fps, FieldProblem{name, "given more than once"})
			}
		}
		if err := invalidFields(fps...); err != nil {
			p, _ := problemFor(err)
			writeProblem(c, p)
			return
		}
		c.Next()
	}
}

// mustQueryParams is queryParamsOf for the embedded document, which tests
// prove well-formed.
func mustQueryParams() map[string][]string {
	m, err := queryParamsOf(openAPIDoc)
	if err != nil {
		panic(err)
	}
	return m
}
