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
func (in *instance) importRSA(t *testing.T, query, password string, file []byte) (int, []byte) {
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
