package console_test

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tokend/admin/console"
	"tokend/appliance"
)

// rolloutUsers adds n users r01… to the fixture and returns their logins.
func rolloutUsers(t *testing.T, f *fixture, n int) []string {
	t.Helper()
	var names []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("r%02d", i)
		f.user(t, name, fmt.Sprintf("Rollout User %02d", i))
		names = append(names, name)
	}
	return names
}

// TestBrowserRollout plans a rollout in headless Chromium, reads the plan
// table, applies it and waits for the progress bar to finish; screenshots
// go to docs/console/ with -update-screenshots.
func TestBrowserRollout(t *testing.T) {
	exe := chromium(t)
	f := newFixture(t, console.Options{Now: time.Now})
	names := rolloutUsers(t, f, 12) // ten pool tokens: two short

	b := newChrome(t, exe, 60*time.Second, func(_ int, name string) string { return "rollout-" + name + ".png" })
	ctx, do, text, shot := b.ctx, b.do, b.text, b.shot
	id := func(s string) chromedp.ID { return chromedp.ID(s) }
	base := f.srv.URL + "/console/"

	do("sign in", chromedp.Navigate(base), chromedp.WaitVisible(id("name")),
		chromedp.SendKeys(id("name"), "root"), chromedp.SendKeys(id("password"), rootPW),
		chromedp.Click(id("signin")), chromedp.WaitVisible(id("nav-rollouts")))
	do("rollouts page", chromedp.Click(id("nav-rollouts")), chromedp.WaitVisible(id("plan-form")),
		chromedp.SetValue(id("users"), strings.Join(names, "\n")), chromedp.SetValue(id("rollout-profile"), "android-ctkip"),
		chromedp.SetValue(id("prefix"), "1000"), shot("1-plan-form"))
	do("plan", chromedp.Click(id("plan")), chromedp.WaitVisible(id("plan-assign")), shot("2-plan"))
	if got, short, state := text("#plan-assign"), text("#plan-shortfall"), text("#rollout-state"); got != "10" || short != "2" || state != "planned" {
		t.Fatalf("plan table: assign %q shortfall %q state %q", got, short, state)
	}
	if tok, err := f.svc.GetToken(f.ctx, "100000000001"); err != nil || tok.UserID != "" {
		t.Fatalf("the plan assigned a token: %+v %v", tok, err)
	}
	// Accept the confirmation the apply button asks for.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("window.confirm = function () { return true; }; true")); err != nil {
		t.Fatal(err)
	}
	do("apply", chromedp.Click(id("apply")), chromedp.WaitVisible(id("export-links")), shot("3-applied"))
	if got := text("#progress-text"); !strings.HasPrefix(got, "10 done, 0 failed of 10") {
		t.Fatalf("progress %q", got)
	}
	held := 0
	for _, n := range names {
		u, err := f.svc.FindUserByName(f.ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		uv, err := f.svc.GetUser(f.ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		held += len(uv.Tokens)
	}
	if held != 10 {
		t.Fatalf("%d tokens assigned, want 10", held)
	}
}

// TestConsoleRolloutExportOnce: the two files download once each, for the
// super admin only; the help desk reads the progress but cannot plan.
func TestConsoleRolloutExportOnce(t *testing.T) {
	f := newFixture(t, console.Options{})
	names := rolloutUsers(t, f, 3)
	help := f.browser(t)
	help.signIn("help", helpPW)
	if p := help.get("/console/rollouts"); p.status != http.StatusOK || contains(p, `id="plan-form"`) {
		t.Fatalf("help desk rollouts page: %s", p)
	}
	if p := help.post("/console/rollouts", url.Values{"users": {"r01"}, "profile": {"android-ctkip"}, "prefix": {"1"}}); p.status != http.StatusForbidden {
		t.Fatalf("help desk plans: %d", p.status)
	}

	root := f.browser(t)
	root.signIn("root", rootPW)
	root.get("/console/rollouts")
	p := root.post("/console/rollouts", url.Values{"users": {strings.Join(names, "\n")}, "profile": {"android-ctkip"}, "pool": {"any"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("plan: %s", p)
	}
	loc := strings.TrimPrefix(p.header.Get("Location"), "/console")
	id := strings.TrimPrefix(loc, "/rollouts/")
	page := root.get("/console" + loc)
	if !contains(page, `id="apply"`) || contains(page, `id="export-links"`) {
		t.Fatalf("planned page: %s", page)
	}
	if p := root.post("/console/rollouts/"+id+"/export/codes", nil); p.status != http.StatusConflict {
		t.Fatalf("export before apply: %d", p.status)
	}
	if p := root.post("/console/rollouts/"+id+"/apply", nil); p.status != http.StatusSeeOther {
		t.Fatalf("apply: %s", p)
	}
	f.svc.WaitRollouts()
	root.get("/console" + loc)
	for _, part := range []string{"links", "codes"} {
		p := root.post("/console/rollouts/"+id+"/export/"+part, nil)
		rows, err := csv.NewReader(strings.NewReader(p.body)).ReadAll()
		if p.status != http.StatusOK || err != nil || len(rows) != 4 || !strings.HasPrefix(p.header.Get("Content-Type"), "text/csv") {
			t.Fatalf("%s export: %d %v %q", part, p.status, err, p.body)
		}
		if part == "codes" && len(rows[1][3]) != appliance.CodeDigits {
			t.Fatalf("codes %v", rows)
		}
		root.get("/console" + loc)
		if again := root.post("/console/rollouts/"+id+"/export/"+part, nil); again.status != http.StatusConflict {
			t.Fatalf("second %s export: %d", part, again.status)
		}
	}
	if page := help.get("/console" + loc); page.status != http.StatusOK || !contains(page, "3 done, 0 failed of 3") || contains(page, "export-codes") {
		t.Fatalf("help desk progress page: %s", page)
	}
}

// TestConsoleRolloutFilter: the users' filter takes the statuses the page
// offers and a cursor it made; anything else is a 400 that says what is
// wrong, not an empty list.
func TestConsoleRolloutFilter(t *testing.T) {
	f := newFixture(t, console.Options{})
	names := rolloutUsers(t, f, 2)
	root := f.browser(t)
	root.signIn("root", rootPW)
	root.get("/console/rollouts")
	p := root.post("/console/rollouts", url.Values{"users": {strings.Join(names, "\n")}, "profile": {"android-ctkip"}, "pool": {"any"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("plan: %s", p)
	}
	loc := p.header.Get("Location")
	if p := root.get(loc + "?status=" + appliance.ItemAssign + "&after=0"); p.status != http.StatusOK || strings.Count(p.body, "<tr data-user=") != 2 {
		t.Fatalf("filtered page: %s", p)
	}
	for _, q := range []string{"?status=bogus", "?after=-1", "?after=x"} {
		p := root.get(loc + q)
		field := "status"
		if strings.HasPrefix(q, "?after") {
			field = "after"
		}
		if p.status != http.StatusBadRequest || !contains(p, "Please correct: "+field+": ") {
			t.Errorf("%s: %s", q, p)
		}
	}
}
