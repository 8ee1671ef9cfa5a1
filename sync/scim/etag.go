package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// ETags (RFC 7644 §3.14). Every resource carries a weak ETag (meta.version
// and the ETag header). PUT, PATCH and DELETE with an If-Match that names
// no current version answer 412; the check runs inside the changing
// transaction, so a concurrent write cannot slip between the check and
// the change. GET with an If-None-Match naming the current
// version answers 304.

// errPreconditionFailed is an If-Match that does not match.
var errPreconditionFailed = errors.New("scim: If-Match does not match the current version")

// opaque strips the weakness prefix: SCIM clients send back the W/"…" they
// got, or just "…"; both name the same version.
func opaque(tag string) string {
	tag = strings.TrimSpace(tag)
	if len(tag) > 2 && (tag[:2] == "W/" || tag[:2] == "w/") {
		tag = tag[2:]
	}
	return tag
}

// etagListMatches reports whether a comma-separated If-Match or
// If-None-Match list names current ("*" names any).
func etagListMatches(list, current string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || (t != "" && opaque(t) == opaque(current)) {
			return true
		}
	}
	return false
}

// checkIfMatch fails with errPreconditionFailed when the request has an
// If-Match that does not name current. Pure: it runs inside transactions.
func checkIfMatch(r *http.Request, current string) error {
	v := r.Header.Values("If-Match")
	if len(v) == 0 {
		return nil
	}
	if etagListMatches(strings.Join(v, ","), current) {
		return nil
	}
	return errPreconditionFailed
}

// bufferedWriter holds a response so ServeHTTP can turn it into a 304 or
// amend it before it goes out.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newBufferedWriter() *bufferedWriter { return &bufferedWriter{header: http.Header{}} }

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// flush sends the held response to w.
func (b *bufferedWriter) flush(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}

// serveConditionalGet serves a GET of one resource, answering 304 Not
// Modified when If-None-Match names its current version.
func (h *Handler) serveConditionalGet(lib http.Handler, w http.ResponseWriter, r *http.Request) {
	bw := newBufferedWriter()
	lib.ServeHTTP(bw, r)
	if tag := bw.header.Get("Etag"); bw.status == http.StatusOK && tag != "" &&
		etagListMatches(strings.Join(r.Header.Values("If-None-Match"), ","), tag) {
		w.Header().Set("ETag", tag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	bw.flush(w)
}

// serveConfig serves the ServiceProviderConfig with what this endpoint
// supports beyond the library's fixed answer: ETags and sorting.
func (h *Handler) serveConfig(lib http.Handler, w http.ResponseWriter, r *http.Request) {
	bw := newBufferedWriter()
	lib.ServeHTTP(bw, r)
	var doc map[string]any
	if bw.status != http.StatusOK || json.Unmarshal(bw.body.Bytes(), &doc) != nil {
		bw.flush(w)
		return
	}
	doc["etag"] = map[string]bool{"supported": true}
	doc["sort"] = map[string]bool{"supported": true}
	b, err := json.Marshal(doc)
	if err != nil {
		bw.flush(w)
		return
	}
	bw.body.Reset()
	bw.body.Write(b)
	bw.header.Del("Content-Length")
	bw.flush(w)
}
