package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/seal"
	"tokend/ctkip"
	"tokend/internal/stoken"
)

// syncBuffer collects a process's output for inspection while it runs.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	ready chan map[string]string
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	if s.ready != nil {
		sc := bufio.NewScanner(bytes.NewReader(p))
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "tokend ready" {
				out := map[string]string{}
				for k, v := range m {
					out[k] = fmt.Sprint(v)
				}
				s.ready <- out
				s.ready = nil
				break
			}
		}
	}
	return len(p), nil
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// instance is a running tokend (the real serve command, in process).
type instance struct {
	dir, admin, ctkipURL, token string
	client                      *http.Client
	logs                        *syncBuffer
	stop                        func() error
}

func startTokend(t testing.TB, dir string, args ...string) *instance {
	t.Helper()
	readyCh := make(chan map[string]string, 1)
	logs := &syncBuffer{ready: readyCh}
	a := newApp(strings.NewReader(""), logs, logs, func(string) (string, bool) { return "", false })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	argv := append([]string{"serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	go func() { done <- a.execute(ctx, argv) }()
	var ready map[string]string
	select {
	case ready = <-readyCh:
	case code := <-done:
		cancel()
		t.Fatalf("tokend exited with %d before it was ready:\n%s", code, logs.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("tokend not ready:\n%s", logs.String())
	}
	var once sync.Once
	var exit int
	stop := func() error {
		once.Do(func() { cancel(); exit = <-done })
		if exit != 0 {
			return fmt.Errorf("tokend exited with %d", exit)
		}
		return nil
	}
	t.Cleanup(func() { _ = stop() })
	token, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	client := newTrustingClient(t, filepath.Join(dir, "tls.crt"))
	return &instance{dir: dir, admin: "https://" + ready["admin"], ctkipURL: ready["ctkip_url"], token: strings.TrimSpace(string(token)),
		client: client, logs: logs, stop: stop}
}

// newTrustingClient is an HTTPS client (keep-alive for many concurrent
// requests) that trusts the given certificate.
func newTrustingClient(t testing.TB, certFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 256}}
}

// call does one admin API request and decodes the JSON answer into out.
func (in *instance) call(t testing.TB, method, path, ctype string, body io.Reader, want int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, in.admin+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+in.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

func (in *instance) json(t testing.TB, method, path string, body any, want int, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	in.call(t, method, path, "application/json", bytes.NewReader(b), want, out)
}

type distribution struct {
	CTKIPURL       string `json:"ctkip_url"`
	ActivationCode string `json:"activation_code"`
	DeviceURL      string `json:"device_url"`
	QRCodeURL      string `json:"qr_code_url"`
	ExpiresAt      string `json:"expires_at"`
}

// seedProcedure walks import → profile → user → assign → distribute over the
// API and returns the user id and the distribution of serial 000100000001.
func seedProcedure(t *testing.T, in *instance) (string, distribution) {
	t.Helper()
	var job struct {
		Imported int `json:"imported"`
	}
	in.call(t, "POST", "/api/v1/tokens/import?format=csv", "text/csv",
		strings.NewReader("serial\n000100000001\n000100000002\n000100000003\n000100000004\n000100000005\n"), http.StatusCreated, &job)
	if job.Imported != 5 {
		t.Fatalf("imported %d", job.Imported)
	}
	in.json(t, "POST", "/api/v1/profiles", map[string]any{"name": "android", "device_type": "android", "delivery_method": "ctkip",
		"digits": 8, "interval": 60, "pin_mode": "none", "activation_code_ttl": "24h"}, http.StatusCreated, nil)
	var user struct {
		ID string `json:"id"`
	}
	in.json(t, "POST", "/api/v1/users", map[string]string{"user_name": "alice", "display_name": "Alice Liddell", "email": "alice@example.org"},
		http.StatusCreated, &user)
	var users struct {
		Total int `json:"total"`
	}
	in.call(t, "GET", "/api/v1/users?search=liddell", "", nil, http.StatusOK, &users)
	if users.Total != 0 {
		// Quick search is by prefix: "liddell" is not a prefix of anything.
		t.Fatalf("search liddell: %d", users.Total)
	}
	in.call(t, "GET", "/api/v1/users?search=ALI", "", nil, http.StatusOK, &users)
	if users.Total != 1 {
		t.Fatalf("search ALI: %d", users.Total)
	}
	var free struct {
		Total int `json:"total"`
	}
	in.call(t, "GET", "/api/v1/tokens?assigned=false&search=00010000000", "", nil, http.StatusOK, &free)
	if free.Total != 5 {
		t.Fatalf("unassigned: %d", free.Total)
	}
	in.json(t, "POST", "/api/v1/users/"+user.ID+"/tokens", map[string]any{"serials": []string{"000100000001", "000100000002", "000100000003"}}, http.StatusOK, nil)
	var problem struct {
		Code string `json:"code"`
	}
	in.json(t, "POST", "/api/v1/users/"+user.ID+"/tokens", map[string]any{"serials": []string{"000100000004"}}, http.StatusConflict, &problem)
	if problem.Code != "token_limit" {
		t.Fatalf("fourth token: %+v", problem)
	}
	var d distribution
	in.json(t, "POST", "/api/v1/tokens/000100000001/distribution", map[string]string{"profile": "android"}, http.StatusCreated, &d)
	return user.ID, d
}

func ctkipClient(in *instance) *ctkip.Client {
	return &ctkip.Client{HTTP: in.client}
}

func TestSeedProcedureEndToEnd(t *testing.T) {
	dir := t.TempDir()
	in := startTokend(t, dir)
	_, d := seedProcedure(t, in)
	if len(d.ActivationCode) != 12 || d.CTKIPURL != in.ctkipURL || !strings.HasSuffix(d.CTKIPURL, "/ctkip/services/CtkipService") ||
		!strings.Contains(d.DeviceURL, "activationCode="+d.ActivationCode) {
		t.Fatalf("distribution = %+v (ctkip %s)", d, in.ctkipURL)
	}
	req, _ := http.NewRequest("GET", in.admin+d.QRCodeURL, nil)
	req.Header.Set("Authorization", "Bearer "+in.token)
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	png, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("qr.png: %d", resp.StatusCode)
	}

	res, err := ctkipClient(in).Provision(context.Background(), d.CTKIPURL, d.ActivationCode)
	if err != nil {
		t.Fatalf("provision: %v\n%s", err, in.logs.String())
	}
	if res.Serial != "000100000001" || res.Digits != 8 || res.Interval != 60 || res.UserID != "alice" {
		t.Fatalf("provisioned %+v", res)
	}
	if _, err := ctkipClient(in).Provision(context.Background(), d.CTKIPURL, d.ActivationCode); err == nil {
		t.Fatal("a used code provisioned again")
	}
	var tok struct {
		Provisioned bool `json:"provisioned"`
	}
	in.call(t, "GET", "/api/v1/tokens/000100000001", "", nil, http.StatusOK, &tok)
	if !tok.Provisioned {
		t.Fatal("token not provisioned")
	}
	// Debian's stoken, an independent implementation, computes the
	// tokencode from the seed the device derived; tokend accepts it.
	// (Without stoken a developer run leaves this step out; CI requires it.)
	if _, err := stoken.Path(); err == nil || os.Getenv("CI") == "true" {
		stoken.Require(t)
		code := stoken.Tokencode(t, res.Seed[:], res.Serial, res.Digits, res.Interval, stoken.NoPIN, time.Now())
		var auth struct {
			Result string `json:"result"`
		}
		in.json(t, "POST", "/api/v1/authenticate", map[string]string{"user_name": "alice", "passcode": code}, http.StatusOK, &auth)
		if auth.Result != "accept" {
			t.Fatalf("stoken's tokencode: %+v", auth)
		}
	}

	// Two devices racing with one code: exactly one gets the token.
	var d2 distribution
	in.json(t, "POST", "/api/v1/tokens/000100000002/distribution", map[string]string{"profile": "android"}, http.StatusCreated, &d2)
	var won atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := ctkipClient(in).Provision(context.Background(), d2.CTKIPURL, d2.ActivationCode); err == nil {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d devices provisioned with one code", won.Load())
	}

	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	// The seed tokend stored is the one the device derived.
	st, paths, err := openOffline(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := readMasterKey(paths.MasterKey, true)
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := seal.New(key, nil)
	svc, _ := appliance.New(appliance.Config{Store: st, Sealer: sealer})
	stored, err := svc.TokenSeed(context.Background(), "000100000001")
	if err != nil || !bytes.Equal(stored, res.Seed[:]) {
		t.Fatalf("stored seed differs from the device's: %v", err)
	}
	if rep, err := svc.VerifyAudit(context.Background()); err != nil {
		t.Fatalf("audit: %+v %v", rep, err)
	}
	st.Close()

	// No secret in the data dir or the logs.
	secrets := map[string][]byte{
		"activation code": []byte(d.ActivationCode), "seed": res.Seed[:], "seed hex": []byte(hex.EncodeToString(res.Seed[:])),
		"admin token in logs": []byte(in.token),
	}
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() == "admin-token" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for name, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("%s found in %s", name, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range secrets {
		if strings.Contains(in.logs.String(), string(s)) {
			t.Errorf("%s found in the logs", name)
		}
	}

	// A restart reuses the data dir: same admin token, same certificate.
	again := startTokend(t, dir)
	if again.token != in.token {
		t.Fatal("admin token changed on restart")
	}
	again.call(t, "GET", "/api/v1/tokens/000100000001", "", nil, http.StatusOK, nil)
}

func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	in := startTokend(t, dir)
	// A second tokend on the same data dir fails fast and clearly.
	var out bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
	code := a.execute(context.Background(), []string{"serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0"})
	if code == 0 || !strings.Contains(out.String(), "in use by another tokend") {
		t.Fatalf("second start: %d %q", code, out.String())
	}
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	// A wrong master key is refused with a clear message.
	other := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(other, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	code = a.execute(context.Background(), []string{"serve", "--data-dir", dir, "--master-key-file", other, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0"})
	if code == 0 || !strings.Contains(out.String(), "is not the key of the store") {
		t.Fatalf("wrong key: %d %q", code, out.String())
	}
	// audit verify works on the stopped store.
	out.Reset()
	if code := a.execute(context.Background(), []string{"audit", "verify", "--data-dir", dir}); code != 0 || !strings.Contains(out.String(), "audit chain intact") {
		t.Fatalf("audit verify: %d %q", code, out.String())
	}
}
