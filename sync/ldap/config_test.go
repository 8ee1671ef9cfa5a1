package ldap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestValidateReportsEverything(t *testing.T) {
	cfg := Config{URL: "http://x", StartTLS: true, BindDN: "not a dn", BindPassword: "s3cret-pw",
		BindPasswordFile: "/nonexistent", BaseDN: "", UserFilter: "(broken", Preset: "novell", PageSize: -1,
		BrakeThreshold: 2}.WithDefaults()
	err := cfg.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"scheme must be ldap or ldaps", "not both", "bind_password_file", "bind_dn",
		"base_dn is required", "user_filter", "preset", "page_size", "brake_threshold"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatal("password in the error")
	}
	good := Config{URL: "ldaps://dc.example.org", BindDN: "cn=r,dc=x", BindPassword: "p", BaseDN: "dc=x", Preset: PresetAD}
	if err := good.WithDefaults().Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
}

func TestSecretRedacted(t *testing.T) {
	cfg := Config{BindPassword: "s3cret-pw"}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("cfg", "pw", cfg.BindPassword, "cfg", cfg)
	j, _ := json.Marshal(cfg)
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg.BindPassword), string(j), logs.String()} {
		if strings.Contains(s, "s3cret-pw") {
			t.Fatalf("leaked: %s", s)
		}
	}
	if cfg.BindPassword.Reveal() != "s3cret-pw" {
		t.Fatal("Reveal")
	}
}

func TestFormatGUID(t *testing.T) {
	b := []byte{0xe0, 0x04, 0x25, 0x3f, 0x89, 0x4f, 0xd3, 0x11, 0x9a, 0x0c, 0x03, 0x05, 0xe8, 0x2c, 0x33, 0x01}
	if got := formatGUID(b); got != "3f2504e0-4f89-11d3-9a0c-0305e82c3301" {
		t.Fatalf("got %s", got)
	}
}
