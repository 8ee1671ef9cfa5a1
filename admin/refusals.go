package admin

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// The audit rule for refusals (appliance/refusals.go): every refused admin
// action on a write route is an audit record with the refusal's status and
// problem code, at most once a minute per actor and action. Refusals the
// Service decides (a missing object, a state rule, most validation) it
// records itself; auditRefusals records the rest: bodies that do not
// parse, unknown fields, a role that may not call the route, checks the
// handler makes before the Service is called.

// problemCodeKey is where writeProblem leaves the code it answered with.
const problemCodeKey = "tokend.problem_code"

// auditRefusals runs after Authenticate on every write route. Reads are
// not actions; 401 has no actor (anyone can send one, like a sign-in
// failure it is counted, not audited); 408 and 429 refuse for capacity,
// not by a rule; 5xx are faults, logged as such.
func (s *Server) auditRefusals(c *gin.Context) {
	ctx, handled := appliance.WithRefusalNote(c.Request.Context())
	c.Request = c.Request.WithContext(ctx)
	c.Next()
	st := c.Writer.Status()
	if st < 400 || st >= 500 || st == http.StatusUnauthorized || st == http.StatusRequestTimeout ||
		st == http.StatusTooManyRequests || handled() {
		return
	}
	if _, ok := ActorOf(c); !ok {
		return
	}
	code := c.GetString(problemCodeKey)
	if code == "" {
		code = fmt.Sprintf("http_%d", st)
	}
	ev := appliance.AuditEvent{Action: "api.refused", Target: c.Request.Method + " " + routeOf(c), Reason: code,
		Detail: fmt.Sprintf("status %d", st)}
	// Path parameters are the client's text: only well-formed ones are
	// kept, each bounded, so a record never carries what a flood sent.
	for _, p := range c.Params {
		v, ok := auditParam(p.Value)
		ev.Detail += "; " + p.Key + "=" + v
		if ok && p.Key == "serial" {
			ev.Serial = v
		}
		if ok && p.Key == "id" && strings.HasPrefix(routeOf(c), APIPrefix+"/users/") {
			ev.UserID = v
		}
	}
	if err := s.svc.AuditRefusal(c.Request.Context(), ev); err != nil {
		s.log.ErrorContext(c.Request.Context(), "audit of a refused request failed", "route", routeOf(c), "err", err)
	}
}

// maxAuditParam bounds a path parameter kept in an audit record: serials,
// UUIDs, profile and admin names fit.
const maxAuditParam = 64

// auditParam returns v when it is short and made of characters ids,
// serials and names use; otherwise a fixed placeholder.
func auditParam(v string) (string, bool) {
	if v == "" || len(v) > maxAuditParam {
		return "(malformed)", false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.@", r)) {
			return "(malformed)", false
		}
	}
	return v, true
}

// isWrite reports whether a route changes something (the authentication
// API is not an admin action: its outcomes are audited as decisions).
func isWrite(method, path string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return path != "/authenticate"
}
