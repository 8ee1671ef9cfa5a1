package console_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tokend/admin/console"
)

// TestBrowserAdministrators walks the Administrators page in headless
// Chromium: the super admin creates an admin and reads the one-time password
// off the page; that admin signs in with it and lands on "Change your
// password", cannot reach another page, changes it and reaches the console;
// the super admin deletes the admin after the confirmation page.
// Screenshots go to docs/console/ with -update-screenshots.
func TestBrowserAdministrators(t *testing.T) {
	exe := chromium(t)
	f := newFixture(t, console.Options{Now: time.Now})
	b := newChrome(t, exe, 90*time.Second, numberedShots("admins-"))
	do, text, shot := b.do, b.text, b.shot
	id := func(s string) chromedp.ID { return chromedp.ID(s) }
	base := f.srv.URL + "/console/"
	signIn := func(name, pw string, then chromedp.Action[chromedp.Void]) {
		t.Helper()
		do("sign in as "+name, chromedp.Navigate(base), chromedp.WaitVisible(id("name")),
			chromedp.SendKeys(id("name"), name), chromedp.SendKeys(id("password"), pw),
			chromedp.Click(id("signin")), then)
	}
	signOut := chromedp.Click(chromedp.CSS(`form.who button`))

	signIn("root", rootPW, chromedp.WaitVisible(id("q")))
	do("administrators", chromedp.Click(id("nav-admins")), chromedp.WaitVisible(id("add-admin")), shot("administrators"))
	do("create", chromedp.SendKeys(id("admin-name"), "jane"), chromedp.SetValue(id("admin-role"), "helpdesk"),
		chromedp.Click(id("create-admin")), chromedp.WaitVisible(id("one-time-password")), shot("one-time-password"))
	otp := text("#one-time-password")
	if len(otp) != 23 {
		t.Fatalf("one-time password %q", otp)
	}
	do("sign out", signOut, chromedp.WaitVisible(id("name")))

	signIn("jane", otp, chromedp.WaitVisible(id("must-change")))
	do("change page", shot("change-password"))
	do("elsewhere", chromedp.Navigate(base+"users?q=a"), chromedp.WaitVisible(id("must-change")))
	do("change", chromedp.SendKeys(id("current-password"), otp), chromedp.SendKeys(id("new-password"), "jane's own password"),
		chromedp.SendKeys(id("repeat-password"), "jane's own password"), chromedp.Click(id("change-password")),
		chromedp.WaitVisible(id("q")))
	if got := text("p.flash"); !strings.Contains(got, "password has been changed") {
		t.Fatalf("flash after the change: %q", got)
	}
	do("sign out", signOut, chromedp.WaitVisible(id("name")))

	signIn("root", rootPW, chromedp.WaitVisible(id("q")))
	do("delete", chromedp.Navigate(base+"admins"), chromedp.WaitVisible(id("admins")),
		chromedp.Click(chromedp.CSS(`a[href="/console/admins/delete?name=jane"]`)), chromedp.WaitVisible(id("confirm-delete")),
		shot("delete-confirmation"), chromedp.Click(id("delete-admin")), chromedp.WaitVisible(id("add-admin")))
	if got := text("#admins"); strings.Contains(got, "jane") {
		t.Fatalf("jane still listed: %q", got)
	}
	if _, err := f.svc.GetAdmin(f.ctx, "jane"); err == nil {
		t.Fatal("jane still exists")
	}
	t.Logf("screenshots in %s", b.shots)
}
