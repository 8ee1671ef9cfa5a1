package console_test

import (
	"context"
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
	b := newChrome(t, exe, 60*time.Second, numberedShots("lifecycle-"))
	do, text, shot := b.do, b.text, b.shot
	// The console asks before destructive actions; the test says yes.
	confirmYes := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(window.confirm = () => true, true)`)(ctx, tg)
		return err
	})
	id := func(s string) chromedp.ID { return chromedp.ID(s) }
	base := f.srv.URL + "/console/"

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
	// The old page has the facts too: wait until the link to the new token is gone.
	do("complete", confirmYes, chromedp.Click(id("complete-replacement")), chromedp.WaitNotPresent(id("replaced-by")),
		chromedp.WaitVisible(id("token-facts")))
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
	t.Logf("screenshots in %s", b.shots)
}
