package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"tokend/appliance/otp"
)

// pamRadiusModule is where Debian's libpam-radius-auth installs the module.
const pamRadiusModule = "/lib/x86_64-linux-gnu/security/pam_radius_auth.so"

// waitListening waits for the "listening" log line of a server and returns
// its address.
func waitListening(t testing.TB, in *instance, server string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, line := range strings.Split(in.logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "listening" && m["server"] == server {
				return fmt.Sprint(m["addr"])
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s listener after %s:\n%s", server, within, in.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// provisionWithCLI runs `tokend provision URL CODE --ca … --save FILE` and
// returns the saved token's generator.
func provisionWithCLI(t *testing.T, in *instance, d distribution) otp.SecurID {
	t.Helper()
	file := filepath.Join(t.TempDir(), "alice.token")
	var out bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
	if code := a.execute(context.Background(), []string{"provision", d.CTKIPURL, d.ActivationCode, "--ca", filepath.Join(in.dir, "tls.crt"),
		"--save", file}); code != 0 {
		t.Fatalf("tokend provision: %d\n%s", code, out.String())
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var tf tokenFile
	if err := json.Unmarshal(raw, &tf); err != nil {
		t.Fatal(err)
	}
	seed, _ := hex.DecodeString(tf.Seed)
	gen, err := otp.NewSecurID(seed, tf.Serial, tf.Digits, tf.Interval)
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

func tokencodeAt(t *testing.T, g otp.SecurID, step int64) string {
	t.Helper()
	c, err := g.CodeAt(step)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// radclient runs Debian's radclient with one request and returns its output.
func radclient(t *testing.T, bin, addr, secret, attrs string) string {
	t.Helper()
	return radclientTries(t, bin, addr, secret, attrs, 2, 5)
}

// radclientTries is radclient with the retries and the seconds to wait for
// each answer.
func radclientTries(t *testing.T, bin, addr, secret, attrs string, retries, timeout int) string {
	t.Helper()
	// The secret goes through a file: a generated one may begin with '-',
	// which radclient's command line would take for an option.
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-x", "-r", strconv.Itoa(retries), "-t", strconv.Itoa(timeout), "-S", secretFile, addr, "auth")
	cmd.Stdin = strings.NewReader(attrs + "\n")
	out, _ := cmd.CombinedOutput() // exit 1 on a reject or no reply; the output tells
	return string(out)
}

var radState = regexp.MustCompile(`State = (0x[0-9a-f]+)`)

// TestAgentsEndToEnd provisions alice's token with `tokend provision`, then
// logs her in through every agent door of a running tokend: Debian's
// radclient (accept, and a next-tokencode challenge round), Linux PAM with
// pam_radius_auth driven by pamtester (with a challenge), and the RSA REST
// API over HTTPS.
func TestAgentsEndToEnd(t *testing.T) {
	radclientBin := requireTool(t, "radclient", "freeradius-utils")
	pamtester := requireTool(t, "pamtester", "pamtester")
	if _, err := os.Stat(pamRadiusModule); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing (apt-get install libpam-radius-auth)", pamRadiusModule)
		}
		t.Skipf("%s missing: apt-get install libpam-radius-auth", pamRadiusModule)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the PAM test writes /etc/pam.d and needs root")
		}
		t.Skip("the PAM test writes /etc/pam.d and needs root")
	}

	in := startTokend(t, t.TempDir(), "--radius-listen", "127.0.0.1:0", "--rest-authn-listen", "127.0.0.1:0")
	_, d := seedProcedure(t, in)
	gen := provisionWithCLI(t, in, d)
	step := time.Now().Unix() / 60

	if strings.Contains(in.logs.String(), `"server":"radius"`) {
		t.Fatal("the RADIUS listener is bound before any RADIUS agent exists")
	}
	var agent struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	in.json(t, "POST", "/api/v1/agents", map[string]string{"name": "pam", "kind": "radius", "address": "127.0.0.1"}, http.StatusCreated, &agent)
	if len(agent.Secret) < 16 {
		t.Fatalf("generated secret %q", agent.Secret)
	}
	radAddr := waitListening(t, in, "radius", 10*time.Second)

	// radclient: accept.
	out := radclient(t, radclientBin, radAddr, agent.Secret,
		fmt.Sprintf("User-Name=alice,User-Password=%s,Message-Authenticator=0x00", tokencodeAt(t, gen, step)))
	if !strings.Contains(out, "Received Access-Accept") {
		t.Fatalf("radclient accept:\n%s", out)
	}
	// radclient: a code 5 intervals ahead is challenged; the next one,
	// with the State echoed, is accepted.
	out = radclient(t, radclientBin, radAddr, agent.Secret,
		fmt.Sprintf("User-Name=alice,User-Password=%s,Message-Authenticator=0x00", tokencodeAt(t, gen, step+5)))
	m := radState.FindStringSubmatch(out)
	if !strings.Contains(out, "Received Access-Challenge") || !strings.Contains(out, "Enter the next tokencode:") || m == nil {
		t.Fatalf("radclient challenge:\n%s", out)
	}
	out = radclient(t, radclientBin, radAddr, agent.Secret,
		fmt.Sprintf("User-Name=alice,User-Password=%s,State=%s,Message-Authenticator=0x00", tokencodeAt(t, gen, step+6), m[1]))
	if !strings.Contains(out, "Received Access-Accept") {
		t.Fatalf("radclient next tokencode:\n%s", out)
	}

	// Linux PAM: pam_radius_auth asks tokend; pamtester answers the
	// password prompt and the next-tokencode prompt. The token's clock is
	// now 6 steps ahead (stored by the round above): step+11 is 5 away.
	conf := filepath.Join(t.TempDir(), "pam_radius.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "%s %s 3\n", radAddr, agent.Secret), 0o600); err != nil {
		t.Fatal(err)
	}
	service := fmt.Sprintf("tokend-test-%d", os.Getpid())
	pamFile := filepath.Join("/etc/pam.d", service)
	if err := os.WriteFile(pamFile, fmt.Appendf(nil, "auth required pam_radius_auth.so conf=%s\naccount required pam_permit.so\n", conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(pamFile) })
	pam := func(answers ...string) (string, error) {
		cmd := exec.Command(pamtester, "-v", service, "alice", "authenticate")
		cmd.Stdin = strings.NewReader(strings.Join(answers, "\n") + "\n")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	// Debian 12's pam_radius_auth 2.0.0 sends no Message-Authenticator:
	// while the agent requires one (the default) its requests are dropped;
	// the admin lets this old agent through explicitly.
	if out, err := pam(tokencodeAt(t, gen, step+11)); err == nil || !strings.Contains(out, "cannot retrieve authentication info") {
		t.Fatalf("pamtester without Message-Authenticator was answered: %v\n%s", err, out)
	}
	in.json(t, "PUT", "/api/v1/agents/"+agent.ID, map[string]any{"name": "pam", "address": "127.0.0.1", "require_message_authenticator": false},
		http.StatusOK, nil)
	out, err := pam(tokencodeAt(t, gen, step+11), tokencodeAt(t, gen, step+12))
	if err != nil || !strings.Contains(out, "successfully authenticated") || !strings.Contains(out, "Enter the next tokencode") {
		t.Fatalf("pamtester with a challenge: %v\n%s\n%s", err, out, in.logs.String())
	}
	out, err = pam("00000000")
	if err == nil || !strings.Contains(out, "Authentication failure") {
		t.Fatalf("pamtester with a wrong code: %v\n%s", err, out)
	}

	// The RSA REST API: a next-tokencode round over HTTPS (the token's clock
	// is now 12 steps ahead: step+18 is 6 away).
	var rest struct {
		AccessKey string `json:"access_key"`
	}
	in.json(t, "POST", "/api/v1/agents", map[string]string{"name": "idp", "kind": "rest"}, http.StatusCreated, &rest)
	restURL := "https://" + waitListening(t, in, "rest_authn", 5*time.Second) + "/mfa/v1_1/authn/"
	call := func(path string, body any) map[string]any {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", restURL+path, bytes.NewReader(b))
		req.Header.Set("client-key", rest.AccessKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := in.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
		}
		return out
	}
	cred := func(method, value string) []map[string]any {
		return []map[string]any{{"methodId": method, "collectedInputs": []map[string]string{{"name": method, "value": value}}}}
	}
	r := call("initialize", map[string]any{"clientId": "idp", "subjectName": "alice", "subjectCredentials": cred("SECURID", tokencodeAt(t, gen, step+18)),
		"context": map[string]string{"authnAttemptId": "", "messageId": "m-1", "inResponseTo": ""}})
	ctx := r["context"].(map[string]any)
	if r["attemptResponseCode"] != "CHALLENGE" {
		t.Fatalf("initialize: %v", r)
	}
	r = call("verify", map[string]any{"subjectCredentials": cred("SECURID_NEXT_TOKENCODE", tokencodeAt(t, gen, step+19)),
		"context": map[string]any{"authnAttemptId": ctx["authnAttemptId"], "messageId": "m-2", "inResponseTo": ctx["messageId"]}})
	if r["attemptResponseCode"] != "SUCCESS" {
		t.Fatalf("verify: %v", r)
	}

	// Ready with both doors up; metrics by agent kind and result; the
	// audit names the agents.
	in.call(t, "GET", "/readyz", "", nil, http.StatusOK, nil)
	resp, err := in.client.Get(in.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`tokend_agent_authentications_total{kind="radius",result="accept"} 3`,
		`tokend_agent_authentications_total{kind="radius",result="next_tokencode"} 2`,
		`tokend_agent_authentications_total{kind="radius",result="reject"} 1`,
		`tokend_agent_authentications_total{kind="rest",result="accept"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var audit struct {
		Items []struct {
			Action string `json:"action"`
			Actor  struct {
				Name string `json:"name"`
			} `json:"actor"`
		} `json:"items"`
	}
	in.call(t, "GET", "/api/v1/audit?action=auth&limit=100", "", nil, http.StatusOK, &audit)
	byAgent := map[string]int{}
	for _, it := range audit.Items {
		byAgent[it.Actor.Name]++
	}
	if byAgent["pam"] != 6 || byAgent["idp"] != 2 {
		t.Errorf("auth audit records by actor: %v", byAgent)
	}
	// The generated secret and the access key never reach the logs.
	for _, s := range []string{agent.Secret, rest.AccessKey} {
		if strings.Contains(in.logs.String(), s) {
			t.Error("an agent secret is in the logs")
		}
	}
}

// TestRADIUSListenerInReadyz: once a RADIUS agent exists the RADIUS
// listener must be up; a port taken by another process makes /readyz fail
// instead of passing silently.
func TestRADIUSListenerInReadyz(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	in := startTokend(t, t.TempDir(), "--radius-listen", taken.LocalAddr().String())
	in.call(t, "GET", "/readyz", "", nil, http.StatusOK, nil)
	in.json(t, "POST", "/api/v1/agents", map[string]string{"name": "vpn", "kind": "radius", "address": "127.0.0.1"}, http.StatusCreated, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := in.client.Get(in.admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d with the RADIUS port taken:\n%s", resp.StatusCode, in.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(in.logs.String(), "cannot bind the RADIUS listener") {
		t.Fatal("the bind failure is not logged")
	}
	// A restart with the agent in place fails at once, like any listener.
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
	code := a.execute(context.Background(), []string{"serve", "--data-dir", in.dir, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0",
		"--radius-listen", taken.LocalAddr().String()})
	if code == 0 || !strings.Contains(out.String(), "radius listener "+taken.LocalAddr().String()) {
		t.Fatalf("start with the RADIUS port taken: %d %q", code, out.String())
	}
}
