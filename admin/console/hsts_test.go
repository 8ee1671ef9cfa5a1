package console_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"tokend/admin/console"
)

// TestConsoleSendsHSTS: the console's pages, its redirects, its static
// files and a refused sign-in all carry Strict-Transport-Security over TLS.
func TestConsoleSendsHSTS(t *testing.T) {
	clk := &clock{now: time.Now().UTC()}
	svc, _ := newService(t, clk)
	srv := httptest.NewTLSServer(newHandler(svc, console.Options{Now: clk.Now}))
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	tests := []struct {
		name   string
		method string
		path   string
		body   string
	}{
		{name: "sign-in page", method: "GET", path: "/console/login"},
		{name: "redirect to sign in", method: "GET", path: "/console/"},
		{name: "static file", method: "GET", path: "/console/static/console.css"},
		{name: "refused sign-in", method: "POST", path: "/console/login", body: url.Values{"name": {"nobody"}, "password": {"wrong password 123"}}.Encode()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
				t.Errorf("%s %s (%d): Strict-Transport-Security %q", tt.method, tt.path, resp.StatusCode, got)
			}
		})
	}
}
