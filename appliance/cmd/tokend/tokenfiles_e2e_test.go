package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	pqotp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"tokend/appliance/tokenfile"
	"tokend/internal/stoken"
)

type importReport struct {
	Imported    int `json:"imported"`
	Skipped     int `json:"skipped"`
	SkippedRows []struct {
		Row    int    `json:"row"`
		Serial string `json:"serial"`
		Reason string `json:"reason"`
	} `json:"skipped_rows"`
	Rejected []struct {
		Row    int    `json:"row"`
		Reason string `json:"reason"`
	} `json:"rejected"`
}

// importRSA posts a token file over HTTPS with format and an optional
// X-Token-File-Password, and returns the status and body.
func (in *instance) importRSA(t testing.TB, query, password string, file []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", in.admin+"/api/v1/tokens/import?"+query, bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+in.token)
	req.Header.Set("Content-Type", "application/xml")
	if password != "" {
		req.Header.Set("X-Token-File-Password", password)
	}
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

var snRE = regexp.MustCompile(`<SN>(\d+)</SN>`)

// TestRSATokenFileImportEndToEnd imports what Debian's stoken issues (plain
// and password-protected) over HTTPS, checks the refusals (missing and
// wrong password, an altered header, an altered token in a batch), assigns
// the tokens, and has tokend accept the passcodes stoken computes from the
// same files.
func TestRSATokenFileImportEndToEnd(t *testing.T) {
	stoken.Require(t)
	in := startTokend(t, t.TempDir())
	work := t.TempDir()
	const filePW = "s3cret-file-pw"
	issue := func(args ...string) ([]byte, string) {
		t.Helper()
		out, err := stoken.Run(work, append([]string{"issue"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		m := snRE.FindSubmatch(out)
		if m == nil {
			t.Fatalf("no serial in stoken's file:\n%s", out)
		}
		return out, string(m[1])
	}
	plain, plainSN := issue()
	prot, protSN := issue("--new-password=" + filePW)

	for _, tc := range []struct {
		name, query, password string
		file                  []byte
		status                int
		says                  string
	}{
		{name: "protected, no password", query: "format=rsa", file: prot, status: http.StatusUnprocessableEntity, says: "protected by a password"},
		{name: "protected, wrong password", query: "format=rsa", password: "not-it", file: prot, status: http.StatusUnprocessableEntity, says: "wrong password"},
		{name: "header altered", query: "format=rsa", file: bytes.Replace(plain, []byte("<DefDigits>8<"), []byte("<DefDigits>6<"), 1),
			status: http.StatusUnprocessableEntity, says: "header MAC mismatch"},
		{name: "dry run", query: "format=rsa&dry_run=true", file: plain, status: http.StatusOK, says: `"imported":1`},
		{name: "plain", query: "format=rsa", file: plain, status: http.StatusCreated, says: `"imported":1`},
		{name: "protected, alias sdtid", query: "format=sdtid", password: filePW, file: prot, status: http.StatusCreated, says: `"imported":1`},
		{name: "again: duplicate", query: "format=rsa", file: plain, status: http.StatusCreated, says: "duplicate serial"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := in.importRSA(t, tc.query, tc.password, tc.file)
			if status != tc.status || !strings.Contains(string(body), tc.says) {
				t.Fatalf("status %d, want %d saying %q: %s", status, tc.status, tc.says, body)
			}
			if strings.Contains(string(body), filePW) {
				t.Fatalf("the answer shows the password: %s", body)
			}
		})
	}
	if strings.Contains(in.logs.String(), filePW) {
		t.Fatal("the logs show the file password")
	}

	// A batch with one altered token: the others import, the altered one
	// is reported with its position and serial.
	var batch bytes.Buffer
	w, err := tokenfile.NewSDTIDWriter(&batch, tokenfile.SDTIDHeader{Digits: 8, Interval: 60, PINMode: tokenfile.PINModeFob,
		Expires: time.Now().AddDate(2, 0, 0), Birth: time.Now(), Rand: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		seed := make([]byte, 16)
		_, _ = rand.Read(seed)
		if err := w.Add(tokenfile.SDTIDToken{Serial: fmt.Sprintf("8001000000%02d", i+1), Seed: seed}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(batch.Bytes(), []byte("<SN>800100000002<"), []byte("<SN>800100000009<"), 1)
	status, body := in.importRSA(t, "format=rsa", "", altered)
	var rep importReport
	if err := json.Unmarshal(body, &rep); err != nil || status != http.StatusCreated {
		t.Fatalf("batch: %d %s", status, body)
	}
	if rep.Imported != 2 || len(rep.Rejected) != 1 || rep.Rejected[0].Row != 2 ||
		!strings.Contains(rep.Rejected[0].Reason, `token MAC mismatch for serial "800100000009"`) {
		t.Fatalf("batch report: %s", body)
	}

	// Assign, enable, set a PIN; stoken's passcodes (PINPad: the PIN is
	// folded into the code, as the RSA app does) are accepted.
	var user struct {
		ID string `json:"id"`
	}
	in.json(t, "POST", "/api/v1/users", map[string]string{"user_name": "carol"}, http.StatusCreated, &user)
	in.json(t, "POST", "/api/v1/users/"+user.ID+"/tokens", map[string]any{"serials": []string{plainSN, protSN}}, http.StatusOK, nil)
	var tok struct {
		PINMode        string `json:"pin_mode"`
		NewPINRequired bool   `json:"new_pin_required"`
		Kind           string `json:"kind"`
	}
	in.call(t, "GET", "/api/v1/tokens/"+plainSN, "", nil, http.StatusOK, &tok)
	if tok.PINMode != "pinpad" || !tok.NewPINRequired || tok.Kind != "software" {
		t.Fatalf("imported token %+v", tok)
	}
	// Overwrite never touches an assigned token.
	status, body = in.importRSA(t, "format=rsa&on_duplicate=overwrite", "", plain)
	if status != http.StatusCreated || !strings.Contains(string(body), "assigned tokens are never overwritten") {
		t.Fatalf("overwrite of an assigned token: %d %s", status, body)
	}

	const pin = "1357"
	for _, tc := range []struct {
		serial, password string
		file             []byte
	}{
		{serial: plainSN, file: plain},
		{serial: protSN, password: filePW, file: prot},
	} {
		in.json(t, "POST", "/api/v1/tokens/"+tc.serial+"/enable", nil, http.StatusOK, nil)
		in.json(t, "POST", "/api/v1/tokens/"+tc.serial+"/pin", map[string]string{"pin": pin}, http.StatusOK, nil)
		path := filepath.Join(work, tc.serial+".sdtid")
		if err := os.WriteFile(path, tc.file, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"tokencode", "--force", "--file=" + path, "--pin=" + pin}
		if tc.password != "" {
			args = append(args, "--password="+tc.password)
		}
		out, err := stoken.Run(work, args...)
		if err != nil {
			t.Fatal(err)
		}
		var auth struct {
			Result string `json:"result"`
		}
		in.json(t, "POST", "/api/v1/authenticate", map[string]string{"user_name": "carol", "passcode": strings.TrimSpace(string(out))},
			http.StatusOK, &auth)
		if auth.Result != "accept" {
			t.Fatalf("serial %s: stoken's passcode: %+v", tc.serial, auth)
		}
	}
}

type seedDelivery struct {
	DeliveryMethod string `json:"delivery_method"`
	FileURL        string `json:"file_url"`
	FilePassword   string `json:"file_password"`
	ExpiresAt      string `json:"expires_at"`
	CTF            string `json:"ctf"`
	DeviceURL      string `json:"device_url"`
	QRCodeURL      string `json:"qr_code_url"`
}

// get does one authenticated GET and returns status, content type and body.
func (in *instance) get(t *testing.T, path string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", in.admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+in.token)
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// authenticate sends user's passcode to POST /authenticate and returns the
// result.
func (in *instance) authenticate(t *testing.T, user, passcode string) string {
	t.Helper()
	var auth struct {
		Result string `json:"result"`
	}
	in.json(t, "POST", "/api/v1/authenticate", map[string]string{"user_name": user, "passcode": passcode}, http.StatusOK, &auth)
	return auth.Result
}

// TestSeedDeliveryByFileAndCTFEndToEnd distributes software tokens by
// token file and by CTF string over HTTPS, has Debian's stoken read back
// every form (file with a generated and a chosen password; CTF as Android
// and iOS links and bare, unbound, password- and device-bound), and has
// tokend accept the tokencodes stoken prints. The file downloads once, the
// QR code draws once, and a re-issue kills the previous seed.
func TestSeedDeliveryByFileAndCTFEndToEnd(t *testing.T) {
	stoken.Require(t)
	in := startTokend(t, t.TempDir())
	work := t.TempDir()
	var job struct {
		Imported int `json:"imported"`
	}
	in.call(t, "POST", "/api/v1/tokens/import?format=csv", "text/csv", strings.NewReader(
		"serial\n000300000001\n000300000002\n000300000003\n000300000004\n000300000005\n000300000006\n"), http.StatusCreated, &job)
	if job.Imported != 6 {
		t.Fatalf("imported %d", job.Imported)
	}
	for _, p := range []map[string]any{
		{"name": "file", "device_type": "generic", "delivery_method": "file", "pin_mode": "none", "digits": 8, "interval": 60},
		{"name": "ctf-android", "device_type": "android", "delivery_method": "ctf", "ctf_binding": "none", "pin_mode": "none"},
		{"name": "ctf-ios-pw", "device_type": "ios", "delivery_method": "ctf", "pin_mode": "none", "digits": 6, "interval": 30},
		{"name": "ctf-dev", "device_type": "generic", "delivery_method": "ctf", "ctf_binding": "device_id", "pin_mode": "none"},
	} {
		in.json(t, "POST", "/api/v1/profiles", p, http.StatusCreated, nil)
	}
	var prof struct {
		CTFBinding string `json:"ctf_binding"`
	}
	in.call(t, "GET", "/api/v1/profiles/ctf-ios-pw", "", nil, http.StatusOK, &prof)
	if prof.CTFBinding != "password" {
		t.Fatalf("ctf profile without a binding defaults to %q, want password", prof.CTFBinding)
	}
	for u, serials := range map[string][]string{"dave": {"000300000001", "000300000002", "000300000003"}, "erin": {"000300000004", "000300000005", "000300000006"}} {
		var user struct {
			ID string `json:"id"`
		}
		in.json(t, "POST", "/api/v1/users", map[string]string{"user_name": u}, http.StatusCreated, &user)
		in.json(t, "POST", "/api/v1/users/"+user.ID+"/tokens", map[string]any{"serials": serials}, http.StatusOK, nil)
	}
	// stokenCode runs stoken on a file or token string with its binding.
	stokenCode := func(t *testing.T, source, password, devid string, extra ...string) string {
		t.Helper()
		args := append([]string{"tokencode", "--force", "--batch", source, "--pin=0000"}, extra...)
		if password != "" {
			args = append(args, "--password="+password)
		}
		if devid != "" {
			args = append(args, "--devid="+devid)
		}
		out, err := stoken.Run(work, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	var secrets []string

	t.Run("file, generated password", func(t *testing.T) {
		var d seedDelivery
		in.json(t, "POST", "/api/v1/tokens/000300000001/distribution", map[string]string{"profile": "file"}, http.StatusCreated, &d)
		if d.DeliveryMethod != "file" || d.FileURL != "/api/v1/tokens/000300000001/distribution/token.sdtid" || d.FilePassword == "" || d.ExpiresAt == "" {
			t.Fatalf("delivery %+v", d)
		}
		secrets = append(secrets, d.FilePassword)
		status, ctype, doc := in.get(t, d.FileURL)
		if status != http.StatusOK || ctype != "application/xml" || !bytes.Contains(doc, []byte("<TKNBatch>")) {
			t.Fatalf("download: %d %s %s", status, ctype, doc)
		}
		if status, _, body := in.get(t, d.FileURL); status != http.StatusNotFound {
			t.Fatalf("second download: %d %s", status, body)
		}
		path := filepath.Join(work, "dave1.sdtid")
		if err := os.WriteFile(path, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		code := stokenCode(t, "--file="+path, d.FilePassword, "")
		if len(code) != 8 {
			t.Fatalf("stoken code %q", code)
		}
		if r := in.authenticate(t, "dave", code); r != "accept" {
			t.Fatalf("stoken's code from the file: %s", r)
		}
		// Without the password stoken cannot open the file.
		if out, err := stoken.Run(work, "tokencode", "--batch", "--force", "--file="+path, "--pin=0000", "--password=nope"); err == nil {
			t.Fatalf("stoken opened the file with a wrong password: %s", out)
		}

		// A re-issue generates a new seed: the old file's codes stop.
		var d2 seedDelivery
		in.json(t, "POST", "/api/v1/tokens/000300000001/distribution", map[string]string{"profile": "file", "password": "chosen-pw-1"}, http.StatusCreated, &d2)
		if d2.FilePassword != "" {
			t.Fatalf("a chosen password is echoed: %+v", d2)
		}
		secrets = append(secrets, "chosen-pw-1")
		if r := in.authenticate(t, "dave", stokenCode(t, "--file="+path, d.FilePassword, "", "--next")); r == "accept" {
			t.Fatal("the replaced seed still authenticates")
		}
		_, _, doc2 := in.get(t, d2.FileURL)
		path2 := filepath.Join(work, "dave1b.sdtid")
		if err := os.WriteFile(path2, doc2, 0o600); err != nil {
			t.Fatal(err)
		}
		if r := in.authenticate(t, "dave", stokenCode(t, "--file="+path2, "chosen-pw-1", "", "--next")); r != "accept" {
			t.Fatalf("the new file's code: %s", r)
		}
	})

	for _, tc := range []struct {
		name, serial, user, profile, password, devid, prefix string
		digits                                               int
	}{
		{name: "ctf android unbound", serial: "000300000002", user: "dave", profile: "ctf-android", prefix: "http://127.0.0.1/securid/ctf?ctfData=", digits: 8},
		{name: "ctf ios password", serial: "000300000004", user: "erin", profile: "ctf-ios-pw", password: "Tr0ub4dor&3", prefix: "com.rsa.securid.iphone://ctf?ctfData=", digits: 6},
		{name: "ctf numeric device-bound", serial: "000300000005", user: "erin", profile: "ctf-dev", devid: "0123456789abcdef0123456789abcdef", prefix: "2000300000005", digits: 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d seedDelivery
			in.json(t, "POST", "/api/v1/tokens/"+tc.serial+"/distribution", map[string]string{"profile": tc.profile,
				"password": tc.password, "device_id": tc.devid}, http.StatusCreated, &d)
			if len(d.CTF) != 81 || !strings.HasPrefix(d.DeviceURL, tc.prefix) || !strings.HasSuffix(d.DeviceURL, d.CTF) || d.QRCodeURL == "" {
				t.Fatalf("delivery %+v", d)
			}
			secrets = append(secrets, d.CTF)
			code := stokenCode(t, "--token="+d.DeviceURL, tc.password, tc.devid)
			if len(code) != tc.digits {
				t.Fatalf("stoken code %q", code)
			}
			if r := in.authenticate(t, tc.user, code); r != "accept" {
				t.Fatalf("stoken's code from the CTF link: %s", r)
			}
			if status, ctype, _ := in.get(t, d.QRCodeURL); status != http.StatusOK || ctype != "image/png" {
				t.Fatalf("QR code: %d %s", status, ctype)
			}
			if status, _, _ := in.get(t, d.QRCodeURL); status != http.StatusNotFound {
				t.Fatalf("second QR code: %d", status)
			}
		})
	}

	// A bound profile refuses a distribution without its binding.
	var problem struct {
		Code string `json:"code"`
	}
	in.json(t, "POST", "/api/v1/tokens/000300000006/distribution", map[string]string{"profile": "ctf-dev"}, http.StatusBadRequest, &problem)
	if problem.Code != "invalid_request" {
		t.Fatalf("unbound distribution of a bound profile: %+v", problem)
	}

	logs := in.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Fatalf("the logs show a delivered secret")
		}
	}
	var audit struct {
		Items []struct {
			Action string `json:"action"`
			Detail string `json:"detail"`
		} `json:"items"`
	}
	in.call(t, "GET", "/api/v1/audit?limit=200", "", nil, http.StatusOK, &audit)
	var seen []string
	for _, a := range audit.Items {
		if a.Action == "token.distribute" || a.Action == "token.distribution.download" {
			seen = append(seen, a.Action+" "+a.Detail)
		}
	}
	if !strings.Contains(strings.Join(seen, "\n"), "delivery=file new seed") || !strings.Contains(strings.Join(seen, "\n"), "token.distribution.download") {
		t.Fatalf("audit: %q", seen)
	}
}

// TestOTPAuthDeliveryEndToEnd issues TOTP tokens to authenticator apps over
// HTTPS: the otpauth:// URI is parsed and its codes computed by an
// independent implementation (github.com/pquerna/otp), and tokend accepts
// them; RFC 6238 defaults apply unless the profile says otherwise.
func TestOTPAuthDeliveryEndToEnd(t *testing.T) {
	in := startTokend(t, t.TempDir())
	in.call(t, "POST", "/api/v1/tokens/import?format=csv", "text/csv", strings.NewReader("serial\n000400000001\n000400000002\n"), http.StatusCreated, nil)
	var def struct {
		Digits   int    `json:"digits"`
		Interval int    `json:"interval"`
		Hash     string `json:"hash"`
		PINMode  string `json:"pin_mode"`
	}
	in.json(t, "POST", "/api/v1/profiles", map[string]any{"name": "app", "device_type": "totp-app", "delivery_method": "otpauth"}, http.StatusCreated, &def)
	if def.Digits != 6 || def.Interval != 30 || def.Hash != "sha1" || def.PINMode != "none" {
		t.Fatalf("otpauth profile defaults %+v, want RFC 6238's", def)
	}
	in.json(t, "POST", "/api/v1/profiles", map[string]any{"name": "app-256", "device_type": "totp-app", "delivery_method": "otpauth",
		"hash": "sha256", "digits": 8, "interval": 60, "display_name": "Example Corp"}, http.StatusCreated, nil)
	in.json(t, "POST", "/api/v1/profiles", map[string]any{"name": "bad", "device_type": "totp-app", "delivery_method": "ctkip"}, http.StatusBadRequest, nil)
	var user struct {
		ID string `json:"id"`
	}
	in.json(t, "POST", "/api/v1/users", map[string]string{"user_name": "frank"}, http.StatusCreated, &user)
	in.json(t, "POST", "/api/v1/users/"+user.ID+"/tokens", map[string]any{"serials": []string{"000400000001", "000400000002"}}, http.StatusOK, nil)

	for _, tc := range []struct {
		serial, profile, issuer string
		alg                     pqotp.Algorithm
		digits                  pqotp.Digits
		period                  uint64
	}{
		{serial: "000400000001", profile: "app", issuer: "tokend", alg: pqotp.AlgorithmSHA1, digits: pqotp.DigitsSix, period: 30},
		{serial: "000400000002", profile: "app-256", issuer: "Example Corp", alg: pqotp.AlgorithmSHA256, digits: pqotp.DigitsEight, period: 60},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			var d seedDelivery
			var raw struct {
				OTPAuthURL string `json:"otpauth_url"`
				QRCodeURL  string `json:"qr_code_url"`
			}
			b, _ := json.Marshal(map[string]string{"profile": tc.profile})
			req, _ := http.NewRequest("POST", in.admin+"/api/v1/tokens/"+tc.serial+"/distribution", bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+in.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := in.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("distribution: %d %q %s", resp.StatusCode, resp.Header.Get("Cache-Control"), body)
			}
			if err := json.Unmarshal(body, &raw); err != nil {
				t.Fatal(err)
			}
			_ = json.Unmarshal(body, &d)
			key, err := pqotp.NewKeyFromURL(raw.OTPAuthURL)
			if err != nil {
				t.Fatal(err)
			}
			if key.Type() != "totp" || key.Issuer() != tc.issuer || key.AccountName() != "frank" || key.Algorithm() != tc.alg ||
				key.Digits() != tc.digits || key.Period() != tc.period || d.DeliveryMethod != "otpauth" {
				t.Fatalf("otpauth URI %s", raw.OTPAuthURL)
			}
			code, err := totp.GenerateCodeCustom(key.Secret(), time.Now(), totp.ValidateOpts{Period: uint(key.Period()),
				Digits: key.Digits(), Algorithm: key.Algorithm()})
			if err != nil {
				t.Fatal(err)
			}
			if r := in.authenticate(t, "frank", code); r != "accept" {
				t.Fatalf("the app's code: %s", r)
			}
			if r := in.authenticate(t, "frank", code); r == "accept" {
				t.Fatal("a TOTP code was accepted twice")
			}
			if status, ctype, _ := in.get(t, raw.QRCodeURL); status != http.StatusOK || ctype != "image/png" {
				t.Fatalf("QR code: %d %s", status, ctype)
			}
			if status, _, _ := in.get(t, raw.QRCodeURL); status != http.StatusNotFound {
				t.Fatalf("second QR code: %d", status)
			}
			if strings.Contains(in.logs.String(), key.Secret()) {
				t.Fatal("the logs show the TOTP secret")
			}
		})
	}
}

// TestRSATokenFileRADIUS: a token imported from stoken's .sdtid (PINPad,
// PIN set by the help desk) logs its holder in through the RADIUS door with
// Debian's radclient and the passcode stoken computes.
func TestRSATokenFileRADIUS(t *testing.T) {
	stoken.Require(t)
	radclientBin := requireTool(t, "radclient", "freeradius-utils")
	in := startTokend(t, t.TempDir(), "--radius-listen", "127.0.0.1:0")
	work := t.TempDir()
	file, err := stoken.Run(work, "issue")
	if err != nil {
		t.Fatal(err)
	}
	serial := string(snRE.FindSubmatch(file)[1])
	if status, body := in.importRSA(t, "format=rsa", "", file); status != http.StatusCreated {
		t.Fatalf("import: %d %s", status, body)
	}
	var user struct {
		ID string `json:"id"`
	}
	in.json(t, "POST", "/api/v1/users", map[string]string{"user_name": "hank"}, http.StatusCreated, &user)
	in.json(t, "POST", "/api/v1/users/"+user.ID+"/tokens", map[string]any{"serials": []string{serial}}, http.StatusOK, nil)
	const pin = "8642"
	in.json(t, "POST", "/api/v1/tokens/"+serial+"/pin", map[string]string{"pin": pin}, http.StatusOK, nil)
	var agent struct {
		Secret string `json:"secret"`
	}
	in.json(t, "POST", "/api/v1/agents", map[string]string{"name": "vpn", "kind": "radius", "address": "127.0.0.1"}, http.StatusCreated, &agent)
	radAddr := waitListening(t, in, "radius", 10*time.Second)
	path := filepath.Join(work, "hank.sdtid")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := stoken.Run(work, "tokencode", "--force", "--file="+path, "--pin="+pin)
	if err != nil {
		t.Fatal(err)
	}
	res := radclient(t, radclientBin, radAddr, agent.Secret,
		fmt.Sprintf("User-Name=hank,User-Password=%s,Message-Authenticator=0x00", strings.TrimSpace(string(out))))
	if !strings.Contains(res, "Received Access-Accept") {
		t.Fatalf("radclient:\n%s", res)
	}
}
