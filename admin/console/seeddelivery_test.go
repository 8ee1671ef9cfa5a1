package console_test

import (
	"encoding/base64"
	"html"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"tokend/admin/console"
	"tokend/appliance"
	"tokend/internal/stoken"
)

// TestDistributeByFileCTFAndOTPAuth drives the console's distribution page
// with file, ctf and otpauth profiles: the token file is a one-time
// download link in the page (stoken reads it with the password shown), the
// CTF page warns that an unbound link is the seed in clear, and the
// otpauth page shows the URI and its QR code.
func TestDistributeByFileCTFAndOTPAuth(t *testing.T) {
	f := newFixture(t, console.Options{})
	for _, p := range []appliance.Profile{
		{Name: "ctf-open", DeviceType: appliance.DeviceAndroid, DeliveryMethod: appliance.DeliveryCTF, CTFBinding: appliance.CTFBindingNone, PINMode: appliance.PINModeNone},
		{Name: "app", DeviceType: appliance.DeviceTOTPApp, DeliveryMethod: appliance.DeliveryOTPAuth},
	} {
		if _, err := f.svc.CreateProfile(f.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	u := f.user(t, "gina", "Gina")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"100000000001", "100000000002", "100000000003"}); err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)
	b.signIn("help", helpPW)
	distribute := func(serial, profile string) page {
		t.Helper()
		path := "/console/users/" + u.ID + "/tokens/" + serial + "/distribute"
		if p := b.get(path); !contains(p, profile) {
			t.Fatalf("profile %s not offered: %s", profile, p)
		}
		return b.post(path, url.Values{"profile": {profile}})
	}

	p := distribute("100000000001", "file-export")
	m := regexp.MustCompile(`href="data:application/xml;base64,([^"]+)" download="100000000001.sdtid"`).FindStringSubmatch(p.body)
	pw := regexp.MustCompile(`id="file-password" class="big">([^<]+)<`).FindStringSubmatch(p.body)
	if p.status != 200 || m == nil || pw == nil || !contains(p, "separate channels") {
		t.Fatalf("file distribution page: %s", p)
	}
	doc, err := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	// The page was the one hand-out: nothing is left to download.
	if _, err := f.svc.TakeTokenFile(f.ctx, "100000000001"); err == nil {
		t.Fatal("the token file is still held after the page")
	}
	if _, err := stoken.Path(); err == nil || os.Getenv("CI") == "true" {
		dir := t.TempDir()
		path := filepath.Join(dir, "t.sdtid")
		if err := os.WriteFile(path, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := stoken.Run(dir, "show", "--file="+path, "--password="+html.UnescapeString(pw[1])); err != nil {
			t.Fatalf("stoken cannot read the page's token file: %v", err)
		}
	}

	p = distribute("100000000002", "ctf-open")
	if p.status != 200 || !contains(p, `id="unbound"`) || !contains(p, "the seed in clear") ||
		!contains(p, "http://127.0.0.1/securid/ctf?ctfData=2100000000002") || !contains(p, `id="qr" src="data:image/png;base64,`) {
		t.Fatalf("ctf distribution page: %s", p)
	}

	p = distribute("100000000003", "app")
	if p.status != 200 || !strings.Contains(html.UnescapeString(p.body), "otpauth://totp/tokend:gina?") || !contains(p, `id="qr"`) {
		t.Fatalf("otpauth distribution page: %s", p)
	}

	// A CT-KIP profile takes no password: refused, not dropped, and no
	// activation code is issued.
	p = b.post("/console/users/"+u.ID+"/tokens/100000000001/distribute", url.Values{"profile": {"android-ctkip"}, "password": {"unused"}})
	if p.status != 400 || !contains(p, "takes no password") {
		t.Fatalf("ctkip distribution with a password: %s", p)
	}
	if tok, err := f.svc.GetToken(f.ctx, "100000000001"); err != nil || len(tok.CodeHash) != 0 {
		t.Fatalf("a refused ctkip distribution issued a code: %v %+v", err, tok)
	}
}
