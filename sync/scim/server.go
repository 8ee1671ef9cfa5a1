package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"

	escim "github.com/elimity-com/scim"
	scimerr "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
	"github.com/scim2/filter-parser/v2"

	"tokend/appliance"
)

// Service is the part of appliance.Service the SCIM endpoint calls; main
// passes *appliance.Service.
type Service interface {
	AuthenticateSCIMToken(ctx context.Context, token string) (string, error)

	CreateSourceUser(ctx context.Context, sourceID string, in appliance.SourceUser) (appliance.SourceUser, error)
	GetSourceUser(ctx context.Context, sourceID, id string) (appliance.SourceUser, error)
	FindSourceUserByName(ctx context.Context, sourceID, userName string) (appliance.SourceUser, error)
	FindSourceUsersByExternalID(ctx context.Context, sourceID, externalID string) ([]appliance.SourceUser, error)
	ScanSourceUsers(ctx context.Context, sourceID, after string, limit int) ([]appliance.SourceUser, string, error)
	UpdateSourceUser(ctx context.Context, sourceID, id string, fn func(*appliance.SourceUser) error) (appliance.SourceUser, error)
	DeactivateSourceUserIf(ctx context.Context, sourceID, id string, removed bool, check func(appliance.SourceUser) error) (appliance.SourceUser, error)

	CreateGroup(ctx context.Context, sourceID string, in appliance.Group) (appliance.Group, error)
	GetGroup(ctx context.Context, sourceID, id string) (appliance.Group, error)
	ListGroups(ctx context.Context, sourceID string) ([]appliance.Group, error)
	UpdateGroup(ctx context.Context, sourceID, id string, fn func(*appliance.Group) error) (appliance.Group, error)
	DeleteGroupIf(ctx context.Context, sourceID, id string, check func(appliance.Group) error) error
	ResolveGroupMembers(ctx context.Context, sourceID string, refs []string) (map[string]string, error)
}

// Recorder counts SCIM requests by operation (users.create, groups.patch,
// discovery, …: a fixed set) and HTTP status. A nil Recorder records nothing.
type Recorder interface {
	SCIMRequest(op string, status int)
}

// Options configure the endpoint. Zero values take the defaults.
type Options struct {
	// BaseURL is the absolute SCIM base, e.g. https://host:8443/scim/v2,
	// for meta.location and Location headers (relative when empty).
	BaseURL string
	Logger  *slog.Logger
	Metrics Recorder
	// MaxResults caps and defaults the page size (100).
	MaxResults int
	// MaxBodyBytes bounds a request body (1 MiB).
	MaxBodyBytes int64
}

// URNs used here.
const (
	userSchemaURN       = "urn:ietf:params:scim:schemas:core:2.0:User"
	groupSchemaURN      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	enterpriseSchemaURN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	patchOpURN          = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	errorURN            = "urn:ietf:params:scim:api:messages:2.0:Error"
)

// allowStrings makes the library accept "False"/"True" strings for
// booleans (Entra ID sends "active":"False" without its aadOptscim062020
// flag). schema.SetAllowStringValues is process-global state in the
// library; it is set once, to true, and never back: this is the one piece
// of package-level mutable state here, and every SCIM endpoint in the
// process wants the same setting.
var allowStrings sync.Once

// Handler is the SCIM 2.0 service provider. Mount it under /scim/v2 with
// the prefix stripped; it authenticates every request itself.
type Handler struct {
	svc     Service
	lib     escim.Server // with the configured BaseURL
	args    *escim.ServerArgs
	libOpts []escim.ServerOption
	libMu   sync.Mutex
	libs    map[string]escim.Server // by request-derived base, when none is configured
	log     *slog.Logger
	rec     Recorder
	maxBody int64
	base    string
	users   *schemaInfo
	groups  *schemaInfo
}

type ctxKey struct{}

type baseKey struct{}

func sourceFrom(r *http.Request) string {
	s, _ := r.Context().Value(ctxKey{}).(string)
	return s
}

// baseFrom is the absolute SCIM base URL of the request.
func baseFrom(r *http.Request) string {
	s, _ := r.Context().Value(baseKey{}).(string)
	return s
}

// New builds the endpoint over the Service.
func New(svc Service, opts Options) (*Handler, error) {
	if svc == nil {
		return nil, errors.New("scim: Service is required")
	}
	allowStrings.Do(func() { schema.SetAllowStringValues(true) })
	h := &Handler{svc: svc, log: opts.Logger, rec: opts.Metrics, maxBody: opts.MaxBodyBytes, base: strings.TrimRight(opts.BaseURL, "/")}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxBody <= 0 {
		h.maxBody = 1 << 20
	}
	if opts.MaxResults <= 0 {
		opts.MaxResults = 100
	}
	h.users = &schemaInfo{core: withExternalID(schema.CoreUserSchema()), exts: []schema.Schema{schema.ExtensionEnterpriseUser()}}
	h.groups = &schemaInfo{core: withExternalID(schema.CoreGroupSchema())}
	cfg := escim.ServiceProviderConfig{
		MaxResults:       opts.MaxResults,
		SupportFiltering: true,
		SupportPatch:     true,
		AuthenticationSchemes: []escim.AuthenticationScheme{{
			Type: escim.AuthenticationTypeOauthBearerToken, Name: "Bearer token", Primary: true,
			Description: "The token shown once when the identity source was created.",
		}},
	}
	types := []escim.ResourceType{
		{
			ID: optional.NewString("User"), Name: "User", Endpoint: "/Users",
			Description: optional.NewString("Users pushed by the identity provider"),
			Schema:      schema.CoreUserSchema(),
			SchemaExtensions: []escim.SchemaExtension{
				{Schema: schema.ExtensionEnterpriseUser()},
			},
			Handler: &userHandler{h: h},
		},
		{
			ID: optional.NewString("Group"), Name: "Group", Endpoint: "/Groups",
			Description: optional.NewString("Groups pushed by the identity provider"),
			Schema:      schema.CoreGroupSchema(),
			Handler:     &groupHandler{h: h},
		},
	}
	h.args = &escim.ServerArgs{ServiceProviderConfig: &cfg, ResourceTypes: types}
	h.libOpts = []escim.ServerOption{escim.WithLogger(libLogger{h.log}), escim.WithRootQueryHandler(&rootHandler{h: h})}
	lib, err := escim.NewServer(h.args, append(h.libOpts, escim.WithBaseURL(h.base))...)
	if err != nil {
		return nil, fmt.Errorf("scim: %w", err)
	}
	h.lib = lib
	h.libs = map[string]escim.Server{}
	return h, nil
}

// maxLibs bounds the servers kept per request-derived base URL (the Host
// header is the client's to choose).
const maxLibs = 8

// libFor returns the library server whose Location and meta.location
// start with base.
func (h *Handler) libFor(base string) escim.Server {
	if h.base != "" {
		return h.lib
	}
	h.libMu.Lock()
	defer h.libMu.Unlock()
	if l, ok := h.libs[base]; ok {
		return l
	}
	l, err := escim.NewServer(h.args, append(h.libOpts, escim.WithBaseURL(base))...)
	if err != nil { // cannot happen: New built one from the same arguments
		h.log.Error("scim: building server", "err", err)
		return h.lib
	}
	if len(h.libs) < maxLibs {
		h.libs[base] = l
	}
	return l
}

// requestBase derives the absolute SCIM base URL from the request when
// none is configured: scheme, Host, and the prefix the mount stripped, so
// Location and meta.location are absolute URLs (RFC 7644 §3.1).
func (h *Handler) requestBase(r *http.Request) string {
	if h.base != "" {
		return h.base
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	prefix := ""
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
		if p := strings.TrimRight(u.Path, "/"); strings.HasSuffix(p, strings.TrimRight(r.URL.Path, "/")) {
			prefix = strings.TrimSuffix(p, strings.TrimRight(r.URL.Path, "/"))
		}
	}
	return scheme + "://" + r.Host + strings.TrimRight(prefix, "/")
}

// withExternalID adds the common externalId attribute, as the library does
// when it validates bodies, so PATCH paths may name it.
func withExternalID(s schema.Schema) schema.Schema {
	attrs := append([]schema.CoreAttribute(nil), s.Attributes...)
	s.Attributes = append(attrs, schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{
		CaseExact: true, Name: "externalId",
		Mutability: schema.AttributeMutabilityReadWrite(), Uniqueness: schema.AttributeUniquenessNone(),
	})))
	return s
}

type libLogger struct{ l *slog.Logger }

func (l libLogger) Error(args ...any) { l.l.Error("scim library", "detail", fmt.Sprint(args...)) }

// statusWriter remembers the status for metrics and whether anything was
// written, so a recovered panic can still answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ServeHTTP authenticates, normalises and hands the request to the library.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	path := normalizePath(r.URL.Path)
	op := classify(r.Method, path)
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { //nolint:errorlint // sentinel panic value
				panic(v)
			}
			h.log.Error("scim: panic serving request", "op", op, "panic", fmt.Sprint(v))
			if sw.status == 0 {
				writeError(sw, http.StatusInternalServerError, "", "internal error")
			}
		}
		if h.rec != nil {
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			h.rec.SCIMRequest(op, status)
		}
	}()

	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		unauthorized(sw)
		return
	}
	src, err := h.svc.AuthenticateSCIMToken(r.Context(), token)
	if errors.Is(err, appliance.ErrUnauthenticated) || errors.Is(err, appliance.ErrNotFound) {
		unauthorized(sw)
		return
	}
	if err != nil {
		h.log.Error("scim: authenticating token", "err", err)
		writeError(sw, http.StatusInternalServerError, "", "internal error")
		return
	}
	base := h.requestBase(r)
	lib := h.libFor(base)
	ctx := context.WithValue(r.Context(), ctxKey{}, src)
	ctx = context.WithValue(ctx, baseKey{}, base)
	ctx = appliance.WithActor(ctx, appliance.Actor{ID: "scim:" + src, Name: "scim:" + src})

	r2 := r.WithContext(ctx)
	u := *r.URL
	u.Path, u.RawPath = path, ""
	if q := u.Query(); q.Has("filter") {
		q.Set("filter", RewriteFilter(q.Get("filter")))
		u.RawQuery = q.Encode()
	}
	r2.URL = &u
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodDelete {
		body, err := io.ReadAll(http.MaxBytesReader(sw, r.Body, h.maxBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(sw, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body larger than %d bytes", h.maxBody))
				return
			}
			writeError(sw, http.StatusBadRequest, "invalidSyntax", "cannot read request body")
			return
		}
		if strings.HasPrefix(path, "/Users") {
			body = fixManager(body)
		}
		if strings.HasPrefix(path, "/Groups") {
			if kind := bareMember(body); kind != "" {
				writeError(sw, http.StatusBadRequest, "invalidValue", bareMemberMsg(kind))
				return
			}
		}
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
		if r.Method == http.MethodPost && (path == "/.search" || path == "/Users/.search" || path == "/Groups/.search") {
			get, err := searchAsGet(r2, path, body)
			if err != nil {
				scimType, detail := "invalidSyntax", "the body is not a SearchRequest object"
				var pe *PatchError
				if errors.As(err, &pe) {
					scimType, detail = pe.ScimType, pe.Detail
				}
				writeError(sw, http.StatusBadRequest, scimType, detail)
				return
			}
			r2 = get
		}
	}
	first, rest, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	switch {
	case path == "/ServiceProviderConfig" && r.Method == http.MethodGet:
		h.serveConfig(lib, sw, r2)
	case r.Method == http.MethodGet && (first == "Users" || first == "Groups") && rest != "" && rest != ".search" &&
		len(r.Header.Values("If-None-Match")) > 0:
		h.serveConditionalGet(lib, sw, r2)
	default:
		lib.ServeHTTP(sw, r2)
	}
}

func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="tokend SCIM"`)
	writeError(w, http.StatusUnauthorized, "", "missing or invalid bearer token")
}

// writeError writes a SCIM error body (RFC 7644 §3.12).
func writeError(w http.ResponseWriter, status int, scimType, detail string) {
	body := map[string]any{"schemas": []string{errorURN}, "status": fmt.Sprint(status), "detail": detail}
	if scimType != "" {
		body["scimType"] = scimType
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Canonical endpoint names: the library matches paths case-sensitively,
// and Microsoft's validator also asks for /serviceConfiguration.
var canonicalSegments = map[string]string{
	"users":                  "Users",
	"groups":                 "Groups",
	"schemas":                "Schemas",
	"resourcetypes":          "ResourceTypes",
	"serviceproviderconfig":  "ServiceProviderConfig",
	"serviceproviderconfigs": "ServiceProviderConfig",
	"serviceconfiguration":   "ServiceProviderConfig",
	"me":                     "Me",
	"bulk":                   "Bulk",
}

// normalizePath canonicalises the first segment and drops trailing slashes
// (the library takes /Users/ as the user with id "").
func normalizePath(p string) string {
	p = "/" + strings.Trim(p, "/")
	if strings.HasPrefix(p, "/v2/") || p == "/v2" {
		p = "/" + strings.TrimPrefix(strings.TrimPrefix(p, "/v2"), "/")
	}
	first, rest, _ := strings.Cut(p[1:], "/")
	if c, ok := canonicalSegments[strings.ToLower(first)]; ok {
		first = c
	}
	if rest != "" {
		if strings.EqualFold(rest, ".search") {
			rest = ".search"
		}
		return "/" + first + "/" + rest
	}
	return "/" + first
}

// classify names the operation for metrics (a fixed set of labels).
func classify(method, path string) string {
	first, rest, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	var kind string
	switch first {
	case "Users":
		kind = "users"
	case "Groups":
		kind = "groups"
	case "Schemas", "ResourceTypes", "ServiceProviderConfig":
		return "discovery"
	case "":
		return "root.list"
	case ".search":
		return "root.search"
	default:
		return "other"
	}
	switch {
	case rest == ".search":
		return kind + ".search"
	case rest == "" && method == http.MethodGet:
		return kind + ".list"
	case rest == "" && method == http.MethodPost:
		return kind + ".create"
	case rest != "" && method == http.MethodGet:
		return kind + ".get"
	case rest != "" && method == http.MethodPut:
		return kind + ".replace"
	case rest != "" && method == http.MethodPatch:
		return kind + ".patch"
	case rest != "" && method == http.MethodDelete:
		return kind + ".delete"
	}
	return kind + ".other"
}

// fixManager rewrites Entra ID's enterprise manager sent as a plain string
// into the complex {"value": …} the schema requires, in POST/PUT bodies and
// PATCH operations. Anything it does not recognise is passed on unchanged.
func fixManager(body []byte) []byte {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil {
		return body
	}
	changed := fixManagerIn(doc)
	if _, ops := findKey(doc, "Operations"); ops != nil {
		list, _ := ops.([]any)
		for _, o := range list {
			om, ok := o.(map[string]any)
			if !ok {
				continue
			}
			_, p := findKey(om, "path")
			ps, _ := p.(string)
			vk, v := findKey(om, "value")
			if s, ok := v.(string); ok && isManagerPath(ps) {
				om[vk] = map[string]any{"value": s}
				changed = true
			}
			if vm, ok := v.(map[string]any); ok && ps == "" {
				changed = fixManagerIn(vm) || changed
			}
		}
	}
	if !changed {
		return body
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return body
	}
	return out
}

func isManagerPath(p string) bool {
	return strings.EqualFold(p, enterpriseSchemaURN+":manager")
}

// fixManagerIn fixes {"urn:…:enterprise:2.0:User": {"manager": "x"}} and
// {"urn:…:enterprise:2.0:User:manager": "x"} in m.
func fixManagerIn(m map[string]any) bool {
	changed := false
	for k, v := range m {
		switch {
		case isManagerPath(k):
			if s, ok := v.(string); ok {
				m[k] = map[string]any{"value": s}
				changed = true
			}
		case strings.EqualFold(k, enterpriseSchemaURN):
			ext, ok := v.(map[string]any)
			if !ok {
				continue
			}
			if mk, mv := findKey(ext, "manager"); mk != "" {
				if s, ok := mv.(string); ok {
					ext[mk] = map[string]any{"value": s}
					changed = true
				}
			}
		}
	}
	return changed
}

// toSCIMError translates a Service or applier error for the library, once.
func (h *Handler) toSCIMError(err error, id string) error {
	var se scimerr.ScimError
	var pe *PatchError
	var ve *appliance.ValidationError
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &pe):
		return scimerr.ScimError{Status: http.StatusBadRequest, ScimType: scimerr.ScimType(pe.ScimType), Detail: pe.Detail}
	case errors.As(err, &ve):
		return scimerr.ScimError{Status: http.StatusBadRequest, ScimType: scimerr.ScimTypeInvalidValue, Detail: ve.Error()}
	case errors.Is(err, errPreconditionFailed):
		return scimerr.ScimError{Status: http.StatusPreconditionFailed, Detail: "If-Match does not match the current version"}
	case errors.Is(err, appliance.ErrNotFound):
		return scimerr.ScimErrorResourceNotFound(id)
	case errors.Is(err, appliance.ErrExists):
		e := scimerr.ScimErrorUniqueness
		e.Detail = "userName is already taken"
		return e
	case errors.Is(err, appliance.ErrLimit):
		return scimerr.ScimError{Status: http.StatusBadRequest, ScimType: scimerr.ScimTypeInvalidValue, Detail: "limit reached"}
	case errors.Is(err, appliance.ErrConflict), errors.Is(err, appliance.ErrInvalidState):
		return scimerr.ScimError{Status: http.StatusConflict, Detail: "conflict with the current state"}
	case errors.Is(err, appliance.ErrStoreUnavailable):
		// RFC 7644 §3.12 (and the library) allow no 503: a 500 whose
		// detail tells the provider's admin what happened.
		h.log.Error("scim: the store cannot write", "err", err)
		return scimerr.ScimError{Status: http.StatusInternalServerError,
			Detail: "store unavailable: tokend cannot write to its disk (full or failing); nothing was changed, retry later"}
	}
	h.log.Error("scim: request failed", "err", err)
	return scimerr.ScimError{Status: http.StatusInternalServerError, Detail: "internal error"}
}

// projection is the attributes / excludedAttributes query (RFC 7644 §3.9).
type projection struct {
	include, exclude []string
}

func projectionOf(q url.Values) projection {
	split := func(s string) []string {
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	return projection{include: split(q.Get("attributes")), exclude: split(q.Get("excludedAttributes"))}
}

// keepExternalID reports whether externalId survives the projection.
func (p projection) keepExternalID(core string) bool {
	return p.apply(map[string]any{"externalId": true}, core)["externalId"] != nil
}

// apply returns a projected copy of attrs. id, schemas and meta are added
// by the library afterwards and always returned.
func (p projection) apply(attrs map[string]any, core string) map[string]any {
	if len(p.include) == 0 && len(p.exclude) == 0 {
		return attrs
	}
	split := func(name string) (string, string) {
		if len(name) > len(core)+1 && strings.EqualFold(name[:len(core)+1], core+":") {
			name = name[len(core)+1:]
		}
		if i := strings.LastIndex(name, ":"); i >= 0 { // extension attribute: urn…:attr
			return name[:i], name[i+1:]
		}
		a, s, _ := strings.Cut(name, ".")
		return a, s
	}
	out := make(map[string]any, len(attrs))
	if len(p.include) > 0 {
		for _, name := range p.include {
			if strings.Contains(name, "[") {
				selectFiltered(attrs, out, name, true)
				continue
			}
			a, sub := split(name)
			k, v := findKey(attrs, a)
			if k == "" {
				continue
			}
			if sub == "" {
				out[k] = v
				continue
			}
			if m, ok := v.(map[string]any); ok {
				dst, _ := out[k].(map[string]any)
				if dst == nil {
					dst = map[string]any{}
				}
				if sk, sv := findKey(m, sub); sk != "" {
					dst[sk] = sv
				}
				out[k] = dst
			}
		}
	} else {
		for k, v := range attrs {
			out[k] = v
		}
	}
	for _, name := range p.exclude {
		if strings.Contains(name, "[") {
			selectFiltered(out, out, name, false)
			continue
		}
		a, sub := split(name)
		k, v := findKey(out, a)
		if k == "" {
			continue
		}
		if sub == "" {
			delete(out, k)
			continue
		}
		if m, ok := v.(map[string]any); ok {
			c := make(map[string]any, len(m))
			for mk, mv := range m {
				if !strings.EqualFold(mk, sub) {
					c[mk] = mv
				}
			}
			out[k] = c
		}
	}
	return out
}

// selectFiltered applies one attributes / excludedAttributes entry with a
// value filter, such as emails[type eq "work"] or emails[type eq
// "work"].value: included, the matching values (or their sub-attribute)
// are added to dst; excluded, they are dropped from dst. An entry that
// does not parse or names nothing selects nothing; it is never an error.
func selectFiltered(src, dst map[string]any, name string, include bool) {
	fp, err := filter.ParsePath([]byte(strings.TrimSpace(name)))
	if err != nil || fp.ValueExpression == nil {
		return
	}
	from, into := container(src, fp.AttributePath), dst
	if from == nil {
		return
	}
	if uri := fp.AttributePath.URI(); uri != "" && !isCoreURN(uri) {
		ek, _ := findKey(src, uri)
		m, ok := dst[ek].(map[string]any)
		if !ok {
			if !include {
				return
			}
			m = map[string]any{}
		}
		c := make(map[string]any, len(m))
		for k, v := range m {
			c[k] = v
		}
		into = c
		defer func() {
			if len(c) > 0 {
				dst[ek] = c
			}
		}()
	}
	k, v := findKey(from, fp.AttributePath.AttributeName)
	list, ok := v.([]any)
	if k == "" || !ok {
		return
	}
	sub := fp.SubAttributeName()
	if !include {
		kept := make([]any, 0, len(list))
		for _, el := range list {
			m, isMap := el.(map[string]any)
			switch {
			case !isMap || !Match(fp.ValueExpression, m):
				kept = append(kept, el)
			case sub != "":
				c := make(map[string]any, len(m))
				for mk, mv := range m {
					if !strings.EqualFold(mk, sub) {
						c[mk] = mv
					}
				}
				kept = append(kept, c)
			}
		}
		if len(kept) == 0 {
			delete(into, k)
		} else {
			into[k] = kept
		}
		return
	}
	cur, _ := into[k].([]any)
	have := map[string]bool{}
	for _, el := range cur {
		have[elementKey(el)] = true
	}
	for _, el := range list {
		m, isMap := el.(map[string]any)
		if !isMap || !Match(fp.ValueExpression, m) {
			continue
		}
		if sub != "" {
			sk, sv := findKey(m, sub)
			if sk == "" {
				continue
			}
			el = map[string]any{sk: sv}
		}
		if !have[elementKey(el)] {
			have[elementKey(el)] = true
			cur = append(cur, el)
		}
	}
	if len(cur) > 0 {
		into[k] = cur
	}
}
