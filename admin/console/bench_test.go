package console_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tokend/admin/console"
	"tokend/appliance"
)

// BenchmarkConsolePages renders each page of the procedure with 100,000
// users and 100,000 tokens in memstore (seeding takes about 15 s: an Update
// rebuilds only the chunks it writes to). Run with
//
//	go test -run '^$' -bench ConsolePages -benchtime 20x ./admin/console/
func BenchmarkConsolePages(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("TOKEND_BENCH_USERS")); err == nil && v > 10 {
		n = v // smaller runs for a quick look
	}
	clk := &clock{now: time.Now().UTC()}
	svc, ctx := newService(b, clk)
	if _, _, err := svc.CreateAdmin(ctx, appliance.NewAdmin{Name: "root", Role: appliance.RoleSuperAdmin, Password: rootPW}); err != nil {
		b.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("serial\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "%012d\n", 100000000000+i)
	}
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csv.String())}); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				u, err := svc.CreateUser(ctx, appliance.NewUser{UserName: fmt.Sprintf("user%06d", i),
					DisplayName: fmt.Sprintf("User %06d", i), Email: fmt.Sprintf("user%06d@example.com", i)})
				if err != nil {
					b.Error(err)
					return
				}
				ids[i] = u.ID
			}
		}()
	}
	wg.Wait()
	if _, err := svc.AssignTokens(ctx, ids[4242], []string{"100000000001", "100000000002"}); err != nil {
		b.Fatal(err)
	}

	h := newHandler(svc, console.Options{Now: clk.Now})
	// Sign in once through the handler and reuse the cookie.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://tokend/console/", nil))
	cookie := rec.Result().Cookies()[0]
	csrf := csrfRE.FindStringSubmatch(rec.Body.String())[1]
	req := httptest.NewRequest(http.MethodPost, "https://tokend/console/login",
		strings.NewReader(url.Values{"csrf": {csrf}, "name": {"root"}, "password": {rootPW}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(cookie)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		b.Fatalf("sign in: %d", rec.Code)
	}
	cookie = rec.Result().Cookies()[0]

	for _, pg := range []struct{ name, path string }{
		{"home", "/console/"},
		{"search", "/console/users?q=user0042"},
		{"search-broad", "/console/users?q=user"},
		{"dashboard", "/console/users/" + ids[4242]},
		{"assign", "/console/users/" + ids[4242] + "/assign"},
		{"tokens", "/console/tokens"},
		{"tokens-unassigned", "/console/tokens?assigned=no&kind=software"},
		{"profiles", "/console/profiles"},
		{"audit", "/console/audit"},
		{"audit-filtered", "/console/audit?action=token.assign"},
	} {
		b.Run(pg.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "https://tokend"+pg.path, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d", pg.path, rec.Code)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
}
