package console_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"tokend/admin/console"
)

// TestImportRSAFileWithPassword imports the password-protected RSA token
// file vector through the console's import page: without its password the
// preview says so, with it the token is imported.
func TestImportRSAFileWithPassword(t *testing.T) {
	file, err := os.ReadFile("../../appliance/tokenfile/testdata/sdtid/password-hunter2.sdtid")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, console.Options{})
	b := f.browser(t)
	b.signIn("help", helpPW)
	for _, tc := range []struct {
		name, password string
		status         int
		says           string
	}{
		{name: "no password", status: http.StatusBadRequest, says: "protected by a password"},
		{name: "password", password: "hunter2", status: http.StatusOK, says: `<dd id="imported">1</dd>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.get("/console/tokens/import")
			var buf strings.Builder
			const boundary = "XbOuNdArY"
			for _, kv := range [][2]string{{"csrf", b.csrf}, {"format", "rsa"}, {"on_duplicate", "skip"}, {"file_password", tc.password}} {
				fmt.Fprintf(&buf, "--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", boundary, kv[0], kv[1])
			}
			fmt.Fprintf(&buf, "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.sdtid\"\r\nContent-Type: application/xml\r\n\r\n%s\r\n--%s--\r\n", boundary, file, boundary)
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/console/tokens/import", strings.NewReader(buf.String()))
			req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
			p := b.do(req)
			if p.status != tc.status || !contains(p, tc.says) {
				t.Fatalf("preview: %s", p)
			}
		})
	}
	if p := b.post("/console/tokens/import/apply", nil); p.status != http.StatusOK {
		t.Fatalf("apply: %s", p)
	}
	if tok, err := f.svc.GetToken(f.ctx, "711889909691"); err != nil || tok.PINMode != "pinpad" {
		t.Fatalf("imported token %+v: %v", tok, err)
	}
}
