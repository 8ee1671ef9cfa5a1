package console_test

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tokend/admin/console"
	"tokend/appliance"
	"tokend/appliance/tokenfile"
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

	// Hand out one user's delivery (a re-send by phone): the page shows
	// the activation code once; the rollout page then says taken.
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	page, err := f.svc.ListRolloutItems(f.ctx, loc[strings.LastIndex(loc, "/")+1:], 0, 1, "")
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("items: %+v %v", page, err)
	}
	first := page.Items[0]
	hand := fmt.Sprintf("hand-out-%d", first.Seq)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("window.confirm = function () { return true; }; true")); err != nil {
		t.Fatal(err)
	}
	do("hand out", chromedp.Click(id(hand)), chromedp.WaitVisible(id("activation-code")), shot("4-hand-out"))
	if code, user := text("#activation-code"), text("#user-name"); len(code) != appliance.CodeDigits || user != first.UserName {
		t.Fatalf("hand-out page: code %q user %q", code, user)
	}
	row := chromedp.CSS(`tr[data-user="` + first.UserName + `"] td.delivery`)
	do("back", chromedp.Click(id("back-to-rollout")), chromedp.WaitVisible(row), shot("5-taken"))
	if got := text(row); got != "taken" {
		t.Fatalf("delivery of %s after the hand-out: %q", first.UserName, got)
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
	id := plannedRollout(t, root, "android-ctkip", names)
	loc := "/rollouts/" + id
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

// TestConsoleRolloutCancel: a planned rollout offers Cancel to the super
// admin only; cancelled, it offers neither Apply nor Cancel, and an apply
// is refused.
func TestConsoleRolloutCancel(t *testing.T) {
	f := newFixture(t, console.Options{})
	names := rolloutUsers(t, f, 2)
	root := f.browser(t)
	root.signIn("root", rootPW)
	id := plannedRollout(t, root, "android-ctkip", names)
	loc := "/rollouts/" + id
	if page := root.get("/console" + loc); !contains(page, `id="cancel"`) {
		t.Fatalf("planned page without Cancel: %s", page)
	}
	help := f.browser(t)
	help.signIn("help", helpPW)
	if page := help.get("/console" + loc); contains(page, `id="cancel"`) {
		t.Fatalf("help desk offered Cancel: %s", page)
	}
	if p := help.post("/console/rollouts/"+id+"/cancel", nil); p.status != http.StatusForbidden {
		t.Fatalf("help desk cancels: %d", p.status)
	}
	if p := root.post("/console/rollouts/"+id+"/cancel", nil); p.status != http.StatusSeeOther {
		t.Fatalf("cancel: %s", p)
	}
	page := root.get("/console" + loc)
	if contains(page, `id="cancel"`) || contains(page, `id="apply"`) || !contains(page, "cancelled") {
		t.Fatalf("cancelled page: %s", page)
	}
	if r, err := f.svc.GetRollout(f.ctx, id); err != nil || r.State != appliance.RolloutCancelled {
		t.Fatalf("after cancel: %+v %v", r, err)
	}
	if p := root.post("/console/rollouts/"+id+"/apply", nil); p.status != http.StatusConflict {
		t.Fatalf("apply a cancelled rollout: %d", p.status)
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
	loc := "/console/rollouts/" + plannedRollout(t, root, "android-ctkip", names)
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

// lockedBuffer is a log sink the console's handlers may write from several
// goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// plannedRollout plans, as root in the console, a rollout of profile to
// users (any unassigned software token) and returns its id.
func plannedRollout(t *testing.T, root *browser, profile string, users []string) string {
	t.Helper()
	root.get("/console/rollouts")
	p := root.post("/console/rollouts", url.Values{"users": {strings.Join(users, "\n")}, "profile": {profile}, "pool": {"any"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("plan: %s", p)
	}
	return strings.TrimPrefix(p.header.Get("Location"), "/console/rollouts/")
}

// appliedRollout plans and applies, as root in the console, a rollout of
// profile to users (any unassigned software token) and returns its id and
// the users' item seqs.
func appliedRollout(t *testing.T, f *fixture, root *browser, profile string, users []string) (string, map[string]int) {
	t.Helper()
	id := plannedRollout(t, root, profile, users)
	root.get("/console/rollouts/" + id)
	if p := root.post("/console/rollouts/"+id+"/apply", nil); p.status != http.StatusSeeOther {
		t.Fatalf("apply: %s", p)
	}
	f.svc.WaitRollouts()
	page, err := f.svc.ListRolloutItems(f.ctx, id, 0, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[string]int{}
	for _, it := range page.Items {
		if it.Status != appliance.ItemDone || !it.Stored {
			t.Fatalf("item after apply: %+v", it)
		}
		seqs[it.UserName] = it.Seq
	}
	return id, seqs
}

// rolloutItem is one item of a rollout as the Service lists it.
func rolloutItem(t *testing.T, f *fixture, id string, seq int) appliance.RolloutItem {
	t.Helper()
	page, err := f.svc.ListRolloutItems(f.ctx, id, seq-1, 1, "")
	if err != nil || len(page.Items) != 1 || page.Items[0].Seq != seq {
		t.Fatalf("item %d of %s: %+v %v", seq, id, page.Items, err)
	}
	return page.Items[0]
}

// TestConsoleRolloutHandOut: a super admin hands out one user's delivery
// on the rollout page, by POST, once: the answer is the page itself
// (no-store) with what opens the token (the activation code provisions it;
// the CTF link and the token file open with the password shown to the
// seed the token holds). A GET, the help desk, the auditor and a form
// without the CSRF token spend nothing; a second hand-out, or one of a
// user whose delivery went out in the export files, is refused with the
// console's 404 page. No secret reaches the console's log or the audit.
func TestConsoleRolloutHandOut(t *testing.T) {
	tests := []struct {
		name    string
		profile string
		// opens checks the page's secrets against the token and returns
		// them, for the log and audit checks.
		opens func(t *testing.T, f *fixture, serial string, p page) []string
	}{
		{"ctkip", "android-ctkip", func(t *testing.T, f *fixture, serial string, p page) []string {
			code := regexp.MustCompile(`id="activation-code" class="big">(\d+)<`).FindStringSubmatch(p.body)
			if code == nil || len(code[1]) != appliance.CodeDigits || !contains(p, `id="ctkip-url">`+f.svc.CTKIPURL()+`<`) ||
				!strings.Contains(html.UnescapeString(p.body), "activationCode="+code[1]) || !contains(p, `id="qr" src="data:image/png;base64,`) {
				t.Fatalf("ctkip delivery page: %s", p)
			}
			ticket, err := f.svc.BeginProvisioning(f.ctx, code[1])
			if err != nil || ticket.Serial != serial {
				t.Fatalf("the page's activation code begins %+v %v, want token %s", ticket, err, serial)
			}
			return []string{code[1]}
		}},
		{"ctf", "ctf-phones", func(t *testing.T, f *fixture, serial string, p page) []string {
			link := regexp.MustCompile(`id="device-link">([^<]+)<`).FindStringSubmatch(p.body)
			pw := regexp.MustCompile(`id="ctf-password" class="big">([^<]+)<`).FindStringSubmatch(p.body)
			if link == nil || pw == nil || !contains(p, `id="qr" src="data:image/png;base64,`) {
				t.Fatalf("ctf delivery page: %s", p)
			}
			l, password := html.UnescapeString(link[1]), html.UnescapeString(pw[1])
			tok, err := tokenfile.DecodeCTF(l, tokenfile.CTFOptions{Password: password})
			if err != nil {
				t.Fatalf("the page's CTF link does not open with its password: %v", err)
			}
			assertSeed(t, f, serial, tok.Seed)
			return []string{password, l}
		}},
		{"file", "file-export", func(t *testing.T, f *fixture, serial string, p page) []string {
			doc := regexp.MustCompile(`href="data:application/xml;base64,([^"]+)" download="` + serial + `.sdtid"`).FindStringSubmatch(p.body)
			pw := regexp.MustCompile(`id="file-password" class="big">([^<]+)<`).FindStringSubmatch(p.body)
			if doc == nil || pw == nil {
				t.Fatalf("file delivery page: %s", p)
			}
			b, err := base64.StdEncoding.DecodeString(html.UnescapeString(doc[1]))
			if err != nil {
				t.Fatal(err)
			}
			password := html.UnescapeString(pw[1])
			res, err := tokenfile.ParseSDTID(bytes.NewReader(b), tokenfile.SDTIDOptions{Password: password})
			if err != nil || len(res.Records) != 1 {
				t.Fatalf("the page's token file does not open with its password: %v", err)
			}
			assertSeed(t, f, serial, res.Records[0].Seed)
			return []string{password}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs lockedBuffer
			f := newFixture(t, console.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if _, err := f.svc.CreateProfile(f.ctx, appliance.Profile{Name: "ctf-phones", DeviceType: appliance.DeviceAndroid,
				DeliveryMethod: appliance.DeliveryCTF, CTFBinding: appliance.CTFBindingPassword, PINMode: appliance.PINModeNone}); err != nil {
				t.Fatal(err)
			}
			names := rolloutUsers(t, f, 2)
			root := f.browser(t)
			root.signIn("root", rootPW)
			id, seqs := appliedRollout(t, f, root, tt.profile, names)
			loc := "/console/rollouts/" + id
			handOut := fmt.Sprintf("%s/items/%d/delivery", loc, seqs["r01"])

			rp := root.get(loc)
			for _, n := range names {
				if !contains(rp, fmt.Sprintf(`action="%s/items/%d/delivery"`, loc, seqs[n])) || !contains(rp, fmt.Sprintf(`id="hand-out-%d"`, seqs[n])) {
					t.Fatalf("rollout page without %s's hand-out button: %s", n, rp)
				}
			}

			// Nothing but the super admin's POST with the form's CSRF
			// token spends the delivery.
			help, audit := f.browser(t), f.browser(t)
			help.signIn("help", helpPW)
			audit.signIn("audit", auditPW)
			if p := help.get(loc); p.status != http.StatusOK || contains(p, "hand-out-") || contains(p, "/delivery") {
				t.Fatalf("help desk rollout page offers a hand-out: %s", p)
			}
			for _, refused := range []struct {
				name string
				do   func() page
				want int
			}{
				{"GET (a prefetch)", func() page { return root.get(handOut) }, http.StatusMethodNotAllowed},
				{"help desk", func() page { help.get(loc); return help.post(handOut, nil) }, http.StatusForbidden},
				{"auditor", func() page { audit.get(loc); return audit.post(handOut, nil) }, http.StatusForbidden},
				{"no CSRF token", func() page { return root.post(handOut, url.Values{"csrf": {"forged"}}) }, http.StatusForbidden},
				{"seq not a number", func() page { root.get(loc); return root.post(loc+"/items/x/delivery", nil) }, http.StatusBadRequest},
				{"no such item", func() page { root.get(loc); return root.post(loc+"/items/99/delivery", nil) }, http.StatusNotFound},
			} {
				if p := refused.do(); p.status != refused.want {
					t.Errorf("%s: %d, want %d: %s", refused.name, p.status, refused.want, p)
				}
				if it := rolloutItem(t, f, id, seqs["r01"]); !it.Stored || it.Taken {
					t.Fatalf("%s spent the delivery: %+v", refused.name, it)
				}
			}

			root.get(loc)
			p := root.post(handOut, nil)
			if p.status != http.StatusOK || p.header.Get("Cache-Control") != "no-store" || p.header.Get("Location") != "" {
				t.Fatalf("hand-out: %d %v", p.status, p.header)
			}
			it := rolloutItem(t, f, id, seqs["r01"])
			if !contains(p, `id="user-name">r01<`) || !contains(p, `id="serial">`+it.Serial+`<`) || !contains(p, `id="method">`+tt.name+`<`) ||
				!contains(p, "handed out once") || !contains(p, "not stored any more") || !contains(p, `href="`+loc+`"`) {
				t.Fatalf("hand-out page: %s", p)
			}
			secrets := tt.opens(t, f, it.Serial, p)
			if it.Stored || !it.Taken {
				t.Fatalf("item after the hand-out: %+v", it)
			}

			again := root.post(handOut, nil)
			if again.status != http.StatusNotFound || !contains(again, "has no delivery waiting") || !contains(again, "handed out once") {
				t.Fatalf("second hand-out: %s", again)
			}
			rp = root.get(loc)
			if contains(rp, fmt.Sprintf(`id="hand-out-%d"`, seqs["r01"])) || !contains(rp, fmt.Sprintf(`id="hand-out-%d"`, seqs["r02"])) ||
				!strings.Contains(regexp.MustCompile(`(?s)<tr data-user="r01">.*?</tr>`).FindString(rp.body), `class="delivery">taken<`) {
				t.Fatalf("rollout page after the hand-out: %s", rp)
			}

			// The export files leave r01 out; r02's delivery went out in
			// them and cannot be handed out again.
			for _, part := range []string{"links", "codes"} {
				if p := root.post(loc+"/export/"+part, nil); p.status != http.StatusOK {
					t.Fatalf("%s export: %s", part, p)
				} else if part == "codes" && (strings.Contains(p.body, "r01") || !strings.Contains(p.body, "r02")) {
					t.Fatalf("codes export: %s", p.body)
				}
				root.get(loc)
			}
			if p := root.post(fmt.Sprintf("%s/items/%d/delivery", loc, seqs["r02"]), nil); p.status != http.StatusNotFound || !contains(p, "has no delivery waiting") {
				t.Fatalf("hand-out after the exports: %s", p)
			}

			// Audited as root's action; no secret in the audit or the log.
			trail, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: "rollout.delivery.take", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			ok := false
			for _, rec := range trail.Items {
				if rec.Outcome == appliance.OutcomeSuccess && rec.Actor.Name == "root" && rec.Serial == it.Serial && rec.Target == id {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("no successful take audited as root: %+v", trail.Items)
			}
			all, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			js, err := json.Marshal(all.Items)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range secrets {
				if strings.Contains(string(js), s) || strings.Contains(logs.String(), s) {
					t.Fatalf("a delivery secret is in the audit trail or the console log")
				}
			}
		})
	}
}

// assertSeed fails unless seed is the seed token serial holds.
func assertSeed(t *testing.T, f *fixture, serial string, seed []byte) {
	t.Helper()
	want, err := f.svc.TokenSeed(f.ctx, serial)
	if err != nil || !bytes.Equal(seed, want) {
		t.Fatalf("the delivery of %s does not carry its seed (%v)", serial, err)
	}
}
