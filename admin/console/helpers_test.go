package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"tokend/admin"
	"tokend/admin/console"
	"tokend/appliance"
	"tokend/appliance/appliancetest"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Passwords of the fixture's admins.
const (
	rootPW  = "root password 123"
	helpPW  = "help password 123"
	auditPW = "audit password 123"
)

type fixture struct {
	svc   *appliance.Service
	ctx   context.Context
	clock *clock
	srv   *httptest.Server
}

func newService(t testing.TB, clk *clock) (*appliance.Service, context.Context) {
	t.Helper()
	svc := appliancetest.Service(t, appliance.Config{Now: clk.Now, CTKIPURL: "https://tokend.example:8444/ctkip/services/CtkipService"})
	return svc, appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "setup", Role: appliance.RoleSuperAdmin})
}

// newFixture serves the admin API with the console mounted over TLS, with
// three admins (root, help, audit), a CT-KIP profile and ten unassigned
// software tokens 100000000001…10.
func newFixture(t *testing.T, opts console.Options) *fixture {
	t.Helper()
	clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
	svc, ctx := newService(t, clk)
	for _, a := range []struct{ name, role, pw string }{
		{"root", appliance.RoleSuperAdmin, rootPW}, {"help", appliance.RoleHelpdesk, helpPW}, {"audit", appliance.RoleAuditor, auditPW},
	} {
		if _, _, err := svc.CreateAdmin(ctx, appliance.NewAdmin{Name: a.name, Role: a.role, Password: appliance.Secret(a.pw)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.CreateProfile(ctx, appliance.Profile{Name: "android-ctkip", DisplayName: "Android app", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeNone}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateProfile(ctx, appliance.Profile{Name: "file-export", DeviceType: appliance.DeviceWindows,
		DeliveryMethod: appliance.DeliveryFile}); err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("serial,kind\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&csv, "%012d,software\n", 100000000000+i)
	}
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csv.String())}); err != nil {
		t.Fatal(err)
	}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	srv := httptest.NewTLSServer(newHandler(svc, opts))
	t.Cleanup(srv.Close)
	return &fixture{svc: svc, ctx: ctx, clock: clk, srv: srv}
}

func newHandler(svc *appliance.Service, opts console.Options) http.Handler {
	adm := admin.New(svc, admin.Options{})
	console.New(svc, opts).Mount(adm.Engine())
	return adm
}

func (f *fixture) user(t *testing.T, name, display string) appliance.UserView {
	t.Helper()
	u, err := f.svc.CreateUser(f.ctx, appliance.NewUser{UserName: name, DisplayName: display, Email: name + "@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// browser is a net/http client with a cookie jar that does not follow
// redirects, so tests see the 303s.
type browser struct {
	t    *testing.T
	f    *fixture
	c    *http.Client
	csrf string
}

func (f *fixture) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	// A copy: srv.Client() is one shared client, and a jar set on it would
	// make every browser of a test the last one signed in.
	cc := *f.srv.Client()
	c := &cc
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: t, f: f, c: c}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

type page struct {
	status int
	body   string
	header http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindSubmatch(body); m != nil {
		b.csrf = string(m[1])
	}
	return page{status: resp.StatusCode, body: string(body), header: resp.Header}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.f.srv.URL+path, nil)
	return b.do(req)
}

// post sends a form with the page's CSRF token unless form sets "csrf".
func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest(http.MethodPost, b.f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) signIn(name, pw string) {
	b.t.Helper()
	b.get("/console/")
	p := b.post("/console/login", url.Values{"name": {name}, "password": {pw}})
	if p.status != http.StatusSeeOther {
		b.t.Fatalf("sign in as %s: %d %s", name, p.status, p.body)
	}
	if home := b.get("/console/"); !contains(home, "Quick Search") {
		b.t.Fatalf("home after sign-in: %s", home)
	}
}

func (p page) String() string { return fmt.Sprintf("%d %s", p.status, p.body) }

func contains(p page, s string) bool { return strings.Contains(p.body, s) }
