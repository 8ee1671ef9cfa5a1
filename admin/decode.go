package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// Body limits. JSON bodies are small documents; import files may hold a
// large token inventory.
const (
	MaxJSONBody   = 1 << 20
	MaxImportBody = 64 << 20
	// MaxRolloutBody bounds a rollout plan request, whose explicit user
	// list may name appliance.MaxRolloutUsers users of up to 256 bytes
	// each (sent as plain UTF-8).
	MaxRolloutBody = 8 << 20
)

// decodeJSON reads exactly one JSON value into dst, then checks it with its
// validate method if it has one. It is used instead of
// gin's binder because the binder accepts unknown fields and any media type,
// and does not tell a syntax error from a type error.
func decodeJSON(c *gin.Context, dst any) error {
	return decodeJSONLimit(c, dst, MaxJSONBody)
}

// decodeJSONLimit is decodeJSON for a body of at most limit bytes.
func decodeJSONLimit(c *gin.Context, dst any, limit int64) error {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		return reqErr(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"the body must be application/json")
	}
	if c.Request.ContentLength > limit {
		return &http.MaxBytesError{Limit: limit}
	}
	// The body is read whole (it is at most limit) so checkKeys can look
	// at the keys encoding/json would silently merge or fold.
	raw, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		return jsonError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	// A second value or trailing garbage means the client sent something
	// other than what it thinks it sent.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return reqErr(http.StatusBadRequest, CodeMalformedJSON, "the body must hold exactly one JSON value")
	}
	if err := checkKeys(raw, dst); err != nil {
		return err
	}
	// Requests with rules beyond their shape check them here, so no
	// handler can forget to.
	if v, ok := dst.(interface{ validate() error }); ok {
		return v.validate()
	}
	return nil
}

// jsonError classifies a decoding error. Details quote only field names and
// offsets, never the values sent.
func jsonError(err error) error {
	var (
		syn *json.SyntaxError
		ute *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.Is(err, io.EOF):
		return reqErr(http.StatusBadRequest, CodeMalformedJSON, "the body is empty")
	case errors.As(err, &syn):
		return reqErr(http.StatusBadRequest, CodeMalformedJSON, fmt.Sprintf("syntax error at byte %d", syn.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return reqErr(http.StatusBadRequest, CodeMalformedJSON, "the body ends in the middle of a JSON value")
	case errors.As(err, &ute):
		field := ute.Field
		if field == "" {
			return reqErr(http.StatusBadRequest, CodeMalformedJSON, "the body must be a JSON object")
		}
		return invalid(field, "must be "+jsonTypeName(ute.Type.Kind().String()))
	}
	// encoding/json reports unknown fields only as text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		p := NewProblem(http.StatusBadRequest, CodeUnknownField, "unknown field "+name)
		p.Errors = []FieldProblem{{strings.Trim(name, `"`), "unknown field"}}
		return &requestError{p}
	}
	return reqErr(http.StatusBadRequest, CodeMalformedJSON, "the body is not valid JSON")
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "of another type"
}

// queryInt parses an optional non-negative integer query parameter.
func queryInt(c *gin.Context, name string) (int, error) {
	v := c.Query(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, invalid(name, "must be a non-negative integer")
	}
	return n, nil
}

// queryBool parses an optional boolean query parameter; nil when absent.
func queryBool(c *gin.Context, name string) (*bool, error) {
	v := c.Query(name)
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, invalid(name, "must be true or false")
	}
	return &b, nil
}

// serialParam returns the {serial} path parameter after checking its shape,
// so that a typo is a 400 rather than a confusing 404.
func serialParam(c *gin.Context) (string, error) {
	s := c.Param("serial")
	if len(s) != 12 || strings.Trim(s, "0123456789") != "" {
		return "", invalid("serial", "must be 12 digits")
	}
	return s, nil
}

// writeJSON encodes v without HTML escaping: device links hold '&', and
// these documents are never embedded in HTML.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// jsonRender writes v as application/json.
type jsonRender struct{ v any }

func (r jsonRender) Render(w http.ResponseWriter) error {
	r.WriteContentType(w)
	return writeJSON(w, r.v)
}

func (r jsonRender) WriteContentType(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
}

func render(c *gin.Context, status int, v any) { c.Render(status, jsonRender{v}) }
