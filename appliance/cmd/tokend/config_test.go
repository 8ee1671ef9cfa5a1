package main

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// parseFlags registers the config flags on a fresh flag set and parses args.
func parseFlags(t *testing.T, args ...string) *configFlags {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f := addConfigFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return f
}

// mapEnv is a lookupEnvFunc over a map.
func mapEnv(m map[string]string) lookupEnvFunc {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// writeFile writes content to name in a fresh temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// problemsOf returns the problems of a *ConfigError, failing otherwise.
func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want *ConfigError", err, err)
	}
	return ce.Problems
}

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := defaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	const yamlDoc = `
data_dir: /from/yaml
admin_listen: 127.0.0.1:1001
ctkip_listen: 127.0.0.1:1002
ctkip_public_url: https://yaml.example
log:
  level: warn
`
	yamlPath := writeFile(t, "tokend.yaml", yamlDoc)
	otherPath := writeFile(t, "other.yaml", "data_dir: /from/other\n")

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(*Config)
	}{
		{
			name: "defaults only",
			want: func(*Config) {},
		},
		{
			name: "yaml over defaults",
			args: []string{"--config", yamlPath},
			want: func(c *Config) {
				c.DataDir = "/from/yaml"
				c.AdminListen = "127.0.0.1:1001"
				c.CTKIPListen = "127.0.0.1:1002"
				c.CTKIPPublicURL = "https://yaml.example"
				c.Log.Level = "warn"
			},
		},
		{
			name: "TOKEND_CONFIG names the file",
			env:  map[string]string{"TOKEND_CONFIG": otherPath},
			want: func(c *Config) { c.DataDir = "/from/other" },
		},
		{
			name: "--config wins over TOKEND_CONFIG",
			args: []string{"--config", otherPath},
			env:  map[string]string{"TOKEND_CONFIG": yamlPath},
			want: func(c *Config) { c.DataDir = "/from/other" },
		},
		{
			name: "env over yaml",
			args: []string{"--config", yamlPath},
			env: map[string]string{
				"TOKEND_DATA_DIR":     "/from/env",
				"TOKEND_ADMIN_LISTEN": "127.0.0.1:2001",
				"TOKEND_LOG_LEVEL":    "error",
			},
			want: func(c *Config) {
				c.DataDir = "/from/env"
				c.AdminListen = "127.0.0.1:2001"
				c.CTKIPListen = "127.0.0.1:1002"
				c.CTKIPPublicURL = "https://yaml.example"
				c.Log.Level = "error"
			},
		},
		{
			name: "empty env variable counts as unset",
			args: []string{"--config", yamlPath},
			env:  map[string]string{"TOKEND_DATA_DIR": ""},
			want: func(c *Config) {
				c.DataDir = "/from/yaml"
				c.AdminListen = "127.0.0.1:1001"
				c.CTKIPListen = "127.0.0.1:1002"
				c.CTKIPPublicURL = "https://yaml.example"
				c.Log.Level = "warn"
			},
		},
		{
			name: "flags over env over yaml",
			args: []string{"--config", yamlPath, "--data-dir", "/from/flag", "--log-level=debug"},
			env: map[string]string{
				"TOKEND_DATA_DIR":     "/from/env",
				"TOKEND_ADMIN_LISTEN": "127.0.0.1:2001",
				"TOKEND_LOG_LEVEL":    "error",
			},
			want: func(c *Config) {
				c.DataDir = "/from/flag"
				c.AdminListen = "127.0.0.1:2001"
				c.CTKIPListen = "127.0.0.1:1002"
				c.CTKIPPublicURL = "https://yaml.example"
				c.Log.Level = "debug"
			},
		},
		{
			name: "an explicitly empty flag overrides",
			args: []string{"--config", yamlPath, "--ctkip-public-url="},
			env:  map[string]string{"TOKEND_CTKIP_PUBLIC_URL": "https://env.example"},
			want: func(c *Config) {
				c.DataDir = "/from/yaml"
				c.AdminListen = "127.0.0.1:1001"
				c.CTKIPListen = "127.0.0.1:1002"
				c.Log.Level = "warn"
			},
		},
		{
			name: "every environment variable",
			env: map[string]string{
				"TOKEND_DATA_DIR":         "/e/data",
				"TOKEND_MASTER_KEY_FILE":  "/e/master.key",
				"TOKEND_ADMIN_LISTEN":     "127.0.0.1:3001",
				"TOKEND_CTKIP_LISTEN":     "127.0.0.1:3002",
				"TOKEND_CTKIP_PUBLIC_URL": "https://env.example",
				"TOKEND_TLS_CERT":         "/e/tls.crt",
				"TOKEND_TLS_KEY":          "/e/tls.key",
				"TOKEND_LOG_FORMAT":       "json",
				"TOKEND_LOG_LEVEL":        "debug",
			},
			want: func(c *Config) {
				c.DataDir = "/e/data"
				c.MasterKeyFile = "/e/master.key"
				c.AdminListen = "127.0.0.1:3001"
				c.CTKIPListen = "127.0.0.1:3002"
				c.CTKIPPublicURL = "https://env.example"
				c.TLSCert = "/e/tls.crt"
				c.TLSKey = "/e/tls.key"
				c.Log = LogConfig{Format: "json", Level: "debug"}
			},
		},
		{
			name: "every flag",
			args: []string{
				"--data-dir=/f/data", "--master-key-file=/f/master.key",
				"--admin-listen=127.0.0.1:4001", "--ctkip-listen=127.0.0.1:4002",
				"--ctkip-public-url=https://flag.example",
				"--tls-cert=/f/tls.crt", "--tls-key=/f/tls.key",
				"--log-format=json", "--log-level=warn",
			},
			want: func(c *Config) {
				c.DataDir = "/f/data"
				c.MasterKeyFile = "/f/master.key"
				c.AdminListen = "127.0.0.1:4001"
				c.CTKIPListen = "127.0.0.1:4002"
				c.CTKIPPublicURL = "https://flag.example"
				c.TLSCert = "/f/tls.crt"
				c.TLSKey = "/f/tls.key"
				c.Log = LogConfig{Format: "json", Level: "warn"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadConfig(parseFlags(t, tt.args...), mapEnv(tt.env))
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			want := defaultConfig()
			tt.want(&want)
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		file string // config file content, if any (named FILE in want)
		args []string
		env  map[string]string
		want string // the whole error message
	}{
		{
			name: "missing config file",
			args: []string{"--config", "/nonexistent/tokend.yaml"},
			want: "config file /nonexistent/tokend.yaml: no such file or directory",
		},
		{
			name: "env value validated like the others",
			env:  map[string]string{"TOKEND_LOG_FORMAT": "logfmt"},
			want: `invalid configuration: TOKEND_LOG_FORMAT: log.format "logfmt": want one of "text", "json"`,
		},
		{
			name: "flag and env problems together",
			args: []string{"--admin-listen", "nope"},
			env:  map[string]string{"TOKEND_TLS_KEY": "/k"},
			want: `invalid configuration: 2 problems: --admin-listen: admin_listen "nope": missing port in address; TOKEND_TLS_KEY: tls_key is set but tls_cert is not; set both or neither`,
		},
		{
			name: "each problem names the layer that set its key",
			file: "admin_listen: nope\nlog:\n  format: logfmt\n  level: loud\nauth:\n  max_failures: -1\n",
			args: []string{"--log-level", "shouty"},
			env:  map[string]string{"TOKEND_LOG_FORMAT": "xml"},
			want: `invalid configuration (FILE): 4 problems: FILE:1: admin_listen "nope": missing port in address; ` +
				`TOKEND_LOG_FORMAT: log.format "xml": want one of "text", "json"; ` +
				`--log-level: log.level "shouty": want one of "debug", "info", "warn", "error"; ` +
				`FILE:6: auth.max_failures -1: must be positive`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			file := ""
			if tt.file != "" {
				file = filepath.Join(t.TempDir(), "tokend.yaml")
				if err := os.WriteFile(file, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"--config", file}, args...)
			}
			_, err := loadConfig(parseFlags(t, args...), mapEnv(tt.env))
			if err == nil {
				t.Fatal("loadConfig succeeded, want an error")
			}
			got := err.Error()
			if file != "" {
				got = strings.ReplaceAll(got, file, "FILE")
			}
			if got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string
	}{
		{name: "defaults", modify: func(*Config) {}},
		{
			name:   "credentials dir",
			modify: func(c *Config) { c.IdentitySources.CredentialsDir = "/etc/tokend/ldap" },
		},
		{
			name:   "credentials dir is the root",
			modify: func(c *Config) { c.IdentitySources.CredentialsDir = "/etc/.." },
			want:   []string{`identity_sources.credentials_dir "/etc/..": must be an absolute path to a directory other than /`},
		},
		{
			name:   "credentials dir is relative",
			modify: func(c *Config) { c.IdentitySources.CredentialsDir = "ldap" },
			want:   []string{`identity_sources.credentials_dir "ldap": must be an absolute path to a directory other than /`},
		},
		{
			name:   "empty data dir",
			modify: func(c *Config) { c.DataDir = "" },
			want:   []string{"data_dir: must not be empty"},
		},
		{
			name:   "listen without port",
			modify: func(c *Config) { c.AdminListen = "localhost" },
			want:   []string{`admin_listen "localhost": missing port in address`},
		},
		{
			name:   "listen with too many colons",
			modify: func(c *Config) { c.CTKIPListen = "::1:8444" },
			want:   []string{`ctkip_listen "::1:8444": too many colons in address`},
		},
		{
			name:   "listen with named port",
			modify: func(c *Config) { c.CTKIPListen = ":https" },
			want:   []string{`ctkip_listen ":https": port must be a number from 0 to 65535`},
		},
		{
			name:   "listen with port out of range",
			modify: func(c *Config) { c.AdminListen = ":65536" },
			want:   []string{`admin_listen ":65536": port must be a number from 0 to 65535`},
		},
		{
			name:   "listen on port 0 is allowed",
			modify: func(c *Config) { c.AdminListen, c.CTKIPListen = "127.0.0.1:0", "127.0.0.1:0" },
		},
		{
			name:   "ipv6 listen",
			modify: func(c *Config) { c.AdminListen = "[::1]:8443" },
		},
		{
			name:   "same listener",
			modify: func(c *Config) { c.AdminListen, c.CTKIPListen = ":9000", ":9000" },
			want:   []string{`admin_listen and ctkip_listen: both are ":9000"; they must differ`},
		},
		{
			name:   "wildcard overlaps a specific host",
			modify: func(c *Config) { c.AdminListen, c.CTKIPListen = "0.0.0.0:9000", "127.0.0.1:9000" },
			want:   []string{`admin_listen and ctkip_listen: both are "0.0.0.0:9000"; they must differ`},
		},
		{
			name:   "same port on different hosts is fine",
			modify: func(c *Config) { c.AdminListen, c.CTKIPListen = "127.0.0.1:9000", "127.0.0.2:9000" },
		},
		{
			name:   "public url http",
			modify: func(c *Config) { c.CTKIPPublicURL = "http://tokens.example.com" },
			want:   []string{`ctkip_public_url "http://tokens.example.com": must be an absolute https URL such as https://tokend.example.com:8444`},
		},
		{
			name:   "public url relative",
			modify: func(c *Config) { c.CTKIPPublicURL = "/ctkip" },
			want:   []string{`ctkip_public_url "/ctkip": must be an absolute https URL such as https://tokend.example.com:8444`},
		},
		{
			name:   "public url without host",
			modify: func(c *Config) { c.CTKIPPublicURL = "https:///ctkip" },
			want:   []string{`ctkip_public_url "https:///ctkip": must be an absolute https URL such as https://tokend.example.com:8444`},
		},
		{
			name:   "public url unparsable",
			modify: func(c *Config) { c.CTKIPPublicURL = "https://a b" },
			want:   []string{`ctkip_public_url "https://a b": not a URL: invalid character " " in host name`},
		},
		{
			name:   "public url with user info",
			modify: func(c *Config) { c.CTKIPPublicURL = "https://u:p@tokens.example.com" },
			want:   []string{`ctkip_public_url "https://u:p@tokens.example.com": must not contain user information`},
		},
		{
			name:   "public url with query",
			modify: func(c *Config) { c.CTKIPPublicURL = "https://tokens.example.com/?x=1" },
			want:   []string{`ctkip_public_url "https://tokens.example.com/?x=1": must not have a query or fragment`},
		},
		{
			name:   "public url with path and port",
			modify: func(c *Config) { c.CTKIPPublicURL = "https://tokens.example.com:443/ctkip/v1" },
		},
		{
			name:   "tls cert without key",
			modify: func(c *Config) { c.TLSCert = "/c" },
			want:   []string{"tls_cert is set but tls_key is not; set both or neither"},
		},
		{
			name:   "tls key without cert",
			modify: func(c *Config) { c.TLSKey = "/k" },
			want:   []string{"tls_key is set but tls_cert is not; set both or neither"},
		},
		{
			name:   "tls both",
			modify: func(c *Config) { c.TLSCert, c.TLSKey = "/c", "/k" },
		},
		{
			name:   "log format",
			modify: func(c *Config) { c.Log.Format = "JSON" },
			want:   []string{`log.format "JSON": want one of "text", "json"`},
		},
		{
			name:   "log level",
			modify: func(c *Config) { c.Log.Level = "trace" },
			want:   []string{`log.level "trace": want one of "debug", "info", "warn", "error"`},
		},
		{
			name:   "metrics auth",
			modify: func(c *Config) { c.Metrics.Auth = "basic" },
			want:   []string{`metrics.auth "basic": want one of "open", "token"`},
		},
		{
			name:   "rsa bits",
			modify: func(c *Config) { c.CTKIP.RSABits = 1536 },
			want:   []string{"ctkip.rsa_bits 1536: want one of 1024, 2048, 3072, 4096"},
		},
		{
			name: "every allowed rsa size",
			modify: func(c *Config) {
				for _, n := range []int{1024, 2048, 3072, 4096} {
					c.CTKIP.RSABits = n
					if err := c.Validate(); err != nil {
						panic(err)
					}
				}
			},
		},
		{
			name:   "session ttl zero",
			modify: func(c *Config) { c.CTKIP.SessionTTL = 0 },
			want:   []string{"ctkip.session_ttl 0s: must be positive"},
		},
		{
			name:   "shutdown timeout negative",
			modify: func(c *Config) { c.ShutdownTimeout = -time.Second },
			want:   []string{"shutdown_timeout -1s: must be positive"},
		},
		{
			name:   "activation code ttl zero",
			modify: func(c *Config) { c.ActivationCodeTTL = 0 },
			want:   []string{"activation_code_ttl 0s: must be positive"},
		},
		{
			name:   "rate per client zero",
			modify: func(c *Config) { c.CTKIP.RatePerClient = 0 },
			want:   []string{"ctkip.rate_per_client 0: must be a positive finite number"},
		},
		{
			name:   "rate total NaN",
			modify: func(c *Config) { c.CTKIP.RateTotal = math.NaN() },
			want:   []string{"ctkip.rate_total NaN: must be a positive finite number"},
		},
		{
			name:   "rate total infinite",
			modify: func(c *Config) { c.CTKIP.RateTotal = math.Inf(1) },
			want:   []string{"ctkip.rate_total +Inf: must be a positive finite number"},
		},
		{
			name:   "burst per client zero",
			modify: func(c *Config) { c.CTKIP.BurstPerClient = 0 },
			want:   []string{"ctkip.burst_per_client 0: must be positive"},
		},
		{
			name:   "burst total negative",
			modify: func(c *Config) { c.CTKIP.BurstTotal = -1 },
			want:   []string{"ctkip.burst_total -1: must be positive"},
		},
		{
			name: "every problem at once",
			modify: func(c *Config) {
				*c = Config{AdminListen: "x", CTKIPListen: "y", CTKIPPublicURL: "ftp://h", TLSKey: "/k"}
			},
			want: []string{
				"data_dir: must not be empty",
				`admin_listen "x": missing port in address`,
				`ctkip_listen "y": missing port in address`,
				`ctkip_public_url "ftp://h": must be an absolute https URL such as https://tokend.example.com:8444`,
				"tls_key is set but tls_cert is not; set both or neither",
				`log.format "": want one of "text", "json"`,
				`log.level "": want one of "debug", "info", "warn", "error"`,
				`metrics.auth "": want one of "open", "token"`,
				"ctkip.rsa_bits 0: want one of 1024, 2048, 3072, 4096",
				"ctkip.session_ttl 0s: must be positive",
				"shutdown_timeout 0s: must be positive",
				"activation_code_ttl 0s: must be positive",
				"replacement_grace 0s: must be positive",
				"ctkip.rate_per_client 0: must be a positive finite number",
				"ctkip.rate_total 0: must be a positive finite number",
				"ctkip.burst_per_client 0: must be positive",
				"ctkip.burst_total 0: must be positive",
				"ctkip.max_pending_per_client 0: must be positive",
				"ctkip.max_hellos_per_code 0: must be positive",
				"auth.max_failures 0: must be positive",
				"auth.small_window 0: must be positive",
				"auth.session_ttl 0s: must be positive",
				"auth.emergency_max_lifetime 0s: must be positive",
				"auth.pin_min_length 0, auth.pin_max_length 0: want 4 <= min <= max <= 16",
				"console.max_failures 0: must be positive",
				"console.rate_per_client 0: must be a positive finite number",
				"console.burst_per_client 0: must be positive",
				"console.rate_per_account 0: must be a positive finite number",
				"console.burst_per_account 0: must be positive",
				"radius.rate_per_agent 0: must be a positive finite number",
				"radius.burst_per_agent 0: must be positive",
				"radius.max_in_flight 0: must be positive",
				"radius.duplicate_window 0s: want more than 0 and at most 1m",
				"store.nodes 0: want 1 to 64 (the number of tokend nodes sharing the store)",
				`store.backend "": want "bolt" or "etcd"`,
			},
		},
		{
			name: "agents' doors",
			modify: func(c *Config) {
				c.RADIUS.Listen, c.RESTAuthn.Listen = "1812", ":8443"
			},
			want: []string{
				`radius.listen "1812": missing port in address`,
				`rest_authn.listen and admin_listen: both are ":8443"; they must differ`,
			},
		},
		{
			name:   "agents' doors off",
			modify: func(c *Config) { c.RADIUS.Listen, c.RESTAuthn.Listen = "", "" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultConfig()
			tt.modify(&cfg)
			err := cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if diff := cmp.Diff(tt.want, problemsOf(t, err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *ConfigError
		want string
	}{
		{"one problem", &ConfigError{Problems: []string{"a"}}, "invalid configuration: a"},
		{"two problems", &ConfigError{Problems: []string{"a", "b"}}, "invalid configuration: 2 problems: a; b"},
		{"with file", &ConfigError{File: "t.yaml", Problems: []string{"a"}}, "invalid configuration (t.yaml): a"},
		{"no problems", &ConfigError{}, "invalid configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestConfigFiles loads every golden file under testdata/config: good ones
// must give exactly the expected configuration, bad ones exactly the
// expected problems. A file without a row fails the test.
func TestConfigFiles(t *testing.T) {
	good := map[string]func(*Config){
		"empty.yaml": func(*Config) {},
		"full.yaml": func(c *Config) {
			*c = Config{
				DataDir:        "/var/lib/tokend",
				MasterKeyFile:  "/etc/tokend/master.key",
				AdminListen:    "127.0.0.1:9443",
				CTKIPListen:    "[::]:9444",
				CTKIPPublicURL: "https://tokens.example.com/ctkip",
				TLSCert:        "/etc/tokend/tls.crt",
				TLSKey:         "/etc/tokend/tls.key",
				Log:            LogConfig{Format: "json", Level: "debug"},
				Metrics:        MetricsConfig{Auth: "token"},
				CTKIP: CTKIPConfig{
					RSABits:        2048,
					SessionTTL:     90 * time.Second,
					RatePerClient:  1.5,
					BurstPerClient: 5,
					RateTotal:      100,
					BurstTotal:     1000,

					MaxPendingPerClient: 32,
					MaxHellosPerCode:    4,
				},
				Auth: AuthConfig{MaxFailures: 3, LockoutDuration: 0, SmallWindow: 2, LargeWindow: 20,
					SessionTTL: 2 * time.Minute, PINMinLength: 6, PINMaxLength: 8, PINAlphanumeric: true, PINSystemGenerated: true,
					EmergencyMaxLifetime: 24 * time.Hour},
				Console: ConsoleConfig{MaxFailures: 4, LockoutDuration: 0, RatePerClient: 0.5, BurstPerClient: 4,
					RatePerAccount: 0.05, BurstPerAccount: 3, Argon2Slots: 3},
				IdentitySources: IdentitySourcesConfig{CredentialsDir: "/etc/tokend/ldap"},
				RADIUS: RADIUSConfig{Listen: "127.0.0.1:1812", RatePerAgent: 50, BurstPerAgent: 100, MaxInFlight: 64,
					DuplicateWindow: 5 * time.Second},
				RESTAuthn: RESTAuthnConfig{Listen: ":5555"},
				Store: StoreConfig{Backend: "etcd", EtcdEndpoints: "https://etcd1.example.com:2379,https://etcd2.example.com:2379",
					EtcdCA: "/etc/tokend/etcd-ca.pem", EtcdCert: "/etc/tokend/etcd-client.pem", EtcdKey: "/etc/tokend/etcd-client.key",
					EtcdUsername: "tokend", EtcdPasswordFile: "/etc/tokend/etcd-password",
					EtcdPrefix: "/tokend/prod/", EtcdRequestTimeout: 2 * time.Second, Nodes: 3},
				ShutdownTimeout:   30 * time.Second,
				ActivationCodeTTL: 72 * time.Hour,
				ReplacementGrace:  48 * time.Hour,
			}
		},
		"partial.yaml": func(c *Config) {
			c.DataDir = "/srv/tokend"
			c.Log.Level = "warn"
			c.CTKIP.RSABits = 4096
			c.CTKIP.SessionTTL = 10 * time.Minute
		},
		"nulls.yaml": func(*Config) {},
	}
	bad := map[string][]string{
		"unknown-keys.yaml": {
			`unknown-keys.yaml:2: unknown key "listen"`,
			`unknown-keys.yaml:5: unknown key "log.colour"`,
			`unknown-keys.yaml:8: unknown key "ctkip.rsa_size"`,
			`unknown-keys.yaml:10: unknown key "metrics.path"`,
		},
		"wrong-types.yaml": {
			`wrong-types.yaml:2: invalid value "big": want an integer`,
			`wrong-types.yaml:3: invalid value "300": want a duration such as 5m or 90s`,
			`wrong-types.yaml:4: invalid value "fast": want a number`,
			`wrong-types.yaml:5: cannot unmarshal !!seq into int`,
			`wrong-types.yaml:6: invalid value "soon": want a duration such as 5m or 90s`,
			`wrong-types.yaml:7: invalid value "json": want a mapping of keys to values`,
		},
		"syntax.yaml": {
			"syntax.yaml:4: mapping values are not allowed in this context",
		},
		"two-documents.yaml": {
			"two-documents.yaml:2: only one YAML document is allowed",
		},
		"not-a-mapping.yaml": {
			"not-a-mapping.yaml:1: cannot unmarshal !!seq into main.Config",
		},
		"invalid-values.yaml": {
			"invalid-values.yaml:2: data_dir: must not be empty",
			`invalid-values.yaml:3: admin_listen "8443": missing port in address`,
			`invalid-values.yaml:4: ctkip_listen "localhost:https": port must be a number from 0 to 65535`,
			`invalid-values.yaml:5: ctkip_public_url "http://tokens.example.com": must be an absolute https URL such as https://tokend.example.com:8444`,
			"invalid-values.yaml:6: tls_cert is set but tls_key is not; set both or neither",
			`invalid-values.yaml:8: log.format "xml": want one of "text", "json"`,
			`invalid-values.yaml:9: log.level "verbose": want one of "debug", "info", "warn", "error"`,
			`invalid-values.yaml:11: metrics.auth "basic": want one of "open", "token"`,
			"invalid-values.yaml:13: ctkip.rsa_bits 512: want one of 1024, 2048, 3072, 4096",
			"invalid-values.yaml:14: ctkip.session_ttl 0s: must be positive",
			"invalid-values.yaml:19: shutdown_timeout -1s: must be positive",
			"invalid-values.yaml:20: activation_code_ttl 0s: must be positive",
			"invalid-values.yaml:15: ctkip.rate_per_client -1: must be a positive finite number",
			"invalid-values.yaml:17: ctkip.rate_total NaN: must be a positive finite number",
			"invalid-values.yaml:16: ctkip.burst_per_client 0: must be positive",
			"invalid-values.yaml:18: ctkip.burst_total -5: must be positive",
			"invalid-values.yaml:22: auth.max_failures 0: must be positive",
			"invalid-values.yaml:23: auth.lockout_duration -1m0s: must not be negative (0 locks until an admin unlocks)",
			"invalid-values.yaml:24: auth.large_window 2000: must be between auth.small_window (1) and 1000",
			"invalid-values.yaml:25: auth.pin_min_length 9, auth.pin_max_length 8: want 4 <= min <= max <= 16",
			"invalid-values.yaml:27: console.max_failures -1: must be positive",
			"invalid-values.yaml:28: console.lockout_duration -30m0s: must not be negative (0 locks until unlocked)",
			"invalid-values.yaml:29: console.rate_per_client 0: must be a positive finite number",
			"invalid-values.yaml:30: console.burst_per_client 0: must be positive",
			"invalid-values.yaml:31: console.rate_per_account +Inf: must be a positive finite number",
			"invalid-values.yaml:32: console.burst_per_account -2: must be positive",
			"invalid-values.yaml:33: console.argon2_slots 65: want 0 (one per core, at most 2) to 64",
			`invalid-values.yaml:35: identity_sources.credentials_dir "etc/tokend/ldap": must be an absolute path to a directory other than /`,
		},
		"cross-keys.yaml": {
			"cross-keys.yaml:5: admin_listen and ctkip_listen: both are \":8443\"; they must differ",
			"cross-keys.yaml:4: auth.large_window 10: must be between auth.small_window (20) and 1000",
		},
		"store.yaml": {
			`store.yaml:3: store.etcd_endpoints "http://etcd1:2379": plain http while store.etcd_ca or store.etcd_cert is set; use https`,
			`store.yaml:3: store.etcd_endpoints "etcd2:2379": want a URL such as https://etcd1:2379`,
			"store.yaml:5: store.etcd_cert and store.etcd_key: set both or neither",
			`store.yaml:6: store.etcd_prefix "tokend": must start and end with / (e.g. /tokend/)`,
		},
		"mixed.yaml": {
			`mixed.yaml:5: unknown key "ctkip.sesion_ttl"`,
			`mixed.yaml:2: admin_listen and ctkip_listen: both are ":8444"; they must differ`,
			"mixed.yaml:4: ctkip.rsa_bits 1000: want one of 1024, 2048, 3072, 4096",
		},
	}

	checkCovered(t, "testdata/config/good", mapKeys(good))
	checkCovered(t, "testdata/config/bad", mapKeys(bad))

	for name, modify := range good {
		t.Run("good/"+name, func(t *testing.T) {
			path := filepath.Join("testdata/config/good", name)
			got, err := loadConfig(parseFlags(t, "--config", path), mapEnv(nil))
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			want := defaultConfig()
			modify(&want)
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
	for name, want := range bad {
		t.Run("bad/"+name, func(t *testing.T) {
			dir := "testdata/config/bad"
			// Problems name the file as given; compare relative to dir.
			_, err := loadConfig(parseFlags(t, "--config", filepath.Join(dir, name)), mapEnv(nil))
			var got []string
			for _, p := range problemsOf(t, err) {
				got = append(got, strings.TrimPrefix(p, dir+"/"))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkCovered fails if the files in dir differ from names.
func checkCovered(t *testing.T, dir string, names []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	if diff := cmp.Diff(names, files); diff != "" {
		t.Errorf("%s: files and table rows differ (-rows +files):\n%s", dir, diff)
	}
}

func TestDecodeConfigEdgeCases(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string // problems; nil = success with defaults
	}{
		{name: "empty input"},
		{name: "only a document marker", input: "---\n"},
		{name: "too large", input: "# " + strings.Repeat("x", maxConfigSize), want: []string{"t.yaml: larger than 1048576 bytes"}},
		{name: "scalar document", input: "hello\n", want: []string{"t.yaml:1: invalid value \"hello\": want a mapping of keys to values"}},
		{name: "tab indentation", input: "log:\n\tformat: json\n", want: []string{"t.yaml:2: found character that cannot start any token"}},
		{name: "duplicate key", input: "data_dir: a\ndata_dir: b\n", want: []string{`t.yaml:2: mapping key "data_dir" already defined at line 1`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeConfig(strings.NewReader(tt.input), "t.yaml", defaultConfig())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("decodeConfig: %v", err)
				}
				if diff := cmp.Diff(defaultConfig(), got); diff != "" {
					t.Errorf("config (-want +got):\n%s", diff)
				}
				return
			}
			if diff := cmp.Diff(tt.want, problemsOf(t, err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPublicURL(t *testing.T) {
	tests := []struct {
		name       string
		configured string
		listen     string
		hostname   string
		want       string
	}{
		{"configured wins", "https://tokens.example.com/ctkip", ":8444", "box", "https://tokens.example.com/ctkip"},
		{"empty host uses host name", "", ":8444", "box", "https://box:8444"},
		{"ipv4 wildcard uses host name", "", "0.0.0.0:8444", "box", "https://box:8444"},
		{"ipv6 wildcard uses host name", "", "[::]:8444", "box", "https://box:8444"},
		{"specific host kept", "", "10.0.0.5:9444", "box", "https://10.0.0.5:9444"},
		{"ipv6 host bracketed", "", "[2001:db8::1]:8444", "box", "https://[2001:db8::1]:8444"},
		{"name kept", "", "tokens.lan:8444", "box", "https://tokens.lan:8444"},
		{"no host name falls back to localhost", "", ":8444", "", "https://localhost:8444"},
		{"bound address of a port-0 listener", "", "127.0.0.1:41234", "box", "https://127.0.0.1:41234"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := publicURL(tt.configured, tt.listen, tt.hostname); got != tt.want {
				t.Errorf("publicURL = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzDecodeConfig feeds arbitrary bytes to the config decoder: it must
// never panic, every failure must be a *ConfigError, and a configuration it
// accepts must validate without panicking and survive a YAML round trip.
func FuzzDecodeConfig(f *testing.F) {
	for _, dir := range []string{"testdata/config/good", "testdata/config/bad"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("ctkip: {rate_total: .inf, session_ttl: 1ns}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := decodeConfig(bytes.NewReader(data), "fuzz.yaml", defaultConfig())
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %v (%T) is not a *ConfigError with problems", err, err)
			}
			return
		}
		_ = cfg.Validate()
		out, err := yaml.Marshal(&cfg)
		if err != nil {
			t.Fatalf("marshal decoded config: %v", err)
		}
		again, err := decodeConfig(bytes.NewReader(out), "again.yaml", defaultConfig())
		if err != nil {
			t.Fatalf("re-decode of %q: %v", out, err)
		}
		if diff := cmp.Diff(cfg, again, cmpopts.EquateNaNs()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
