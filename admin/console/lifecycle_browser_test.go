package console_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tokend/admin/console"
)

// TestBrowserTokenLifecycle walks the token page in headless Chromium as
// the help desk: replace a token, see both tokens linked, complete the
// replacement, mark the new token lost with emergency codes, find it again,
// and open the Reports page with its CSV links. Screenshots go to
// docs/console/ with -update-screenshots.
func TestBrowserTokenLifecycle(t *testing.T) {
	exe := chromium(t)
	f := newFixture(t, console.Options{Now: time.Now})
	alice := f.user(t, "alice", "Alice Example")
	if _, err := f.svc.AssignTokens(f.ctx, alice.ID, []string{"100000000001"}); err != nil {
		t.Fatal(err)
	}
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
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()

	n := 0
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			n++
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, fmt.Sprintf("lifecycle-%02d-%s.png", n, name)), png, 0o644)
		})
	}
	do := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	// The console asks before destructive actions; the test says yes.
	confirmYes := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(window.confirm = () => true, true)`)(ctx, tg)
		return err
	})
	id := func(s string) chromedp.ID { return chromedp.ID(s) }
	base := f.srv.URL + "/console/"

	do("start", chromedp.Navigate("about:blank"))
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	do("sign in", chromedp.Navigate(base), chromedp.WaitVisible(id("name")),
		chromedp.SendKeys(id("name"), "help"), chromedp.SendKeys(id("password"), helpPW),
		chromedp.Click(id("signin")), chromedp.WaitVisible(id("q")))
	do("token page", chromedp.Navigate(base+"users/"+alice.ID),
		chromedp.Click(chromedp.CSS(`a[href="/console/tokens/100000000001"]`)), chromedp.WaitVisible(id("replace-form")),
		shot("token"))
	do("replace", chromedp.SendKeys(id("new-serial"), "100000000002"), chromedp.Click(id("replace")),
		chromedp.WaitVisible(id("profile")), shot("replace-distribute"))
	do("pending", chromedp.Navigate(base+"tokens/100000000001"), chromedp.WaitVisible(id("replaced-by")), shot("replacement-pending"))
	if got := text("#replaced-by"); !strings.HasPrefix(got, "100000000002") {
		t.Fatalf("replaced by %q", got)
	}
	do("complete", confirmYes, chromedp.Click(id("complete-replacement")), chromedp.WaitVisible(id("token-facts")))
	if got := text("#token-state"); got != "disabled" {
		t.Fatalf("old token after completion: %q", got)
	}
	do("lost", chromedp.Navigate(base+"tokens/100000000002"), chromedp.WaitVisible(id("lost-form")), confirmYes,
		chromedp.SetValue(id("emergency-codes"), "2"), chromedp.Click(id("lost")), chromedp.WaitVisible(id("emergency")),
		shot("lost-emergency-codes"))
	if got := text("#token-state"); !strings.HasPrefix(got, "lost") {
		t.Fatalf("state after lost: %q", got)
	}
	do("found", chromedp.Click(id("found")), chromedp.WaitVisible(id("lost-form")))
	if got := text("#token-state"); got != "enabled" {
		t.Fatalf("state after found: %q", got)
	}
	do("reports", chromedp.Navigate(base+"reports"), chromedp.WaitVisible(id("report-list")), shot("reports"),
		chromedp.Navigate(base+"reports?name=users-without-token"), chromedp.WaitVisible(id("report-csv")), shot("report"))
	t.Logf("screenshots in %s", shots)
}
