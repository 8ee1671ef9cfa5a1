package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/internal/etcdstore"
)

// Store backends.
const (
	backendBolt = "bolt"
	backendEtcd = "etcd"
)

// StoreConfig selects the store: the embedded bbolt file in DATA_DIR (the
// default) or an etcd cluster shared by several tokend nodes.
type StoreConfig struct {
	// Backend is "bolt" or "etcd".
	Backend string `yaml:"backend"`
	// EtcdEndpoints are the etcd members' client URLs, comma-separated
	// (http:// or https://).
	EtcdEndpoints string `yaml:"etcd_endpoints"`
	// EtcdCA is the PEM CA that signed the members' certificates; EtcdCert
	// and EtcdKey a client certificate for etcd's client-cert-auth.
	EtcdCA   string `yaml:"etcd_ca"`
	EtcdCert string `yaml:"etcd_cert"`
	EtcdKey  string `yaml:"etcd_key"`
	// EtcdUsername and EtcdPasswordFile log in to etcd's RBAC (both or
	// neither). The password is only ever read from the file (mode 0600 or
	// tighter, trailing newline trimmed): a flag or environment value
	// would show in ps and /proc.
	EtcdUsername     string `yaml:"etcd_username"`
	EtcdPasswordFile string `yaml:"etcd_password_file"`
	// EtcdPrefix namespaces tokend's keys; several clusters of tokend may
	// share one etcd with different prefixes.
	EtcdPrefix string `yaml:"etcd_prefix"`
	// EtcdRequestTimeout bounds each request to etcd. A commit caught in
	// the death of the etcd leader waits this long before it answers 503
	// (its outcome unknown), so it is also the write gap a node sees when
	// the leader dies: shorter fails over sooner, at the cost of more
	// "outcome unknown" answers on a slow or loaded cluster.
	EtcdRequestTimeout time.Duration `yaml:"etcd_request_timeout"`
	// Nodes is how many tokend nodes share the store. Budgets each node
	// keeps in its own memory (the CT-KIP total guess budget) are divided
	// by it, so the cluster together keeps the configured budget.
	Nodes int `yaml:"nodes"`
}

func defaultStoreConfig() StoreConfig {
	return StoreConfig{Backend: backendBolt, EtcdPrefix: etcdstore.DefaultPrefix, Nodes: 1,
		EtcdRequestTimeout: etcdstore.DefaultRequestTimeout}
}

// endpoints splits EtcdEndpoints.
func (s StoreConfig) endpoints() []string {
	var out []string
	for _, e := range strings.Split(s.EtcdEndpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// storeProblems validates the store section.
func (c *Config) storeProblems() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	s := c.Store
	if s.Nodes < 1 || s.Nodes > 64 {
		add("store.nodes %d: want 1 to 64 (the number of tokend nodes sharing the store)", s.Nodes)
	}
	switch s.Backend {
	case backendBolt:
		// etcd settings may stand beside bolt: `tokend migrate` uses them.
		if s.Nodes > 1 {
			add("store.nodes %d: a bolt store has one node; use store.backend etcd for several", s.Nodes)
		}
		return p
	case backendEtcd:
	default:
		add("store.backend %q: want %q or %q", s.Backend, backendBolt, backendEtcd)
		return p
	}
	eps := s.endpoints()
	if len(eps) == 0 {
		add("store.etcd_endpoints: required with store.backend etcd (e.g. https://etcd1:2379,https://etcd2:2379)")
	}
	for _, e := range eps {
		u, err := url.Parse(e)
		shown := redactEndpoints(e)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			add("store.etcd_endpoints %q: want a URL such as https://etcd1:2379", shown)
		case u.Scheme == "http" && (s.EtcdCA != "" || s.EtcdCert != ""):
			add("store.etcd_endpoints %q: plain http while store.etcd_ca or store.etcd_cert is set; use https", shown)
		case u.Scheme == "http" && s.EtcdPasswordFile != "" && !isLoopbackHost(u.Hostname()):
			add("store.etcd_endpoints %q: plain http with store.etcd_password_file would send the etcd password across the network in clear; use https (http is accepted only to a loopback address such as 127.0.0.1)", shown)
		case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "":
			add("store.etcd_endpoints %q: want only scheme, host and port", shown)
		}
	}
	if s.EtcdRequestTimeout < 500*time.Millisecond || s.EtcdRequestTimeout > time.Minute {
		add("store.etcd_request_timeout %s: want 500ms to 1m (default %s)", s.EtcdRequestTimeout, etcdstore.DefaultRequestTimeout)
	}
	if (s.EtcdCert == "") != (s.EtcdKey == "") {
		add("store.etcd_cert and store.etcd_key: set both or neither")
	}
	if (s.EtcdUsername == "") != (s.EtcdPasswordFile == "") {
		add("store.etcd_username and store.etcd_password_file: set both or neither")
	}
	if !strings.HasPrefix(s.EtcdPrefix, "/") || !strings.HasSuffix(s.EtcdPrefix, "/") {
		add("store.etcd_prefix %q: must start and end with / (e.g. /tokend/)", s.EtcdPrefix)
	}
	return p
}

// isLoopbackHost reports whether host (of a URL, without brackets) is this
// machine: traffic to it never reaches a network another host can read.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// maxEtcdPassword bounds what is read from store.etcd_password_file.
const maxEtcdPassword = 4096

// readEtcdPassword reads the etcd password from path: the whole file
// without its trailing line end. The file is refused, as the master key
// is, when group or others may access it; and when it is empty, holds
// more than one line or is larger than maxEtcdPassword. Errors name the
// file, never its content.
func readEtcdPassword(path string) (appliance.Secret, error) {
	const what = "store.etcd_password_file"
	f, err := openPrivateFile(what, path, true)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEtcdPassword+1))
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", what, path, unwrapPath(err))
	}
	if len(b) > maxEtcdPassword {
		return "", fmt.Errorf("%s %s: longer than %d bytes", what, path, maxEtcdPassword)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	switch {
	case pw == "":
		return "", fmt.Errorf("%s %s: empty; write the etcd password in it", what, path)
	case strings.ContainsAny(pw, "\r\n"):
		return "", fmt.Errorf("%s %s: holds more than one line; write only the etcd password in it", what, path)
	}
	return appliance.Secret(pw), nil
}

// etcdTLS builds the client TLS configuration, or nil when no file is set.
func (s StoreConfig) etcdTLS() (*tls.Config, error) {
	if s.EtcdCA == "" && s.EtcdCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.EtcdCA != "" {
		pem, err := os.ReadFile(s.EtcdCA)
		if err != nil {
			return nil, fmt.Errorf("store.etcd_ca: %w", unwrapPath(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store.etcd_ca %s: no PEM certificate", s.EtcdCA)
		}
		cfg.RootCAs = pool
	}
	if s.EtcdCert != "" {
		pair, err := tls.LoadX509KeyPair(s.EtcdCert, s.EtcdKey)
		if err != nil {
			return nil, fmt.Errorf("store.etcd_cert/etcd_key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// openedStore is the configured store and what the daemon needs of it
// beyond appliance.Store; the functions are nil where a backend lacks them.
type openedStore struct {
	appliance.Store
	Backup func(w io.Writer) (int64, error) // a consistent copy while running (bbolt)
	Size   func() int64                     // bytes on disk, for metrics (bbolt file; etcd: the member's database)
	Ping   func(ctx context.Context) error  // can the node make a write durable (etcd: reach a quorum)
	Etcd   *etcdstore.Store                 // the etcd store, for the runner election and purge; nil on bbolt
	Where  string                           // for messages: a file or endpoints and prefix
}

// storeOpenOptions carries what only some callers set.
type storeOpenOptions struct {
	Observer    boltstore.CommitObserver // also fits etcdstore.CommitObserver
	ReadOnly    bool
	LockTimeout time.Duration // bbolt: 0 waits boltstore's default
	NoPurge     bool          // etcd: no background tombstone purge (one-shot commands)
	// EtcdRequest, if set, is told the duration of every request to etcd.
	EtcdRequest func(method string, d time.Duration)
}

// redactEndpoints is a comma-separated list of endpoint URLs fit for an
// error text: a password written into a URL's user part (which tokend
// refuses) is replaced by "xxxxx".
func redactEndpoints(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		at := strings.LastIndex(p, "@")
		if at < 0 {
			continue
		}
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		} else {
			parts[i] = "xxxxx" + p[at:] // not a URL with a user part: drop all before the host
		}
	}
	return strings.Join(parts, ",")
}

// openEtcd opens the etcd store a StoreConfig names.
func openEtcd(ctx context.Context, s StoreConfig, o storeOpenOptions) (*etcdstore.Store, error) {
	tlsCfg, err := s.etcdTLS()
	if err != nil {
		return nil, err
	}
	opts := etcdstore.Options{Endpoints: s.endpoints(), Prefix: s.EtcdPrefix, TLS: tlsCfg, ReadOnly: o.ReadOnly,
		RequestTimeout: s.EtcdRequestTimeout}
	opts.Username = s.EtcdUsername // alone, etcdstore refuses it
	if s.EtcdPasswordFile != "" {
		if opts.Password, err = readEtcdPassword(s.EtcdPasswordFile); err != nil {
			return nil, err
		}
	}
	if o.Observer != nil {
		opts.Observer = o.Observer
	}
	if o.NoPurge {
		opts.PurgeInterval = -1
	}
	if observe := o.EtcdRequest; observe != nil {
		opts.DialOptions = append(opts.DialOptions, grpc.WithChainUnaryInterceptor(
			func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, co ...grpc.CallOption) error {
				start := time.Now()
				err := invoke(ctx, method, req, reply, cc, co...)
				observe(method, time.Since(start))
				return err
			}))
	}
	st, err := etcdstore.Open(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("open etcd store: %w", err)
	}
	return st, nil
}

// openConfiguredStore opens the store cfg selects. paths.DB is the bbolt
// file; for etcd, the data directory keeps only the node's own files.
func openConfiguredStore(ctx context.Context, cfg *Config, paths dataPaths, o storeOpenOptions) (*openedStore, error) {
	if cfg.Store.Backend == backendEtcd {
		st, err := openEtcd(ctx, cfg.Store, o)
		if err != nil {
			return nil, err
		}
		return &openedStore{Store: st, Ping: st.Ping, Size: st.Size, Etcd: st,
			Where: "etcd " + strings.Join(cfg.Store.endpoints(), ",") + " prefix " + cfg.Store.EtcdPrefix}, nil
	}
	bo := boltstore.Options{Observer: o.Observer, ReadOnly: o.ReadOnly, LockTimeout: o.LockTimeout}
	st, err := boltstore.Open(paths.DB, bo)
	if errors.Is(err, boltstore.ErrLocked) {
		return nil, fmt.Errorf("data dir %s is in use by another tokend (%s is locked): %w", paths.DataDir, paths.DB, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &openedStore{Store: st, Backup: st.Backup, Size: st.Size, Ping: st.Ping, Where: paths.DB}, nil
}

// openOfflineConfigured opens the configured store for a command-line tool:
// bbolt as openStoreOffline does (the file of a stopped tokend); etcd
// directly, since it is shared with running nodes anyway.
func openOfflineConfigured(ctx context.Context, cfg *Config, readOnly bool) (appliance.Store, dataPaths, error) {
	if cfg.Store.Backend != backendEtcd {
		return openStoreOffline(cfg.DataDir, readOnly)
	}
	paths, err := newDataPaths(cfg.DataDir)
	if err != nil {
		return nil, paths, err
	}
	st, err := openEtcd(ctx, cfg.Store, storeOpenOptions{ReadOnly: readOnly, NoPurge: true})
	if err != nil {
		return nil, paths, err
	}
	return st, paths, nil
}

// errEtcdBackup: backup and restore copy the bbolt file; an etcd store is
// the cluster's to copy.
var errEtcdBackup = errors.New("the store is etcd: back it up with `etcdctl snapshot save` (restore: `etcdctl snapshot restore`, etcdutl from etcd 3.5), " +
	"or copy it to a bbolt file with `tokend migrate --from etcd:… --to bolt:FILE`; keep the master key with it")
