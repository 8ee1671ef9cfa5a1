package admin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
	"tokend/internal/accesslog"
)

// HTTPRecorder observes finished requests (Prometheus in production). route
// is the route pattern (gin's FullPath, e.g. /api/v1/users/:id) or
// "unmatched", never the raw path, so labels stay bounded.
type HTTPRecorder interface {
	ObserveHTTP(route, method string, status int, d time.Duration)
}

// Options configures a Server. Every field is optional.
type Options struct {
	Logger *slog.Logger
	// Ready reports whether the appliance can serve (store open, key
	// checked); /readyz answers 503 while it returns an error.
	Ready func() error
	// Now is the clock of the QR code cache and of the lockout shown in
	// user documents (locked, locked_until).
	Now     func() time.Time
	Metrics HTTPRecorder
	// AccessLog logs one line per request in the format every listener
	// shares (internal/accesslog, rate-limited): method, route, status,
	// duration, remote address. Never the query string or headers, which
	// may carry secrets (bearer tokens, PSKC passwords).
	AccessLog bool
	// QRCacheSize bounds the device links kept for QR codes (default 1024).
	QRCacheSize int
	// MaxImportBody bounds import files (default MaxImportBody, 64 MiB).
	MaxImportBody int64
	// ImportMinRate (bytes/s, default DefaultImportMinRate) and
	// ImportGrace (default DefaultImportGrace) pace an import upload: the
	// body must arrive within ImportGrace plus its size at ImportMinRate,
	// measured as it arrives, instead of the listener's ReadTimeout.
	ImportMinRate int64
	ImportGrace   time.Duration
	// QRCacheTTL is how long a device link stays available for its QR code
	// (default 15 minutes, and never past the activation code's expiry).
	QRCacheTTL time.Duration
	// Backup writes a consistent copy of the store to w and returns the
	// bytes written (bbolt's hot backup). GET /api/v1/backup streams it;
	// nil makes that route answer 501 not_supported.
	Backup func(w io.Writer) (int64, error)
	// Sync runs one pull of an LDAP identity source now, for POST
	// /api/v1/identity-sources/{id}/sync?force=; nil makes that route
	// answer 501 not_supported. It records the run (RecordSyncRun) and
	// returns the recorded run, also when it fails. Its errors become:
	//   - an error implementing SyncBrake (errors.As, so it may be wrapped):
	//     the mass-deactivation brake refused the run and nothing was
	//     applied: 409 sync_brake, detail BrakeDetail() (say the numbers and
	//     that ?force=true applies the run);
	//   - errors wrapping the appliance sentinels map as everywhere else:
	//     ErrNotFound 404, ErrInvalidState 409 invalid_state (a SCIM source),
	//     ErrConflict 409 conflict (a run of that source is in progress),
	//     *ValidationError 400;
	//   - any other error is a failed run (directory unreachable, TLS, bind,
	//     read): 502 sync_failed with err.Error() as the detail, so that text
	//     must never hold the bind password or another secret.
	// The handler looks the source up first, so an unknown id is 404 and a
	// SCIM source 409 invalid_state without Sync being called. ctx carries
	// the actor (appliance.ActorFrom) and is not cancelled when the client
	// goes away, so a started run finishes and is recorded.
	Sync func(ctx context.Context, sourceID string, force bool) (appliance.SyncRun, error)
}

// SyncBrake is the contract of an Options.Sync error that reports the
// mass-deactivation brake refusing a run. BrakeDetail is shown to the admin
// as the problem detail of the 409 sync_brake answer.
type SyncBrake interface {
	error
	BrakeDetail() string
}

// Server is the admin API on a Gin engine. It is an http.Handler.
type Server struct {
	svc     Service
	log     *slog.Logger
	ready   func() error
	now     func() time.Time
	metrics HTTPRecorder
	access  *accesslog.Log // nil: no access log
	maxImp  int64
	engine  *gin.Engine
	api     *gin.RouterGroup
	qr      *qrCache
	// backupFn is Options.Backup.
	backupFn func(w io.Writer) (int64, error)
	// syncFn is Options.Sync.
	syncFn func(ctx context.Context, sourceID string, force bool) (appliance.SyncRun, error)

	// impRate and impGrace are Options.ImportMinRate and ImportGrace.
	impRate  int64
	impGrace time.Duration
}

// APIPrefix is where the admin API lives.
const APIPrefix = "/api/v1"

// New builds the admin API and mounts its routes.
func New(svc Service, opts Options) *Server {
	// Release mode stops gin printing every route at start-up; gin keeps
	// the mode in an atomic, so this is safe alongside other servers.
	gin.SetMode(gin.ReleaseMode)
	s := &Server{svc: svc, log: opts.Logger, ready: opts.Ready, now: opts.Now, metrics: opts.Metrics,
		backupFn: opts.Backup, syncFn: opts.Sync}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.AccessLog {
		s.access = accesslog.New(s.log, "admin", 0, 0)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.ready == nil {
		s.ready = func() error { return nil }
	}
	s.maxImp = opts.MaxImportBody
	if s.maxImp <= 0 {
		s.maxImp = MaxImportBody
	}
	s.impRate, s.impGrace = opts.ImportMinRate, opts.ImportGrace
	if s.impRate <= 0 {
		s.impRate = DefaultImportMinRate
	}
	if s.impGrace <= 0 {
		s.impGrace = DefaultImportGrace
	}
	ttl := opts.QRCacheTTL
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	size := opts.QRCacheSize
	if size <= 0 {
		size = 1024
	}
	s.qr = newQRCache(size, ttl)

	e := gin.New()
	// An API answers a wrong path with 404, not a redirect that drops the
	// body of a POST.
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	// ClientIP would trust X-Forwarded-For from anyone by default.
	_ = e.SetTrustedProxies(nil)
	e.Use(s.observe, s.recoverPanic, strictTransportSecurity)
	e.NoRoute(func(c *gin.Context) {
		writeProblem(c, NewProblem(http.StatusNotFound, CodeNotFound, "no such endpoint"))
	})
	e.NoMethod(func(c *gin.Context) {
		writeProblem(c, NewProblem(http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			"this endpoint does not answer "+c.Request.Method))
	})
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)

	s.engine = e
	s.api = e.Group(APIPrefix, noStore)
	params := mustQueryParams()
	for _, r := range s.routes() {
		chain := []gin.HandlerFunc{}
		if !r.public {
			chain = append(chain, s.Authenticate())
			if isWrite(r.method, r.path) {
				chain = append(chain, s.auditRefusals) // refusals.go
			}
			chain = append(chain, RequireRole(r.roles...))
		}
		chain = append(chain, knownQuery(params[r.method+" "+APIPrefix+r.path]), r.handler)
		s.api.Handle(r.method, r.path, chain...)
	}
	return s
}

// ServeHTTP serves the admin API and everything mounted on its engine.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// Engine returns the Gin engine so other doors (console, SCIM, CT-KIP) can
// mount their routes on the same listener and share its logging, metrics,
// recovery and problem JSON for unknown routes.
func (s *Server) Engine() *gin.Engine { return s.engine }

// API returns the /api/v1 group (with Cache-Control: no-store). Routes
// added to it need Authenticate and RequireRole themselves, and an
// operation in openapi.json (the drift test fails otherwise), for example
//
//	srv.API().POST("/things", srv.Authenticate(), admin.RequireRole(appliance.RoleSuperAdmin), h)
func (s *Server) API() *gin.RouterGroup { return s.api }

// Authenticate maps the bearer token to an appliance.Actor and puts it into
// the request context (appliance.WithActor) so the Service audits who acted.
func (s *Server) Authenticate() gin.HandlerFunc {
	return func(c *gin.Context) {
		scheme, secret, ok := strings.Cut(c.GetHeader("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
			s.WriteError(c, errUnauthenticated)
			return
		}
		actor, err := s.svc.AuthenticateAPIToken(c.Request.Context(), strings.TrimSpace(secret))
		if err != nil {
			s.WriteError(c, err)
			return
		}
		c.Set(actorKey, actor)
		c.Request = c.Request.WithContext(appliance.WithActor(c.Request.Context(), actor))
		c.Next()
	}
}

const actorKey = "tokend.actor"

// ActorOf returns the actor Authenticate found.
func ActorOf(c *gin.Context) (appliance.Actor, bool) {
	v, ok := c.Get(actorKey)
	if !ok {
		return appliance.Actor{}, false
	}
	a, ok := v.(appliance.Actor)
	return a, ok
}

// RequireRole lets the request through only if Authenticate found an actor
// with one of roles; otherwise 403 (or 401 without an actor).
func RequireRole(roles ...string) gin.HandlerFunc {
	return func(c *gin.Context) {
		a, ok := ActorOf(c)
		if !ok {
			writeProblem(c, mustProblem(errUnauthenticated))
			return
		}
		if !slices.Contains(roles, a.Role) {
			writeProblem(c, NewProblem(http.StatusForbidden, CodeForbidden,
				fmt.Sprintf("role %s may not %s %s", a.Role, c.Request.Method, c.FullPath())))
			return
		}
		c.Next()
	}
}

func mustProblem(err error) Problem { p, _ := problemFor(err); return p }

// noStore keeps API answers (activation codes, new tokens, user data) out
// of every cache.
func noStore(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Next()
}

func routeOf(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return "unmatched"
}

// observe records metrics and the access log line once the request is done.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	d := time.Since(start)
	route, status, method := routeOf(c), c.Writer.Status(), accesslog.Method(c.Request.Method)
	if s.metrics != nil {
		s.metrics.ObserveHTTP(route, method, status, d)
	}
	if s.access != nil {
		s.access.Request(c.Request.Context(), method, route, status, d, c.Request.RemoteAddr)
	}
}

// recoverPanic turns a panic into a logged 500 problem instead of a dropped
// connection.
func (s *Server) recoverPanic(c *gin.Context) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.log.ErrorContext(c.Request.Context(), "panic in handler", "route", routeOf(c), "method", c.Request.Method,
			"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		if !c.Writer.Written() {
			writeProblem(c, mustProblem(fmt.Errorf("panic")))
		}
		c.Abort()
	}()
	c.Next()
}

func (s *Server) healthz(c *gin.Context) { render(c, http.StatusOK, map[string]string{"status": "ok"}) }

func (s *Server) readyz(c *gin.Context) {
	if err := s.ready(); err != nil {
		// Unauthenticated endpoint: the reason goes to the log only.
		s.log.WarnContext(c.Request.Context(), "not ready", "err", err)
		writeProblem(c, NewProblem(http.StatusServiceUnavailable, CodeNotReady, "the appliance is not ready"))
		return
	}
	render(c, http.StatusOK, map[string]string{"status": "ready"})
}

// ctx is shorthand for the request context (carrying the actor).
func ctx(c *gin.Context) context.Context { return c.Request.Context() }
