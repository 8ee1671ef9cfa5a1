package packaging

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// entries drops comments and blank lines and splits the rest into fields.
func entries(t *testing.T, path string) [][]string {
	var es [][]string
	for _, l := range readLines(t, path) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		es = append(es, strings.Fields(l))
	}
	return es
}

func TestSysusers(t *testing.T) {
	es := entries(t, "sysusers.conf")
	if len(es) != 1 {
		t.Fatalf("sysusers.conf: want exactly one entry, got %q", es)
	}
	e := strings.Join(es[0], " ")
	if want := `u tokend - "tokend token appliance" /var/lib/tokend /usr/sbin/nologin`; e != want {
		t.Errorf("sysusers.conf entry = %q, want %q", e, want)
	}
}

func TestTmpfiles(t *testing.T) {
	got := map[string]string{}
	for _, e := range entries(t, "tmpfiles.conf") {
		if len(e) != 6 {
			t.Fatalf("tmpfiles.conf: want 6 fields, got %q", e)
		}
		got[e[1]] = strings.Join(append([]string{e[0]}, e[2:]...), " ")
	}
	want := map[string]string{
		"/etc/tokend":     "d 0755 root root -",
		"/var/lib/tokend": "d 0700 tokend tokend -",
	}
	for path, w := range want {
		if got[path] != w {
			t.Errorf("tmpfiles.conf %s = %q, want %q", path, got[path], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("tmpfiles.conf has entries %v, want only %v", got, want)
	}
}

// TestDefaultConfigKeys checks that the packaged /etc/tokend/tokend.yaml,
// commented keys included, only names keys of the daemon's configuration, and
// that no secret is configured in it. (The daemon's own config tests should
// also load packaging/tokend.yaml as a golden good file.)
func TestDefaultConfigKeys(t *testing.T) {
	known := map[string]map[string]bool{
		"": {"data_dir": true, "master_key_file": true, "admin_listen": true, "ctkip_listen": true,
			"ctkip_public_url": true, "tls_cert": true, "tls_key": true, "log": true, "metrics": true,
			"ctkip": true, "shutdown_timeout": true, "activation_code_ttl": true, "replacement_grace": true, "auth": true,
			"console": true, "radius": true, "rest_authn": true, "identity_sources": true,
			"node_id": true, "store": true},
		"auth": {"max_failures": true, "lockout_duration": true, "small_window": true, "large_window": true,
			"session_ttl": true, "pin_min_length": true, "pin_max_length": true, "pin_alphanumeric": true, "pin_system_generated": true,
			"emergency_max_lifetime": true},
		"log":     {"format": true, "level": true},
		"metrics": {"auth": true},
		"ctkip": {"rsa_bits": true, "session_ttl": true, "rate_per_client": true, "burst_per_client": true,
			"rate_total": true, "burst_total": true, "max_pending_per_client": true, "max_hellos_per_code": true},
		"console": {"max_failures": true, "lockout_duration": true, "rate_per_client": true, "burst_per_client": true,
			"rate_per_account": true, "burst_per_account": true, "argon2_slots": true},
		"radius": {"listen": true, "rate_per_agent": true, "burst_per_agent": true, "max_in_flight": true,
			"duplicate_window": true},
		"rest_authn":       {"listen": true},
		"identity_sources": {"credentials_dir": true},
		"store": {"backend": true, "etcd_endpoints": true, "etcd_ca": true, "etcd_cert": true, "etcd_key": true,
			"etcd_username": true, "etcd_password_file": true, "etcd_prefix": true, "etcd_request_timeout": true, "nodes": true},
	}
	keyRE := regexp.MustCompile(`^#?( *)([a-z_]+):(.*)$`)
	parent := ""
	seen := map[string]bool{}
	for i, line := range readLines(t, "tokend.yaml") {
		if strings.Contains(line, "\t") {
			t.Errorf("tokend.yaml:%d: tab character", i+1)
		}
		m := keyRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent, key := m[1], m[2]
		if indent == "" {
			parent = ""
			if strings.TrimSpace(m[3]) == "" || strings.HasPrefix(strings.TrimSpace(m[3]), "#") {
				parent = key // a mapping such as log:
			}
			if !known[""][key] {
				t.Errorf("tokend.yaml:%d: unknown top-level key %q", i+1, key)
			}
			seen[key] = true
			continue
		}
		if parent == "" || !known[parent][key] {
			t.Errorf("tokend.yaml:%d: unknown key %q under %q", i+1, key, parent)
		}
	}
	for key := range known[""] {
		if !seen[key] {
			t.Errorf("tokend.yaml does not document %q", key)
		}
	}
	for i, line := range readLines(t, "tokend.yaml") {
		if regexp.MustCompile(`^master_key_file:\s*\S`).MatchString(line) || regexp.MustCompile(`(?i)^[a-z_]*(secret|password|token)[a-z_]*:`).MatchString(line) {
			t.Errorf("tokend.yaml:%d: secrets and key files are not configured here: %q", i+1, line)
		}
	}
}
