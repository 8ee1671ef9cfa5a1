package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// Service is the part of *appliance.Service the console calls.
type Service interface {
	AuthenticateAdmin(ctx context.Context, name, password, passcode string) (appliance.Actor, error)
	// AdminSignInThrottled counts and logs a sign-in the console's own
	// limits refused, with the Service's other sign-in refusals.
	AdminSignInThrottled(reason string)
	GetAdmin(ctx context.Context, name string) (appliance.AdminAccount, error)

	GetUser(ctx context.Context, id string) (appliance.UserView, error)
	FindUserByName(ctx context.Context, userName string) (appliance.User, error)
	ListUsers(ctx context.Context, q appliance.UserQuery) (appliance.UserPage, error)

	ListTokens(ctx context.Context, q appliance.TokenQuery) (appliance.TokenPage, error)
	SetTokenEnabled(ctx context.Context, serial string, enabled bool) (appliance.Token, error)
	AssignTokens(ctx context.Context, userID string, serials []string) (appliance.UserView, error)
	UnassignToken(ctx context.Context, userID, serial string) error
	ImportTokens(ctx context.Context, req appliance.ImportRequest) (appliance.ImportJob, error)

	ListProfiles(ctx context.Context) ([]appliance.Profile, error)
	GetProfile(ctx context.Context, name string) (appliance.Profile, error)
	CreateProfile(ctx context.Context, p appliance.Profile) (appliance.Profile, error)
	UpdateProfile(ctx context.Context, name string, p appliance.Profile) (appliance.Profile, error)

	Distribute(ctx context.Context, serial, profile string) (appliance.Distribution, error)
	DeliverSeed(ctx context.Context, serial string, req appliance.SeedDeliveryRequest) (appliance.SeedDelivery, error)
	TakeTokenFile(ctx context.Context, serial string) ([]byte, error)

	ListAudit(ctx context.Context, q appliance.AuditQuery) (appliance.AuditPage, error)

	ListAgents(ctx context.Context) ([]appliance.Agent, error)
	GetAgent(ctx context.Context, id string) (appliance.Agent, error)
	CreateAgent(ctx context.Context, in appliance.AgentInput) (appliance.Agent, appliance.Secret, error)
	UpdateAgent(ctx context.Context, id string, in appliance.AgentInput) (appliance.Agent, error)

	// The Administrators page and the own-password page (admins.go).
	adminsService

	// The token page's lifecycle actions and the Reports page (lifecycle.go).
	lifecycleService

	// The Rollouts pages (rollouts.go).
	rolloutsService
}

// SourceStatus is what the Identity sources page shows of one source.
type SourceStatus struct {
	ID, Name, Type string
	LastRunAt      time.Time // zero: never ran
	LastRunOK      bool
	LastRunSummary string // e.g. "12 added, 3 updated"
	LastError      string
}

// Sources is the optional identity-source door: listing and "run now".
// Nil makes the page say that no identity sources are configured.
type Sources interface {
	ListIdentitySources(ctx context.Context) ([]SourceStatus, error)
	RunSync(ctx context.Context, id string) error
}

// Options configures a Console. Every field is optional.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	// SessionIdle ends a session after this long without a request
	// (default 15 minutes); SessionMax ends it this long after sign-in
	// whatever happens (default 8 hours).
	SessionIdle time.Duration
	SessionMax  time.Duration
	// InsecureCookies drops the Secure attribute and the __Host- prefix,
	// for plain-HTTP development only. Production and tests use TLS.
	InsecureCookies bool
	// Sources backs the Identity sources page; nil hides it.
	Sources Sources
	// MaxImportBody bounds an uploaded token file (default 16 MiB); a
	// previewed file is held in the session until it is applied.
	MaxImportBody int64
	// MaxSessions bounds the session table (default 10000).
	MaxSessions int
	// LoginLimits throttles sign-in attempts per client address and per
	// account name before any password is hashed.
	LoginLimits LoginLimits
}

// Prefix is where the console lives on the admin listener.
const Prefix = "/console"

//go:embed templates/*.html static/*
var assets embed.FS

// Console serves the Security Console.
type Console struct {
	svc       Service
	src       Sources
	log       *slog.Logger
	now       func() time.Time
	secure    bool
	maxImport int64
	pages     map[string]*template.Template
	static    fs.FS
	sessions  *sessions
	limiter   *loginLimiter
}

// New parses the embedded templates and builds a Console.
func New(svc Service, opts Options) *Console {
	c := &Console{svc: svc, src: opts.Sources, log: opts.Logger, now: opts.Now, secure: !opts.InsecureCookies,
		maxImport: opts.MaxImportBody}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.maxImport <= 0 {
		c.maxImport = 16 << 20
	}
	idle, max := opts.SessionIdle, opts.SessionMax
	if idle <= 0 {
		idle = 15 * time.Minute
	}
	if max <= 0 {
		max = 8 * time.Hour
	}
	c.sessions = newSessions(idle, max, opts.MaxSessions)
	c.limiter = newLoginLimiter(opts.LoginLimits, svc.AdminSignInThrottled)
	c.pages = parsePages()
	static, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	c.static = static
	return c
}

var pageNames = []string{"login", "home", "users", "user", "assign", "distribute", "distribution",
	"tokens", "import", "import_report", "profiles", "profile_form", "sources", "audit", "error", "agents", "seeddelivery",
	"token", "reports"}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		},
		"yesno": func(b bool) string {
			if b {
				return "yes"
			}
			return "no"
		},
		"hours": func(d time.Duration) int { return int(d / time.Hour) },
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html"))
	out := make(map[string]*template.Template, len(pageNames))
	for _, n := range slices.Concat(pageNames, adminPageNames, rolloutPageNames) {
		out[n] = template.Must(template.Must(base.Clone()).ParseFS(assets, "templates/"+n+".html"))
	}
	return out
}

// Role sets, the same as the admin API's (admin/routes.go): readers read
// users, tokens and profiles; operators (the help desk's daily work) also
// change users and tokens; profiles and identity sources are changed by
// the super admin; the audit trail is for the super admin and the auditor.
var (
	readers      = []string{appliance.RoleSuperAdmin, appliance.RoleHelpdesk, appliance.RoleAuditor}
	operators    = []string{appliance.RoleSuperAdmin, appliance.RoleHelpdesk}
	superOnly    = []string{appliance.RoleSuperAdmin}
	auditReaders = []string{appliance.RoleSuperAdmin, appliance.RoleAuditor}
)

// Mount adds the console to the admin API's engine under /console/.
func (c *Console) Mount(e *gin.Engine) {
	e.GET(Prefix, func(g *gin.Context) { g.Redirect(http.StatusMovedPermanently, Prefix+"/") })
	r := e.Group(Prefix, c.headers)
	r.GET("/static/:file", c.asset)
	r.GET("/", c.home)
	r.POST("/login", c.login)
	r.POST("/logout", c.signedIn(readers...), c.logout)

	r.GET("/users", c.signedIn(readers...), c.users)
	r.GET("/users/:id", c.signedIn(readers...), c.user)
	r.GET("/users/:id/assign", c.signedIn(operators...), c.assignForm)
	r.POST("/users/:id/assign", c.signedIn(operators...), c.assign)
	r.POST("/users/:id/tokens/:serial/enable", c.signedIn(operators...), c.setEnabled(true))
	r.POST("/users/:id/tokens/:serial/disable", c.signedIn(operators...), c.setEnabled(false))
	r.POST("/users/:id/tokens/:serial/unassign", c.signedIn(operators...), c.unassign)
	r.GET("/users/:id/tokens/:serial/distribute", c.signedIn(operators...), c.distributeForm)
	r.POST("/users/:id/tokens/:serial/distribute", c.signedIn(operators...), c.distribute)

	r.GET("/tokens", c.signedIn(readers...), c.tokens)
	r.GET("/tokens/import", c.signedIn(operators...), c.importForm)
	r.POST("/tokens/import", c.signedIn(operators...), c.importPreview)
	r.POST("/tokens/import/apply", c.signedIn(operators...), c.importApply)

	r.GET("/profiles", c.signedIn(readers...), c.profiles)
	r.GET("/profiles/new", c.signedIn(superOnly...), c.profileForm)
	r.POST("/profiles/new", c.signedIn(superOnly...), c.profileSave)
	r.GET("/profiles/edit/:name", c.signedIn(superOnly...), c.profileForm)
	r.POST("/profiles/edit/:name", c.signedIn(superOnly...), c.profileSave)

	r.GET("/sources", c.signedIn(readers...), c.sources)
	r.POST("/sources/:id/run", c.signedIn(superOnly...), c.runSource)

	r.GET("/audit", c.signedIn(auditReaders...), c.audit)

	r.GET("/agents", c.signedIn(auditReaders...), c.agents)
	r.POST("/agents", c.signedIn(superOnly...), c.createAgent)
	r.POST("/agents/:id/enable", c.signedIn(superOnly...), c.setAgentEnabled(true))
	r.POST("/agents/:id/disable", c.signedIn(superOnly...), c.setAgentEnabled(false))
	c.mountAdmins(r) // Administrators and the own-password page (admins.go)

	c.mountLifecycle(r) // token page and reports (lifecycle.go)

	// Rollouts to a group (rollouts.go).
	c.mountRollouts(r)
}

// csp allows only our own script and style files and the QR code's data:
// image; no inline script, no framing, forms post only back to us.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (c *Console) headers(g *gin.Context) {
	h := g.Writer.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	// Pages show activation codes and personal data: keep them out of caches.
	h.Set("Cache-Control", "no-store")
	g.Next()
}

func (c *Console) asset(g *gin.Context) {
	name := g.Param("file")
	b, err := fs.ReadFile(c.static, name)
	if err != nil {
		c.notFound(g)
		return
	}
	ct := "application/octet-stream"
	switch {
	case strings.HasSuffix(name, ".css"):
		ct = "text/css; charset=utf-8"
	case strings.HasSuffix(name, ".js"):
		ct = "text/javascript; charset=utf-8"
	}
	g.Header("Cache-Control", "no-cache")
	g.Data(http.StatusOK, ct, b)
}

// perms is what the signed-in admin may do, for showing only the links and
// buttons that will work. The routes enforce the same sets.
type perms struct {
	Operate, EditProfiles, Audit, RunSources bool
	ManageAgents                             bool
	ManageAdmins                             bool
}

func permsOf(role string) perms {
	return perms{Operate: slices.Contains(operators, role), EditProfiles: slices.Contains(superOnly, role),
		Audit: slices.Contains(auditReaders, role), RunSources: slices.Contains(superOnly, role),
		ManageAgents: slices.Contains(superOnly, role), ManageAdmins: slices.Contains(superOnly, role)}
}

// view is what every page template receives.
type view struct {
	Title   string
	Nav     string
	Admin   *appliance.Actor
	Can     perms
	CSRF    string
	Flash   string
	Error   string
	Sources bool
	Data    any
}

const (
	ctxSession = "console.session"
	ctxActor   = "console.actor"
)

func (c *Console) render(g *gin.Context, status int, page, title string, data any) {
	v := view{Title: title, Nav: page, Data: data, Sources: c.src != nil}
	if s, ok := g.Get(ctxSession); ok {
		sess := s.(*session)
		v.CSRF = sess.csrf
		v.Flash = c.sessions.popFlash(sess)
	}
	if a, ok := g.Get(ctxActor); ok {
		actor := a.(appliance.Actor)
		v.Admin = &actor
		v.Can = permsOf(actor.Role)
	}
	if e, ok := g.Get("console.error"); ok {
		v.Error = e.(string)
	}
	t := c.pages[page]
	g.Status(status)
	g.Header("Content-Type", "text/html; charset=utf-8")
	if err := t.ExecuteTemplate(g.Writer, "layout", v); err != nil {
		c.log.ErrorContext(g.Request.Context(), "console template", "page", page, "err", err)
	}
}

// problem renders the error page with a message for people.
func (c *Console) problem(g *gin.Context, status int, msg string) {
	c.render(g, status, "error", http.StatusText(status), map[string]any{"Status": status, "Message": msg})
	g.Abort()
}

func (c *Console) notFound(g *gin.Context) {
	c.problem(g, http.StatusNotFound, "There is no such page.")
}

// fail maps a Service error to a page; internal errors are logged and shown
// without detail.
func (c *Console) fail(g *gin.Context, err error) {
	status, msg := explain(err)
	if status == http.StatusInternalServerError {
		c.log.ErrorContext(g.Request.Context(), "console", "route", g.FullPath(), "err", err)
	}
	c.problem(g, status, msg)
}

// formError answers a refused form on the form's own page: show renders it
// with the refusal's status, the reason above the form. An internal error
// is the error page (fail).
func (c *Console) formError(g *gin.Context, err error, show func(status int)) {
	status, msg := explain(err)
	if status == http.StatusInternalServerError {
		c.fail(g, err)
		return
	}
	g.Set("console.error", msg)
	show(status)
}

func explain(err error) (int, string) {
	var (
		v   *appliance.ValidationError
		afe *appliance.AdminFactorError
	)
	switch {
	case errors.As(err, &v):
		parts := make([]string, 0, len(v.Problems))
		for _, p := range v.Problems {
			if p.Field == "" {
				parts = append(parts, p.Reason)
			} else {
				parts = append(parts, strings.ReplaceAll(p.Field, "_", " ")+": "+p.Reason)
			}
		}
		return http.StatusBadRequest, "Please correct: " + strings.Join(parts, "; ") + "."
	case errors.As(err, &afe):
		return http.StatusForbidden, "Token " + afe.Serial + " is an administrator's console second factor. " +
			"Only a super admin can change it, its PIN, or its holder's emergency access and lockout."
	case errors.Is(err, appliance.ErrForbidden):
		return http.StatusForbidden, "Your role may not do this."
	case errors.Is(err, appliance.ErrLimit):
		return http.StatusConflict, fmt.Sprintf("A user may hold at most %d hardware or software tokens. "+
			"Unassign a token before assigning another.", appliance.MaxTokensPerUser)
	case errors.Is(err, appliance.ErrNotFound):
		return http.StatusNotFound, "Not found: " + err.Error() + "."
	case errors.Is(err, appliance.ErrExists):
		return http.StatusConflict, "Already exists: " + err.Error() + "."
	case errors.Is(err, appliance.ErrConflict), errors.Is(err, appliance.ErrInvalidState):
		return http.StatusConflict, "Not possible now: " + err.Error() + "."
	case errors.Is(err, appliance.ErrImportFile):
		return http.StatusBadRequest, "The file was rejected: " + err.Error() + "."
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "The request was cancelled. Please try again."
	}
	return http.StatusInternalServerError, "Something went wrong on the appliance. The error has been logged."
}

// actor returns the signed-in admin of the request.
func actorOf(g *gin.Context) appliance.Actor {
	a, _ := g.Get(ctxActor)
	actor, _ := a.(appliance.Actor)
	return actor
}

func sessionOf(g *gin.Context) *session {
	s, _ := g.Get(ctxSession)
	sess, _ := s.(*session)
	return sess
}

// redirect answers a POST with 303 See Other so reloading the next page
// does not repeat the action.
func redirect(g *gin.Context, path string) { g.Redirect(http.StatusSeeOther, Prefix+path) }
