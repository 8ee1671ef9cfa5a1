package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"tokend/appliance"
)

// Config is the daemon's configuration. It is built in layers, each one
// overriding the one before:
//
//  1. defaultConfig();
//  2. the YAML file named by --config or TOKEND_CONFIG (none by default),
//     decoded strictly: unknown keys are errors;
//  3. TOKEND_* environment variables (an empty variable counts as unset);
//  4. command-line flags that were given explicitly.
//
// Relative paths are relative to the working directory of the process.
// A YAML null (`data_dir:` with nothing after it) leaves the default in place.
type Config struct {
	// DataDir holds the database, the master key (unless master_key_file or a
	// systemd credential says otherwise), the admin token and the generated
	// TLS pair.
	DataDir string `yaml:"data_dir"`
	// MasterKeyFile overrides where the master key is read from. Empty means
	// the systemd credential "master-key" when present, else DATA_DIR/master.key.
	MasterKeyFile string `yaml:"master_key_file"`
	// NodeID names this node in the store (its audit chain and counter
	// shares); nodes sharing an etcd store need distinct ids. Empty: the
	// id in DATA_DIR/node-id, generated on first start (nodeid.go).
	NodeID string `yaml:"node_id"`
	// AdminListen is the admin API, console, metrics and health listener.
	AdminListen string `yaml:"admin_listen"`
	// CTKIPListen is the device provisioning (CT-KIP) listener.
	CTKIPListen string `yaml:"ctkip_listen"`
	// CTKIPPublicURL is the URL devices are told to use; empty means derived
	// from CTKIPListen (see publicURL).
	CTKIPPublicURL string `yaml:"ctkip_public_url"`
	// TLSCert and TLSKey name a PEM certificate chain and key. Both empty
	// means DATA_DIR/tls.crt and DATA_DIR/tls.key, self-signed and generated
	// on first start.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`

	Log     LogConfig     `yaml:"log"`
	Metrics MetricsConfig `yaml:"metrics"`
	CTKIP   CTKIPConfig   `yaml:"ctkip"`
	Auth    AuthConfig    `yaml:"auth"`
	// RADIUS and RESTAuthn are the agents' doors (agentsconfig.go).
	RADIUS    RADIUSConfig    `yaml:"radius"`
	RESTAuthn RESTAuthnConfig `yaml:"rest_authn"`
	Console   ConsoleConfig   `yaml:"console"`

	IdentitySources IdentitySourcesConfig `yaml:"identity_sources"`
	// Store selects bbolt (default) or etcd (storeconfig.go).
	Store StoreConfig `yaml:"store"`

	// ShutdownTimeout bounds graceful shutdown: in-flight requests get this
	// long to finish after SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ActivationCodeTTL is the default lifetime of an activation code for
	// profiles that do not set their own.
	ActivationCodeTTL time.Duration `yaml:"activation_code_ttl"`
	// ReplacementGrace is how long a replaced token keeps working while
	// its replacement has not authenticated (appliance lifecycle.go).
	ReplacementGrace time.Duration `yaml:"replacement_grace"`
}

// LogConfig selects the log format and threshold.
type LogConfig struct {
	Format string `yaml:"format"` // "text" or "json"
	Level  string `yaml:"level"`  // "debug", "info", "warn" or "error"
}

// MetricsConfig controls /metrics.
type MetricsConfig struct {
	// Auth is "open" (anyone who reaches the admin listener may scrape) or
	// "token" (an admin API token is required).
	Auth string `yaml:"auth"`
}

// AuthConfig holds the authentication policy.
type AuthConfig struct {
	MaxFailures int `yaml:"max_failures"` // consecutive failures that lock a user
	// LockoutDuration is how long a lockout lasts; 0 means until an admin
	// unlocks the user.
	LockoutDuration time.Duration `yaml:"lockout_duration"`
	SmallWindow     int           `yaml:"small_window"` // intervals either side accepted at once
	LargeWindow     int           `yaml:"large_window"` // intervals either side that ask for the next tokencode
	SessionTTL      time.Duration `yaml:"session_ttl"`  // life of a next-tokencode or new-PIN challenge
	PINMinLength    int           `yaml:"pin_min_length"`
	PINMaxLength    int           `yaml:"pin_max_length"`
	// PINAlphanumeric allows letters in fob-style PINs (PINPad PINs are
	// folded into the code and stay numeric).
	PINAlphanumeric bool `yaml:"pin_alphanumeric"`
	// PINSystemGenerated makes tokend choose new PINs (pin_min_length
	// digits, shown once in the new_pin answer) instead of the user.
	PINSystemGenerated bool `yaml:"pin_system_generated"`
	// EmergencyMaxLifetime is the hard maximum lifetime of emergency access.
	EmergencyMaxLifetime time.Duration `yaml:"emergency_max_lifetime"`
}

// IdentitySourcesConfig holds what only root may decide about identity
// sources.
type IdentitySourcesConfig struct {
	// CredentialsDir is the only directory whose files an LDAP source may
	// name (ca_file, bind_password_file). Empty (the default): the admin
	// API accepts no file path at all, so an API token cannot make the
	// daemon read and send its own files. Set only in this file (no flag,
	// no environment variable).
	CredentialsDir string `yaml:"credentials_dir"`
}

// ConsoleConfig guards the Security Console's sign-in: each password
// check costs 64 MiB of argon2id, so attempts are throttled before any
// hashing and accounts lock after repeated failures.
type ConsoleConfig struct {
	MaxFailures int `yaml:"max_failures"` // consecutive failed sign-ins that lock an admin account
	// LockoutDuration is how long a lockout lasts; 0 means until another
	// superadmin or `tokend admin unlock` unlocks the account.
	LockoutDuration time.Duration `yaml:"lockout_duration"`
	RatePerClient   float64       `yaml:"rate_per_client"`   // sign-in attempts per second per client address (IPv6: /64)
	BurstPerClient  int           `yaml:"burst_per_client"`  // bucket size per client address
	RatePerAccount  float64       `yaml:"rate_per_account"`  // sign-in attempts per second per account name
	BurstPerAccount int           `yaml:"burst_per_account"` // bucket size per account name
	// Argon2Slots is how many password checks (64 MiB each) run at once;
	// others wait up to 2s, then get 429. 0: one per core, at most 2.
	Argon2Slots int `yaml:"argon2_slots"`
}

// CTKIPConfig tunes the provisioning door.
type CTKIPConfig struct {
	RSABits        int           `yaml:"rsa_bits"`         // server key size: 1024, 2048, 3072 or 4096
	SessionTTL     time.Duration `yaml:"session_ttl"`      // how long a half-finished exchange lives
	RatePerClient  float64       `yaml:"rate_per_client"`  // failed code checks per second per client address (IPv6: /64)
	BurstPerClient int           `yaml:"burst_per_client"` // bucket size per client address
	RateTotal      float64       `yaml:"rate_total"`       // failed code checks per second, all clients together
	BurstTotal     int           `yaml:"burst_total"`      // bucket size, all clients together
	// MaxPendingPerClient bounds half-finished exchanges per client address
	// (IPv6: per /64), so one address cannot fill the session table.
	MaxPendingPerClient int `yaml:"max_pending_per_client"`
	// MaxHellosPerCode bounds the exchanges one valid code may start per minute.
	MaxHellosPerCode int `yaml:"max_hellos_per_code"`
}

var (
	logFormats  = []string{"text", "json"}
	logLevels   = []string{"debug", "info", "warn", "error"}
	metricAuths = []string{"open", "token"}
	rsaSizes    = []int{1024, 2048, 3072, 4096}
)

// defaultConfig returns the built-in defaults (layer 1).
func defaultConfig() Config {
	return Config{
		DataDir:     "./tokend-data",
		AdminListen: ":8443",
		CTKIPListen: ":8444",
		Log:         LogConfig{Format: "text", Level: "info"},
		Metrics:     MetricsConfig{Auth: "open"},
		CTKIP: CTKIPConfig{
			RSABits:        1024,
			SessionTTL:     5 * time.Minute,
			RatePerClient:  0.2,
			BurstPerClient: 10,
			RateTotal:      20,
			BurstTotal:     200,

			MaxPendingPerClient: 8,
			MaxHellosPerCode:    10,
		},
		Auth: AuthConfig{
			MaxFailures:          5,
			LockoutDuration:      30 * time.Minute,
			SmallWindow:          1,
			LargeWindow:          10,
			SessionTTL:           3 * time.Minute,
			PINMinLength:         4,
			PINMaxLength:         8,
			EmergencyMaxLifetime: 72 * time.Hour,
		},
		Console: ConsoleConfig{
			MaxFailures:     5,
			LockoutDuration: 30 * time.Minute,
			RatePerClient:   0.2,
			BurstPerClient:  10,
			RatePerAccount:  0.1,
			BurstPerAccount: 10,
		},
		ShutdownTimeout:   15 * time.Second,
		ActivationCodeTTL: 168 * time.Hour,
		ReplacementGrace:  14 * 24 * time.Hour,
		RADIUS:            defaultRADIUS(),
		Store:             defaultStoreConfig(),
	}
}

// ConfigError lists every problem found in a configuration, so an operator
// fixes them all in one go. Every problem starts with where it was made:
// "FILE:LINE: " in the YAML file, or the flag ("--admin-listen: ") or
// environment variable ("TOKEND_LOG_FORMAT: ") that set the value; then,
// for validation problems, the key they are about (configlines.go).
type ConfigError struct {
	File     string // the config file, if the problems came from one
	Problems []string
}

func (e *ConfigError) Error() string {
	where := "invalid configuration"
	if e.File != "" {
		where += " (" + e.File + ")"
	}
	switch len(e.Problems) {
	case 0:
		return where
	case 1:
		return where + ": " + e.Problems[0]
	default:
		return fmt.Sprintf("%s: %d problems: %s", where, len(e.Problems), strings.Join(e.Problems, "; "))
	}
}

// maxConfigSize bounds what decodeConfig reads; a config file is a few KiB.
const maxConfigSize = 1 << 20

// decodeConfig decodes one YAML document from r strictly over base and
// returns the result. name is used in problems ("tokend.yaml:3: ...").
// Every error is a *ConfigError. An empty document leaves base unchanged.
func decodeConfig(r io.Reader, name string, base Config) (Config, error) {
	cfg, problems, _ := decodeConfigProblems(r, name, base)
	if len(problems) > 0 {
		return base, &ConfigError{File: name, Problems: problems}
	}
	return cfg, nil
}

// decodeConfigProblems is decodeConfig for loadConfig: when the only
// problems are per-key ones (unknown keys, values of the wrong type) it also
// returns the partially decoded configuration and usable=true, so the other
// layers and Validate can still run and every problem is reported at once.
// After a syntax error nothing decoded is trustworthy: usable is false.
func decodeConfigProblems(r io.Reader, name string, base Config) (cfg Config, problems []string, usable bool) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return base, []string{fmt.Sprintf("%s: %v", name, err)}, false
	}
	if len(data) > maxConfigSize {
		return base, []string{fmt.Sprintf("%s: larger than %d bytes", name, maxConfigSize)}, false
	}
	cfg = base
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err = dec.Decode(&cfg)
	if errors.Is(err, io.EOF) {
		return base, nil, true // empty file or only comments: the defaults stand
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return cfg, yamlProblems(name, err), true
	}
	if err != nil {
		return base, yamlProblems(name, err), false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return base, yamlProblems(name, err), false
		}
		return base, []string{fmt.Sprintf("%s:%d: only one YAML document is allowed", name, extra.Line)}, false
	}
	return cfg, nil, true
}

var (
	yamlLineRe     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlUnknownRe  = regexp.MustCompile(`^field (.+) not found in type (\S+)$`)
	yamlTypeRe     = regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into (\\S+)$")
	yamlSectionFor = map[string]string{
		"main.Config":          "",
		"main.LogConfig":       "log.",
		"main.MetricsConfig":   "metrics.",
		"main.CTKIPConfig":     "ctkip.",
		"main.AuthConfig":      "auth.",
		"main.RADIUSConfig":    "radius.",
		"main.RESTAuthnConfig": "rest_authn.",
		"main.ConsoleConfig":   "console.",

		"main.IdentitySourcesConfig": "identity_sources.",
		"main.StoreConfig":           "store.",
	}
	yamlWant = map[string]string{
		"time.Duration":        "want a duration such as 5m or 90s",
		"int":                  "want an integer",
		"float64":              "want a number",
		"string":               "want a string",
		"main.Config":          "want a mapping of keys to values",
		"main.LogConfig":       "want a mapping of keys to values",
		"main.MetricsConfig":   "want a mapping of keys to values",
		"main.CTKIPConfig":     "want a mapping of keys to values",
		"main.AuthConfig":      "want a mapping of keys to values",
		"main.RADIUSConfig":    "want a mapping of keys to values",
		"main.RESTAuthnConfig": "want a mapping of keys to values",
		"main.ConsoleConfig":   "want a mapping of keys to values",
		"bool":                 "want true or false",

		"main.IdentitySourcesConfig": "want a mapping of keys to values",
		"main.StoreConfig":           "want a mapping of keys to values",
	}
)

// yamlProblems turns a yaml.v3 error into "FILE:LINE: message" problems, one
// per entry of a *yaml.TypeError (yaml.v3 reports all of them at once).
func yamlProblems(name string, err error) []string {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, yamlProblem(name, m))
	}
	return out
}

func yamlProblem(name, msg string) string {
	msg = strings.TrimPrefix(msg, "yaml: ")
	loc := name
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		loc, msg = name+":"+m[1], m[2]
	}
	if m := yamlUnknownRe.FindStringSubmatch(msg); m != nil {
		section, ok := yamlSectionFor[m[2]]
		if ok {
			msg = fmt.Sprintf("unknown key %q", section+m[1])
		} else {
			msg = fmt.Sprintf("unknown key %q", m[1])
		}
	} else if m := yamlTypeRe.FindStringSubmatch(msg); m != nil {
		if want, ok := yamlWant[m[2]]; ok {
			msg = fmt.Sprintf("invalid value %q: %s", m[1], want)
		}
	}
	return loc + ": " + msg
}

// envVars maps each TOKEND_* variable to the flag it mirrors. TOKEND_CONFIG
// is handled separately: it names the file of layer 2.
var envVars = []struct{ env, flag string }{
	{"TOKEND_DATA_DIR", "data-dir"},
	{"TOKEND_MASTER_KEY_FILE", "master-key-file"},
	{"TOKEND_NODE_ID", "node-id"},
	{"TOKEND_ADMIN_LISTEN", "admin-listen"},
	{"TOKEND_CTKIP_LISTEN", "ctkip-listen"},
	{"TOKEND_CTKIP_PUBLIC_URL", "ctkip-public-url"},
	{"TOKEND_TLS_CERT", "tls-cert"},
	{"TOKEND_TLS_KEY", "tls-key"},
	{"TOKEND_LOG_FORMAT", "log-format"},
	{"TOKEND_LOG_LEVEL", "log-level"},
	{"TOKEND_RADIUS_LISTEN", "radius-listen"},
	{"TOKEND_REST_AUTHN_LISTEN", "rest-authn-listen"},
	{"TOKEND_STORE", "store"},
	{"TOKEND_ETCD_ENDPOINTS", "etcd-endpoints"},
	{"TOKEND_ETCD_CA", "etcd-ca"},
	{"TOKEND_ETCD_CERT", "etcd-cert"},
	{"TOKEND_ETCD_KEY", "etcd-key"},
	{"TOKEND_ETCD_PREFIX", "etcd-prefix"},
	{"TOKEND_ETCD_USERNAME", "etcd-username"},
	// The file's name only: the password itself is never a flag or a
	// variable (both are visible in /proc).
	{"TOKEND_ETCD_PASSWORD_FILE", "etcd-password-file"},
}

// field returns the Config field a flag (and its environment variable)
// sets. Every name in envVars is known here.
func (c *Config) field(flag string) *string {
	switch flag {
	case "data-dir":
		return &c.DataDir
	case "master-key-file":
		return &c.MasterKeyFile
	case "node-id":
		return &c.NodeID
	case "admin-listen":
		return &c.AdminListen
	case "ctkip-listen":
		return &c.CTKIPListen
	case "ctkip-public-url":
		return &c.CTKIPPublicURL
	case "tls-cert":
		return &c.TLSCert
	case "tls-key":
		return &c.TLSKey
	case "log-format":
		return &c.Log.Format
	case "log-level":
		return &c.Log.Level
	case "radius-listen":
		return &c.RADIUS.Listen
	case "rest-authn-listen":
		return &c.RESTAuthn.Listen
	case "store":
		return &c.Store.Backend
	case "etcd-endpoints":
		return &c.Store.EtcdEndpoints
	case "etcd-ca":
		return &c.Store.EtcdCA
	case "etcd-cert":
		return &c.Store.EtcdCert
	case "etcd-key":
		return &c.Store.EtcdKey
	case "etcd-prefix":
		return &c.Store.EtcdPrefix
	case "etcd-username":
		return &c.Store.EtcdUsername
	case "etcd-password-file":
		return &c.Store.EtcdPasswordFile
	}
	panic("config: no field for flag " + flag) // programming error, caught by tests
}

// configFlags are the command-line flags of layer 4. They are persistent
// flags of the root command, so every subcommand that needs the data
// directory or the master key (serve, provision, backup …) accepts them.
type configFlags struct {
	fs         *pflag.FlagSet
	configFile string
	values     map[string]*string
}

// addConfigFlags registers --config and the override flags on fs.
func addConfigFlags(fs *pflag.FlagSet) *configFlags {
	f := &configFlags{fs: fs, values: map[string]*string{}}
	fs.StringVar(&f.configFile, "config", "", "YAML configuration file (env TOKEND_CONFIG)")
	help := map[string]string{
		"data-dir":          "data directory (default ./tokend-data)",
		"master-key-file":   "master key file (default: systemd credential master-key, else DATA_DIR/master.key)",
		"node-id":           "this node's id in the store: audit chain, counter shares (default: DATA_DIR/node-id, generated)",
		"admin-listen":      "admin API listen address (default :8443)",
		"ctkip-listen":      "CT-KIP listen address (default :8444)",
		"ctkip-public-url":  "URL devices use for CT-KIP (default derived from --ctkip-listen)",
		"tls-cert":          "TLS certificate chain, PEM (default DATA_DIR/tls.crt, generated)",
		"tls-key":           "TLS private key, PEM (default DATA_DIR/tls.key, generated)",
		"log-format":        "log format: text or json (default text)",
		"log-level":         "log level: debug, info, warn or error (default info)",
		"radius-listen":     "RADIUS UDP listen address, bound once a RADIUS agent exists; empty: off (default :1812)",
		"rest-authn-listen": "RSA SecurID Authentication API (REST) HTTPS listen address, e.g. :5555; empty: off (default off)",
		"store":             "store backend: bolt (DATA_DIR/tokend.db) or etcd (default bolt)",
		"etcd-endpoints":    "etcd client URLs, comma-separated, with --store etcd",
		"etcd-ca":           "PEM CA of the etcd members' certificates",
		"etcd-cert":         "PEM client certificate for etcd",
		"etcd-key":          "PEM client key for etcd",
		"etcd-prefix":       "key prefix in etcd (default /tokend/)",

		// etcd's RBAC login (storeconfig.go).
		"etcd-username":      "etcd RBAC user, with --etcd-password-file",
		"etcd-password-file": "file holding the etcd user's password (mode 0600; never the password itself)",
	}
	for _, ev := range envVars {
		v := new(string)
		f.values[ev.flag] = v
		fs.StringVar(v, ev.flag, "", help[ev.flag]+" (env "+ev.env+")")
	}
	return f
}

// lookupEnvFunc is os.LookupEnv's shape; tests pass a map instead.
type lookupEnvFunc func(string) (string, bool)

// configAndPaths loads the command's configuration and names the files of
// its data directory, as every command working on a data dir starts.
func (a *app) configAndPaths() (*Config, dataPaths, error) {
	cfg, err := loadConfig(a.flags, a.lookupEnv)
	if err != nil {
		return nil, dataPaths{}, err
	}
	paths, err := newDataPaths(cfg.DataDir)
	return cfg, paths, err
}

// loadConfig builds the effective configuration from all four layers and
// validates it. Decoding and validation problems come back together in one
// *ConfigError; a config file that cannot be read is a plain error.
func loadConfig(flags *configFlags, lookupEnv lookupEnvFunc) (*Config, error) {
	cfg := defaultConfig()
	var problems []string
	origins := configOrigins{} // where each key was set, for the problems
	path := flags.configFile
	if !flags.fs.Changed("config") {
		path = env(lookupEnv, "TOKEND_CONFIG")
	}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, unwrapPath(err))
		}
		data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, unwrapPath(err))
		}
		decoded, fileProblems, usable := decodeConfigProblems(bytes.NewReader(data), path, cfg)
		if !usable {
			return nil, &ConfigError{File: path, Problems: fileProblems}
		}
		problems = append(problems, fileProblems...)
		cfg = decoded
		origins.fileLines(data, path)
	}
	for _, ev := range envVars {
		if v := env(lookupEnv, ev.env); v != "" {
			*cfg.field(ev.flag) = v
			origins.setFlag(ev.flag, ev.env)
		}
	}
	for _, ev := range envVars {
		if flags.fs.Changed(ev.flag) {
			*cfg.field(ev.flag) = *flags.values[ev.flag]
			origins.setFlag(ev.flag, "--"+ev.flag)
		}
	}
	var ve *ConfigError
	if err := cfg.Validate(); errors.As(err, &ve) {
		problems = append(problems, origins.locate(ve.Problems)...)
	}
	if len(problems) > 0 {
		return nil, &ConfigError{File: path, Problems: problems}
	}
	return &cfg, nil
}

func env(lookupEnv lookupEnvFunc, name string) string {
	if lookupEnv == nil {
		return ""
	}
	v, _ := lookupEnv(name)
	return v
}

// Validate reports every problem of c at once as a *ConfigError, or nil.
func (c *Config) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if c.DataDir == "" {
		add("data_dir: must not be empty")
	}
	if c.NodeID != "" {
		if err := appliance.ValidNodeID(c.NodeID); err != nil {
			add("node_id: %v", err)
		}
	}
	adminOK := checkListen(add, "admin_listen", c.AdminListen)
	ctkipOK := checkListen(add, "ctkip_listen", c.CTKIPListen)
	if adminOK && ctkipOK && sameListener(c.AdminListen, c.CTKIPListen) {
		add("admin_listen and ctkip_listen: both are %q; they must differ", c.AdminListen)
	}
	if c.CTKIPPublicURL != "" {
		if err := checkPublicURL(c.CTKIPPublicURL); err != nil {
			add("ctkip_public_url %q: %v", c.CTKIPPublicURL, err)
		}
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		add("tls_cert is set but tls_key is not; set both or neither")
	case c.TLSCert == "" && c.TLSKey != "":
		add("tls_key is set but tls_cert is not; set both or neither")
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		add("log.format %q: want one of %s", c.Log.Format, quotedList(logFormats))
	}
	if !slices.Contains(logLevels, c.Log.Level) {
		add("log.level %q: want one of %s", c.Log.Level, quotedList(logLevels))
	}
	if !slices.Contains(metricAuths, c.Metrics.Auth) {
		add("metrics.auth %q: want one of %s", c.Metrics.Auth, quotedList(metricAuths))
	}
	if !slices.Contains(rsaSizes, c.CTKIP.RSABits) {
		add("ctkip.rsa_bits %d: want one of 1024, 2048, 3072, 4096", c.CTKIP.RSABits)
	}
	positiveDuration := func(key string, d time.Duration) {
		if d <= 0 {
			add("%s %s: must be positive", key, d)
		}
	}
	positiveDuration("ctkip.session_ttl", c.CTKIP.SessionTTL)
	positiveDuration("shutdown_timeout", c.ShutdownTimeout)
	positiveDuration("activation_code_ttl", c.ActivationCodeTTL)
	positiveDuration("replacement_grace", c.ReplacementGrace)
	positiveRate := func(key string, r float64) {
		if !(r > 0) || math.IsInf(r, 0) { // also catches NaN
			add("%s %v: must be a positive finite number", key, r)
		}
	}
	positiveRate("ctkip.rate_per_client", c.CTKIP.RatePerClient)
	positiveRate("ctkip.rate_total", c.CTKIP.RateTotal)
	positiveInt := func(key string, n int) {
		if n <= 0 {
			add("%s %d: must be positive", key, n)
		}
	}
	positiveInt("ctkip.burst_per_client", c.CTKIP.BurstPerClient)
	positiveInt("ctkip.burst_total", c.CTKIP.BurstTotal)
	positiveInt("ctkip.max_pending_per_client", c.CTKIP.MaxPendingPerClient)
	positiveInt("ctkip.max_hellos_per_code", c.CTKIP.MaxHellosPerCode)
	a := c.Auth
	positiveInt("auth.max_failures", a.MaxFailures)
	if a.LockoutDuration < 0 {
		add("auth.lockout_duration %s: must not be negative (0 locks until an admin unlocks)", a.LockoutDuration)
	}
	positiveInt("auth.small_window", a.SmallWindow)
	if a.LargeWindow < a.SmallWindow || a.LargeWindow > 1000 {
		add("auth.large_window %d: must be between auth.small_window (%d) and 1000", a.LargeWindow, a.SmallWindow)
	}
	positiveDuration("auth.session_ttl", a.SessionTTL)
	positiveDuration("auth.emergency_max_lifetime", a.EmergencyMaxLifetime)
	if a.PINMinLength < 4 || a.PINMaxLength > 16 || a.PINMinLength > a.PINMaxLength {
		add("auth.pin_min_length %d, auth.pin_max_length %d: want 4 <= min <= max <= 16", a.PINMinLength, a.PINMaxLength)
	}
	cc := c.Console
	positiveInt("console.max_failures", cc.MaxFailures)
	if cc.LockoutDuration < 0 {
		add("console.lockout_duration %s: must not be negative (0 locks until unlocked)", cc.LockoutDuration)
	}
	positiveRate("console.rate_per_client", cc.RatePerClient)
	positiveInt("console.burst_per_client", cc.BurstPerClient)
	positiveRate("console.rate_per_account", cc.RatePerAccount)
	positiveInt("console.burst_per_account", cc.BurstPerAccount)
	if cc.Argon2Slots < 0 || cc.Argon2Slots > 64 {
		add("console.argon2_slots %d: want 0 (one per core, at most 2) to 64", cc.Argon2Slots)
	}
	// A relative directory would move with the working directory, and "/"
	// would put every file back in reach.
	if d := c.IdentitySources.CredentialsDir; d != "" && (!filepath.IsAbs(d) || filepath.Clean(d) == "/") {
		add("identity_sources.credentials_dir %q: must be an absolute path to a directory other than /", d)
	}
	p = append(p, c.agentProblems()...)
	p = append(p, c.storeProblems()...)

	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// checkListen validates a listen address: HOST:PORT with a numeric port
// (0 means any free port, useful in tests).
func checkListen(add func(string, ...any), key, addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			add("%s %q: %s", key, addr, ae.Err)
		} else {
			add("%s %q: %v", key, addr, err)
		}
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add("%s %q: port must be a number from 0 to 65535", key, addr)
		return false
	}
	return true
}

// sameListener reports whether two valid listen addresses would collide:
// same port (not 0) and the same host, or either host is a wildcard.
func sameListener(a, b string) bool {
	ah, ap, _ := net.SplitHostPort(a)
	bh, bp, _ := net.SplitHostPort(b)
	if ap != bp || ap == "0" {
		return false
	}
	return ah == bh || isWildcardHost(ah) || isWildcardHost(bh)
}

func isWildcardHost(h string) bool {
	return h == "" || h == "0.0.0.0" || h == "::"
}

// checkPublicURL requires an absolute https URL with a host and no user
// info, query or fragment.
func checkPublicURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a URL: %v", err)
	}
	switch {
	case u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return errors.New("must be an absolute https URL such as https://tokend.example.com:8444")
	case u.User != nil:
		return errors.New("must not contain user information")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return errors.New("must not have a query or fragment")
	}
	return nil
}

// publicURL is the CT-KIP URL devices are given: c.CTKIPPublicURL when set,
// else https://HOST:PORT from listen, where HOST is the listener's host, or
// hostname when that host is empty, 0.0.0.0 or ::. listen must be valid.
// A listener on port 0 has no port until bound: pass the bound address
// (listener.Addr().String()) as listen in that case.
func publicURL(configured, listen, hostname string) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if isWildcardHost(host) {
		host = hostname
		if host == "" {
			host = "localhost"
		}
	}
	return "https://" + net.JoinHostPort(host, port)
}

// quotedList renders ["a","b"] as `"a", "b"`.
func quotedList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}
