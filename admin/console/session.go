package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// session is one browser's state. An anonymous session (admin == "") only
// carries the CSRF token of the sign-in form.
type session struct {
	id      string
	csrf    string
	admin   string
	created time.Time
	seen    time.Time
	flash   string
	pending *pendingImport
}

// sessions is the in-memory session table. Ids are 32 random bytes; the
// table is bounded, expired entries are swept when it fills.
type sessions struct {
	idle, max time.Duration
	limit     int

	mu sync.Mutex
	m  map[string]*session
}

func newSessions(idle, max time.Duration, limit int) *sessions {
	if limit <= 0 {
		limit = 10000
	}
	return &sessions{idle: idle, max: max, limit: limit, m: map[string]*session{}}
}

func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

var errSessionTableFull = errors.New("too many console sessions")

func (s *sessions) create(admin string, now time.Time) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.limit {
		for id, x := range s.m {
			if s.expired(x, now) {
				delete(s.m, id)
			}
		}
		if len(s.m) >= s.limit {
			// Anonymous sessions are cheap to lose (a sign-in form to
			// reload); never evict a signed-in admin for them.
			for id, x := range s.m {
				if x.admin == "" {
					delete(s.m, id)
					break
				}
			}
		}
		if len(s.m) >= s.limit {
			return nil, errSessionTableFull
		}
	}
	x := &session{id: randomToken(), csrf: randomToken(), admin: admin, created: now, seen: now}
	s.m[x.id] = x
	return x, nil
}

func (s *sessions) expired(x *session, now time.Time) bool {
	return now.Sub(x.seen) > s.idle || now.Sub(x.created) > s.max
}

// get returns the live session with id and marks it seen.
func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.m[id]
	if x == nil {
		return nil
	}
	if s.expired(x, now) {
		delete(s.m, id)
		return nil
	}
	x.seen = now
	return x
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

func (s *sessions) setFlash(x *session, msg string) {
	s.mu.Lock()
	x.flash = msg
	s.mu.Unlock()
}

func (s *sessions) popFlash(x *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := x.flash
	x.flash = ""
	return f
}

func (s *sessions) setPending(x *session, p *pendingImport) {
	s.mu.Lock()
	x.pending = p
	s.mu.Unlock()
}

func (s *sessions) takePending(x *session) *pendingImport {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := x.pending
	x.pending = nil
	return p
}

// Cookies.

func (c *Console) cookieName() string {
	if c.secure {
		return "__Host-tokend_session" // Secure, Path=/, no Domain: bound to this origin
	}
	return "tokend_session"
}

func (c *Console) setCookie(g *gin.Context, value string, maxAge int) {
	http.SetCookie(g.Writer, &http.Cookie{Name: c.cookieName(), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteStrictMode})
}

// current returns the request's live session, or nil.
func (c *Console) current(g *gin.Context) *session {
	ck, err := g.Request.Cookie(c.cookieName())
	if err != nil || ck.Value == "" {
		return nil
	}
	return c.sessions.get(ck.Value, c.now())
}

func csrfOK(x *session, got string) bool {
	return x != nil && got != "" && subtle.ConstantTimeCompare([]byte(x.csrf), []byte(got)) == 1
}

// checkCSRF rejects a POST whose form lacks the session's token.
func (c *Console) checkCSRF(g *gin.Context, x *session) bool {
	if g.Request.Method != http.MethodPost {
		return true
	}
	limit := int64(1 << 20)
	if g.FullPath() == Prefix+"/tokens/import" {
		limit = c.maxImport + 1<<20
	}
	g.Request.Body = http.MaxBytesReader(g.Writer, g.Request.Body, limit)
	var err error
	if strings.HasPrefix(g.ContentType(), "multipart/") {
		err = g.Request.ParseMultipartForm(8 << 20)
	} else {
		err = g.Request.ParseForm()
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		c.problem(g, http.StatusRequestEntityTooLarge, "The upload is too large.")
		return false
	}
	if err == nil && csrfOK(x, g.Request.PostFormValue("csrf")) {
		return true
	}
	c.problem(g, http.StatusForbidden, "This form has expired or did not come from the console (CSRF check failed). "+
		"Go back, reload the page and try again.")
	return false
}

// signedIn requires a signed-in admin with one of roles, re-reads the admin
// account on every request (a deleted admin or a changed role takes effect
// at once), checks CSRF on POST and puts the admin into the request
// context so the Service audits who acted.
func (c *Console) signedIn(roles ...string) gin.HandlerFunc {
	return func(g *gin.Context) {
		x := c.current(g)
		if x == nil || x.admin == "" {
			if g.Request.Method == http.MethodGet {
				g.Redirect(http.StatusSeeOther, Prefix+"/")
				g.Abort()
				return
			}
			c.problem(g, http.StatusForbidden, "Your session has ended. Sign in again.")
			return
		}
		acc, err := c.svc.GetAdmin(g.Request.Context(), x.admin)
		if errors.Is(err, appliance.ErrNotFound) {
			c.sessions.delete(x.id)
			c.problem(g, http.StatusForbidden, "Your admin account no longer exists.")
			return
		}
		if err != nil {
			c.fail(g, err)
			return
		}
		if acc.Disabled {
			c.sessions.delete(x.id)
			c.problem(g, http.StatusForbidden, "Your admin account is disabled.")
			return
		}
		actor := acc.Actor()
		g.Set(ctxSession, x)
		g.Set(ctxActor, actor)
		g.Request = g.Request.WithContext(appliance.WithActor(g.Request.Context(), actor))
		if !c.checkCSRF(g, x) {
			return
		}
		// A one-time password: nothing but choosing a new one (and signing
		// out) until it is changed.
		g.Set(ctxMustChange, acc.MustChangePassword)
		if acc.MustChangePassword && !allowedWhileMustChange(g.FullPath()) {
			if g.Request.Method == http.MethodGet {
				g.Redirect(http.StatusSeeOther, passwordPath)
				g.Abort()
				return
			}
			c.problem(g, http.StatusForbidden, "Change your one-time password first.")
			return
		}
		if !slices.Contains(roles, actor.Role) {
			c.problem(g, http.StatusForbidden, "Your role ("+actor.Role+") may not use this page or action.")
			return
		}
		g.Next()
	}
}

// home shows the sign-in form to a visitor and the home page to an admin.
func (c *Console) home(g *gin.Context) {
	x := c.current(g)
	if x != nil && x.admin != "" {
		c.signedIn(readers...)(g)
		if g.IsAborted() {
			return
		}
		c.render(g, http.StatusOK, "home", "Home", nil)
		return
	}
	c.loginPage(g, x, http.StatusOK, "")
}

func (c *Console) loginPage(g *gin.Context, x *session, status int, msg string) {
	if x == nil {
		var err error
		if x, err = c.sessions.create("", c.now()); err != nil {
			c.problem(g, http.StatusServiceUnavailable, "The console is busy. Try again in a minute.")
			return
		}
		c.setCookie(g, x.id, 0)
	}
	g.Set(ctxSession, x)
	if msg != "" {
		g.Set("console.error", msg)
	}
	c.render(g, status, "login", "Sign in", nil)
}

// login checks the sign-in form. The session id changes at sign-in so an
// id planted before it is worthless afterwards.
func (c *Console) login(g *gin.Context) {
	x := c.current(g)
	g.Request.Body = http.MaxBytesReader(g.Writer, g.Request.Body, 64<<10)
	if !csrfOK(x, g.PostForm("csrf")) {
		c.problem(g, http.StatusForbidden, "The sign-in form has expired. Reload the page and sign in again.")
		return
	}
	// Throttle before the Service hashes anything: each check costs 64 MiB
	// of argon2id. RemoteAddr, not a forwarded header a client could set.
	name := g.PostForm("name")
	if ok, wait := c.limiter.allow(g.Request.RemoteAddr, name, c.now()); !ok {
		g.Header("Retry-After", retryAfter(wait))
		c.loginPage(g, x, http.StatusTooManyRequests, "Too many sign-in attempts. Wait a minute and try again.")
		return
	}
	actor, err := c.svc.AuthenticateAdmin(g.Request.Context(), name, g.PostForm("password"), g.PostForm("passcode"))
	if errors.Is(err, appliance.ErrBusy) {
		g.Header("Retry-After", retryAfter(appliance.DefaultArgonWait))
		c.loginPage(g, x, http.StatusTooManyRequests, "The appliance is busy checking other sign-ins. Try again in a few seconds.")
		return
	}
	if errors.Is(err, appliance.ErrUnauthenticated) {
		c.loginPage(g, x, http.StatusUnauthorized, "Sign-in failed. Check your name, password and tokencode.")
		return
	}
	if err != nil {
		c.fail(g, err)
		return
	}
	if c.renewSession(g, x, actor.Name, "The console is busy. Try again in a minute.") == nil {
		return
	}
	redirect(g, "/")
}

// renewSession replaces old with a new session of name and sets its cookie,
// after a sign-in or a password change: an id known before the change is
// worthless after it. When no session can be made it answers 503 with busy
// and returns nil.
func (c *Console) renewSession(g *gin.Context, old *session, name, busy string) *session {
	c.sessions.delete(old.id)
	nx, err := c.sessions.create(name, c.now())
	if err != nil {
		c.problem(g, http.StatusServiceUnavailable, busy)
		return nil
	}
	c.setCookie(g, nx.id, 0)
	return nx
}

func (c *Console) logout(g *gin.Context) {
	c.sessions.delete(sessionOf(g).id)
	c.setCookie(g, "", -1)
	redirect(g, "/")
}
