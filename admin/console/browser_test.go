package console_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tokend/admin/console"
	"tokend/appliance"
	"tokend/ctkip"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the browser test's screenshots to docs/console/")

// ctkipBackend adapts the Service to the CT-KIP handler, as main does.
type ctkipBackend struct{ svc *appliance.Service }

func (b ctkipBackend) Begin(ctx context.Context, code string) (ctkip.Token, error) {
	t, err := b.svc.BeginProvisioning(ctx, code)
	return ticket(t), mapCodeErr(err)
}

func (b ctkipBackend) Complete(ctx context.Context, code string, seed ctkip.Seed) (ctkip.Token, error) {
	t, err := b.svc.CompleteProvisioning(ctx, code, seed[:])
	return ticket(t), mapCodeErr(err)
}

func ticket(t appliance.ProvisionTicket) ctkip.Token {
	return ctkip.Token{Serial: t.Serial, UserID: t.UserName, Digits: t.Digits, Interval: t.Interval, ExpiresAt: t.ExpiresAt}
}

func mapCodeErr(err error) error {
	if errors.Is(err, appliance.ErrInvalidCode) {
		return ctkip.ErrInvalidCode
	}
	return err
}

// chromium finds Debian's chromium: missing, it fails under CI and skips
// elsewhere.
func chromium(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is missing: apt-get install chromium")
	}
	t.Skip("chromium is missing: apt-get install chromium")
	return ""
}

// chrome is one headless Chromium driven through a browser walk, with the
// walk's screenshots and the steps that fail the test at once.
type chrome struct {
	t     *testing.T
	ctx   context.Context // bounded by the walk's timeout
	shots string          // where screenshots go
	file  func(n int, name string) string
	n     int
}

// numberedShots names the n-th screenshot prefix + "NN-name.png".
func numberedShots(prefix string) func(n int, name string) string {
	return func(n int, name string) string { return fmt.Sprintf("%s%02d-%s.png", prefix, n, name) }
}

// newChrome starts Chromium at exe without a deadline (see chromedp.Run),
// then bounds the walk to timeout. Screenshots go to a temporary directory,
// to $TOKEND_ARTIFACTS, or to docs/console/ with -update-screenshots, named
// by file. The browser closes when the test ends.
func newChrome(t *testing.T, exe string, timeout time.Duration, file func(n int, name string) string) *chrome {
	t.Helper()
	shots := t.TempDir()
	if d := os.Getenv("TOKEND_ARTIFACTS"); d != "" {
		shots = d
	}
	if *updateScreenshots || os.Getenv("TOKEND_UPDATE_SCREENSHOTS") == "1" {
		shots = filepath.Join("..", "..", "docs", "console")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1280, 800),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(cancelB)
	c := &chrome{t: t, ctx: bctx, shots: shots, file: file}
	c.do("start", chromedp.Navigate("about:blank"))
	ctx, cancel := context.WithTimeout(bctx, timeout)
	t.Cleanup(cancel)
	c.ctx = ctx
	return c
}

// shot writes a full-page screenshot of the page as it is.
func (c *chrome) shot(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		c.n++
		png, err := chromedp.FullScreenshot(100)(ctx, tg) // quality 100 is PNG; below is JPEG
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(c.shots, c.file(c.n, name)), png, 0o644)
	})
}

// do runs the actions of one step and fails the test naming the step.
func (c *chrome) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	if err := chromedp.Do(c.ctx, actions...); err != nil {
		c.t.Fatalf("%s: %v", step, err)
	}
}

// text is the visible text of the first element sel matches.
func (c *chrome) text(sel chromedp.CSS) string {
	c.t.Helper()
	v, err := chromedp.Run(c.ctx, chromedp.Text(sel))
	if err != nil {
		c.t.Fatalf("text of %s: %v", sel, err)
	}
	return v
}

// TestBrowserSeedProcedure walks the seed procedure in headless Chromium:
// sign in, quick search, assign a software token from the list, pick a
// CT-KIP profile, read the activation code and URL off the page, provision
// with the Go CT-KIP client, and see the token provisioned on the dashboard.
func TestBrowserSeedProcedure(t *testing.T) {
	exe := chromium(t)
	f := newFixture(t, console.Options{Now: time.Now})
	alice := f.user(t, "alice", "Alice Example")
	mallory := f.user(t, "mallory", `<script>alert(1)</script>`)

	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := ctkip.NewServer(ctkip.Config{Key: key, Backend: ctkipBackend{f.svc}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ctkip/services/CtkipService", ct)
	ctSrv := httptest.NewTLSServer(mux)
	defer ctSrv.Close()
	f.svc.SetCTKIPURL(ctSrv.URL + "/ctkip/services/CtkipService")

	b := newChrome(t, exe, 60*time.Second, numberedShots(""))
	ctx, do, text, shot := b.ctx, b.do, b.text, b.shot
	id := func(s string) chromedp.ID { return chromedp.ID(s) }
	base := f.srv.URL + "/console/"
	aliceLink := chromedp.CSS(`a[href="/console/users/` + alice.ID + `"]`)

	do("sign in", chromedp.Navigate(base), chromedp.WaitVisible(id("name")), shot("sign-in"),
		chromedp.SendKeys(id("name"), "help"), chromedp.SendKeys(id("password"), helpPW),
		chromedp.Click(id("signin")), chromedp.WaitVisible(id("q")), shot("home"))
	do("quick search", chromedp.SendKeys(id("q"), "ali"), chromedp.Click(id("search")),
		chromedp.WaitVisible(aliceLink), shot("search-results"),
		chromedp.Click(aliceLink), chromedp.WaitVisible(id("assign-more")), shot("user-dashboard"))
	do("assign", chromedp.Click(id("assign-more")), chromedp.WaitVisible(id("t100000000005")),
		chromedp.Click(id("t100000000005")), shot("assign-tokens"),
		chromedp.Click(id("assign")), chromedp.WaitVisible(id("profile")))
	do("select profile", chromedp.SetValue(id("profile"), "android-ctkip"), shot("select-profile"),
		chromedp.Click(id("distribute")), chromedp.WaitVisible(id("activation-code")), shot("distribution"))
	code, url := text("#activation-code"), text("#ctkip-url")
	qr, err := chromedp.Run(ctx, chromedp.AttributeValue(id("qr"), "src"))
	if err != nil {
		t.Fatal(err)
	}
	if len(code) != appliance.CodeDigits || url != f.svc.CTKIPURL() || !strings.HasPrefix(qr.Value, "data:image/png;base64,") {
		t.Fatalf("distribution page: code %q url %q qr %.30q", code, url, qr.Value)
	}

	res, err := (&ctkip.Client{HTTP: ctSrv.Client()}).Provision(ctx, url, code)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	if res.Serial != "100000000005" {
		t.Fatalf("provisioned %s", res.Serial)
	}

	row := `tr[data-serial="100000000005"]`
	do("provisioned", chromedp.Click(id("back-to-user")), chromedp.WaitVisible(chromedp.CSS(row)), shot("provisioned"))
	if prov := text(chromedp.CSS(row + " td.prov")); !strings.HasPrefix(prov, "yes") {
		t.Fatalf("dashboard says provisioned %q", prov)
	}

	// A display name from a directory renders as text, not as script.
	do("xss", chromedp.Navigate(base+"users/"+mallory.ID), chromedp.WaitVisible(id("display-name")))
	if shown := text("#display-name"); shown != `<script>alert(1)</script>` {
		t.Fatalf("display name shown as %q", shown)
	}
	t.Logf("screenshots in %s", b.shots)
}
