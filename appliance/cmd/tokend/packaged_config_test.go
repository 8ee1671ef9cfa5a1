package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPackagedConfig loads the .deb's /etc/tokend/tokend.yaml: as shipped,
// and with every commented key switched on, which must then equal the
// defaults it documents.
func TestPackagedConfig(t *testing.T) {
	raw, err := os.ReadFile("../../../packaging/tokend.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := decodeConfig(strings.NewReader(string(raw)), "tokend.yaml", defaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.DataDir, want.AdminListen, want.CTKIPListen = "/var/lib/tokend", "127.0.0.1:8443", "127.0.0.1:8444"
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Fatalf("packaged config (-want +got):\n%s", diff)
	}
	// "#key: value" and "#  key: value" lines are commented defaults; drop
	// trailing comments so the values decode.
	uncomment := regexp.MustCompile(`(?m)^#( *[a-z_]+:[^#\n]*?)([ \t]+#[^\n]*)?$`)
	on := uncomment.ReplaceAllString(string(raw), "$1")
	all, err := decodeConfig(strings.NewReader(on), "tokend.yaml (all keys)", defaultConfig())
	if err != nil {
		t.Fatalf("%v\n%s", err, on)
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Fatalf("commented defaults differ from the real ones (-real +documented):\n%s", diff)
	}
}
