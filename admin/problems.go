package admin

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// problemTypeBase prefixes every problem's code to form its type URI. The
// .invalid TLD (RFC 2606) guarantees it names the problem without pretending
// to be a page someone can fetch.
const problemTypeBase = "https://tokend.invalid/problems/"

// mediaProblem is the media type of every error response (RFC 9457).
const mediaProblem = "application/problem+json"

// Stable problem codes. Clients match on these: extend, never rename.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeMalformedJSON        = "malformed_json"
	CodeUnknownField         = "unknown_field"
	CodeBodyTooLarge         = "body_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeUnauthenticated      = "unauthenticated"
	CodeForbidden            = "forbidden"
	CodeAdminSecondFactor    = "admin_second_factor"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeExists               = "exists"
	CodeTokenLimit           = "token_limit"
	CodeConflict             = "conflict"
	CodeInvalidState         = "invalid_state"
	CodeImportFileRejected   = "import_file_rejected"
	CodeQRUnavailable        = "qr_unavailable"
	CodeNotReady             = "not_ready"
	CodeNotSupported         = "not_supported"
	CodeSyncBrake            = "sync_brake"
	CodeSyncFailed           = "sync_failed"
	CodeBusy                 = "busy"
	CodeLastSuperAdmin       = "last_superadmin"
	CodeOwnAdminAccount      = "own_admin_account"
	CodeSecondFactorRefused  = "second_factor_refused"
	CodeStoreUnavailable     = "store_unavailable"
	CodeInternal             = "internal"
)

var problemTitles = map[string]string{
	CodeInvalidRequest:       "The request is invalid",
	CodeMalformedJSON:        "The body is not valid JSON",
	CodeUnknownField:         "The body has an unknown field",
	CodeBodyTooLarge:         "The body is too large",
	CodeUnsupportedMediaType: "Unsupported media type",
	CodeUnauthenticated:      "Authentication required",
	CodeForbidden:            "Not allowed for this role",
	CodeAdminSecondFactor:    "The token is an admin's second factor: super admins only",
	CodeNotFound:             "Not found",
	CodeMethodNotAllowed:     "Method not allowed",
	CodeExists:               "Already exists",
	CodeTokenLimit:           "Token limit reached",
	CodeConflict:             "Conflict",
	CodeInvalidState:         "Invalid state",
	CodeImportFileRejected:   "Import file rejected",
	CodeQRUnavailable:        "QR code unavailable",
	CodeNotReady:             "Not ready",
	CodeNotSupported:         "Not supported",
	CodeSyncBrake:            "Sync refused by the mass-deactivation brake",
	CodeSyncFailed:           "Directory sync failed",
	CodeBusy:                 "Too many password or PIN checks in progress: retry shortly",
	CodeLastSuperAdmin:       "The last enabled superadmin account must stay",
	CodeOwnAdminAccount:      "An admin cannot disable or delete their own account",
	CodeSecondFactorRefused:  "The token cannot be this admin's second factor",
	CodeStoreUnavailable:     "The store cannot take writes (disk full or failing, or etcd without a leader): retry later",
	CodeInternal:             "Internal error",
}

// FieldProblem is one problem with one input field.
type FieldProblem struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Problem is an RFC 9457 problem document with tokend's stable code.
type Problem struct {
	Type   string         `json:"type"`
	Title  string         `json:"title"`
	Status int            `json:"status"`
	Detail string         `json:"detail"`
	Code   string         `json:"code"`
	Errors []FieldProblem `json:"errors,omitempty"`
}

// NewProblem builds a problem document for a code.
func NewProblem(status int, code, detail string) Problem {
	title := problemTitles[code]
	if title == "" {
		title = http.StatusText(status)
	}
	return Problem{Type: problemTypeBase + code, Title: title, Status: status, Detail: detail, Code: code}
}

// requestError is a problem the admin package found itself (binding,
// authentication, media type) before or instead of calling the Service.
type requestError struct{ p Problem }

func (e *requestError) Error() string { return e.p.Code + ": " + e.p.Detail }

func reqErr(status int, code, detail string) error {
	return &requestError{NewProblem(status, code, detail)}
}

// invalid reports problems with named inputs as a 400 invalid_request.
func invalid(field, reason string) error { return invalidFields(FieldProblem{field, reason}) }

// invalidFields reports several problems with named inputs at once as a
// 400 invalid_request; nil when there are none.
func invalidFields(fp ...FieldProblem) error {
	if len(fp) == 0 {
		return nil
	}
	parts := make([]string, 0, len(fp))
	for _, f := range fp {
		parts = append(parts, f.Field+": "+f.Reason)
	}
	p := NewProblem(http.StatusBadRequest, CodeInvalidRequest, strings.Join(parts, "; "))
	p.Errors = fp
	return &requestError{p}
}

// syncError marks an error of Options.Sync: one the mapper does not know
// otherwise is a failed directory run (502 sync_failed), not an internal
// error. Options.Sync guarantees its text holds no secret.
type syncError struct{ err error }

func (e *syncError) Error() string { return e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

// errUnauthenticated is answered when the bearer token is missing or unknown.
var errUnauthenticated = errors.New("unauthenticated")

// problemFor is the one place where errors become problems. ok is false for
// errors the operator must find in the log: those it does not know, which
// are internal, and a store that cannot write.
func problemFor(err error) (p Problem, ok bool) {
	var (
		re  *requestError
		ve  *appliance.ValidationError
		mbe *http.MaxBytesError
		brk SyncBrake
		sfe *syncError
		afe *appliance.AdminFactorError
	)
	switch {
	case errors.As(err, &re):
		return re.p, true
	case errors.As(err, &brk):
		return NewProblem(http.StatusConflict, CodeSyncBrake, brk.BrakeDetail()), true
	case errors.As(err, &mbe):
		return NewProblem(http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
			"the body is larger than the limit for this endpoint"), true
	case errors.As(err, &ve):
		p := NewProblem(http.StatusBadRequest, CodeInvalidRequest, ve.Error())
		p.Errors = make([]FieldProblem, 0, len(ve.Problems))
		for _, fp := range ve.Problems {
			p.Errors = append(p.Errors, FieldProblem{fp.Field, fp.Reason})
		}
		return p, true
	case errors.Is(err, appliance.ErrUnauthenticated), errors.Is(err, errUnauthenticated):
		return NewProblem(http.StatusUnauthorized, CodeUnauthenticated, "a valid bearer token is required"), true
	case errors.Is(err, appliance.ErrStoreUnavailable), diskFailed(err):
		// Known but not the client's doing: the handler logs it. The
		// detail is fixed; the cause (a path, an errno) is in the log.
		// Checked before ErrImportBody: an import spooled to a full disk
		// fails inside the copy of its body, but not by the client.
		return NewProblem(http.StatusServiceUnavailable, CodeStoreUnavailable,
			"the store could not write to disk (full or failing): the change was not saved; retry later"), false
	case errors.Is(err, appliance.ErrImportBody):
		// Checked after *http.MaxBytesError, which it may wrap.
		return NewProblem(http.StatusBadRequest, CodeInvalidRequest,
			"the import body did not arrive in full (it stopped or came too slowly); nothing was imported"), true
	case errors.Is(err, appliance.ErrImportFile):
		// The tokenfile package guarantees its errors never carry secrets.
		return NewProblem(http.StatusUnprocessableEntity, CodeImportFileRejected, err.Error()), true
	case errors.As(err, &afe):
		return NewProblem(http.StatusForbidden, CodeAdminSecondFactor, afe.Error()), true
	case errors.Is(err, appliance.ErrForbidden):
		return NewProblem(http.StatusForbidden, CodeForbidden, err.Error()), true
	case errors.Is(err, appliance.ErrNotFound):
		return NewProblem(http.StatusNotFound, CodeNotFound, err.Error()), true
	case errors.Is(err, appliance.ErrExists):
		return NewProblem(http.StatusConflict, CodeExists, err.Error()), true
	case errors.Is(err, appliance.ErrLimit):
		return NewProblem(http.StatusConflict, CodeTokenLimit, err.Error()), true
	case errors.Is(err, appliance.ErrConflict):
		return NewProblem(http.StatusConflict, CodeConflict, err.Error()), true
	case errors.Is(err, appliance.ErrLastSuperAdmin):
		return NewProblem(http.StatusConflict, CodeLastSuperAdmin, err.Error()), true
	case errors.Is(err, appliance.ErrOwnAdminAccount):
		return NewProblem(http.StatusConflict, CodeOwnAdminAccount, err.Error()), true
	case errors.As(err, new(*appliance.SecondFactorError)):
		return NewProblem(http.StatusConflict, CodeSecondFactorRefused, err.Error()), true
	case errors.Is(err, appliance.ErrInvalidState):
		return NewProblem(http.StatusConflict, CodeInvalidState, err.Error()), true
	case errors.Is(err, appliance.ErrBusy):
		return NewProblem(http.StatusTooManyRequests, CodeBusy, err.Error()), true
	case errors.As(err, &sfe):
		// Checked last: a sync error wrapping a sentinel maps as above.
		return NewProblem(http.StatusBadGateway, CodeSyncFailed, sfe.err.Error()), true
	}
	return NewProblem(http.StatusInternalServerError, CodeInternal,
		"the server could not complete the request; the error has been logged"), false
}

// diskFailed reports an error of the data dir's filesystem that reached a
// door without the store's wrapping (an import's spool file): full, over
// quota, read-only or failing. No client input produces these.
func diskFailed(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO)
}

// WriteError translates err into problem JSON and ends the request. Routes
// mounted by other packages on the same engine use it too, so the whole
// listener speaks one error vocabulary. Internal errors are logged with the
// route (never the raw path or query, which may hold secrets).
func (s *Server) WriteError(c *gin.Context, err error) {
	p, ok := problemFor(err)
	if !ok {
		s.log.ErrorContext(c.Request.Context(), "admin request failed",
			"route", routeOf(c), "method", c.Request.Method, "err", err)
	}
	writeProblem(c, p)
}

func writeProblem(c *gin.Context, p Problem) {
	if p.Status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="tokend"`)
	}
	switch p.Code {
	case CodeBusy:
		c.Header("Retry-After", strconv.Itoa(int(appliance.DefaultArgonWait/time.Second)))
	case CodeStoreUnavailable:
		c.Header("Retry-After", "30")
	}
	c.Header("Cache-Control", "no-store")
	c.Set(problemCodeKey, p.Code) // for auditRefusals
	c.Render(p.Status, problemRender{p})
	c.Abort()
}

// problemRender writes a Problem as application/problem+json.
type problemRender struct{ p Problem }

func (r problemRender) Render(w http.ResponseWriter) error {
	r.WriteContentType(w)
	return writeJSON(w, r.p)
}

func (r problemRender) WriteContentType(w http.ResponseWriter) {
	w.Header().Set("Content-Type", mediaProblem)
}
