package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// requireTool finds a Debian tool: a failure under CI=true, a skip otherwise.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (apt-get install %s)", name, pkg)
		}
		t.Skipf("%s not found: apt-get install %s", name, pkg)
	}
	return p
}

// TestMetricsScrape walks the seed procedure on a running tokend, scrapes
// /metrics and lints the exposition with promtool.
func TestMetricsScrape(t *testing.T) {
	promtool := requireTool(t, "promtool", "prometheus")
	in := startTokend(t, t.TempDir())
	_, d := seedProcedure(t, in)
	if _, err := ctkipClient(in).Provision(context.Background(), d.CTKIPURL, d.ActivationCode); err != nil {
		t.Fatal(err)
	}
	// A refused code shows up as an outcome too.
	if _, err := ctkipClient(in).Provision(context.Background(), d.CTKIPURL, "000000000000"); err == nil {
		t.Fatal("a made-up code provisioned")
	}
	resp, err := in.client.Get(in.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	text := string(body)
	for _, want := range []string{
		`tokend_build_info{`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
		`tokend_http_requests_total{code="201",listener="admin",method="POST",route="/api/v1/tokens/:serial/distribution"} 1`,
		`tokend_http_requests_total{code="200",listener="ctkip",method="POST",route="/ctkip/services/CtkipService"}`,
		`tokend_ctkip_requests_total{outcome="success",step="finished"} 1`,
		`tokend_ctkip_requests_total{outcome="bad_code",step="hello"} 1`,
		`tokend_ctkip_exchange_duration_seconds_count 1`,
		`tokend_tokens{kind="software",state="enabled"} 3`,
		`tokend_tokens{kind="software",state="disabled"} 2`,
		`tokend_tokens_assigned 3`,
		`tokend_tokens_provisioned 1`,
		`tokend_users{active="true",source="internal"} 1`,
		`tokend_activation_codes_outstanding 0`,
		`tokend_store_commit_duration_seconds_count`,
		`tokend_store_size_bytes `,
		`tokend_tls_certificate_expiry_timestamp_seconds{listener="admin"}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	// No serial, user name or code is ever a label.
	for _, secretish := range []string{"000100000001", "alice", d.ActivationCode} {
		for _, line := range strings.Split(text, "\n") {
			if !strings.HasPrefix(line, "#") && strings.Contains(line, secretish) {
				t.Errorf("metric line carries %q: %s", secretish, line)
			}
		}
	}
}
