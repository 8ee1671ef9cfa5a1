package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	gojson "github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tokend/admin"
	"tokend/admin/console"
	"tokend/agents/radius"
	"tokend/agents/rsarest"
	"tokend/appliance"
	"tokend/appliance/metrics"
	"tokend/appliance/seal"
	"tokend/internal/accesslog"
	"tokend/sync/scim"
)

// The admin API, the console, the SCIM endpoint and the agents' doors are
// adapters onto the one Service.
var (
	_ admin.Service   = (*appliance.Service)(nil)
	_ scim.Service    = (*appliance.Service)(nil)
	_ console.Service = (*appliance.Service)(nil)
	_ radius.Service  = (*appliance.Service)(nil)
	_ rsarest.Service = (*appliance.Service)(nil)
)

// syncTick is how often due identity-source syncs are looked for.
const syncTick = 30 * time.Second

// ctkipPath is where devices find the CT-KIP service (RSA's path).
const ctkipPath = "/ctkip/services/CtkipService"

// adminTokenName names the API token whose secret lives in DATA_DIR/admin-token.
const adminTokenName = "admin-token-file"

// runServe wires the appliance from env and serves until ctx ends.
func runServe(ctx context.Context, env *serveEnv) error {
	cfg, log := env.Config, env.Logger
	if os.Getenv("GOGC") == "" {
		// The heap is small and mostly short-lived request garbage: a little
		// more memory buys about a fifth more requests per CPU (BENCHMARKS.md).
		debug.SetGCPercent(400)
	}
	m := metrics.New(releaseVersion())
	// The elected runner purges etcd tombstones, not every node (runner.go).
	store, err := openConfiguredStore(ctx, cfg, env.Paths, storeOpenOptions{Observer: m, NoPurge: true, EtcdRequest: m.EtcdRequest})
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing the store", "err", err)
		}
	}()
	sealer, err := seal.New(env.MasterKey, env.Rand)
	if err != nil {
		return err
	}
	nodeID, err := resolveNodeID(cfg.NodeID, env.Paths.DataDir, env.Hostname, env.Rand) // nodeid.go
	if err != nil {
		return err
	}
	if store.Etcd != nil {
		// Before the key check, so this node and a master key rotation
		// never run at once (announceNode); withdrawn after every writer
		// of this node has stopped (deferred before them).
		leave, err := announceNode(ctx, store.Etcd.Client(), store.Etcd.Prefix(), nodeID, runnerTTL)
		if err != nil {
			return err
		}
		defer leave()
	}
	svc, err := appliance.New(appliance.Config{Store: store, Sealer: sealer, NodeID: nodeID, WriteLanes: writeLanes(cfg), CTKIPURL: strings.TrimRight(env.CTKIPPublicURL, "/") + ctkipPath,
		DefaultCodeTTL: cfg.ActivationCodeTTL, ReplacementGrace: cfg.ReplacementGrace, Auth: authPolicy(cfg.Auth), AuthRecorder: m, Logger: log, Now: env.Now, Rand: env.Rand,
		AdminSignIn:  adminSignInPolicy(cfg.Console, m),
		DecodeRecord: gojson.Unmarshal, CredentialsDir: cfg.IdentitySources.CredentialsDir, SpoolDir: env.Paths.DataDir,
		RolloutRecorder: m.Rollouts()})
	if err != nil {
		return err
	}
	// Deferred after the store's Close, so it runs first: a rollout being
	// applied stops after its chunk and is marked interrupted.
	defer svc.StopRollouts()
	sys := appliance.WithActor(ctx, appliance.Actor{ID: "system", Name: "system"})
	if err := svc.Init(sys); err != nil {
		if errors.Is(err, seal.ErrWrongKey) {
			return fmt.Errorf("master key %s is not the key of the store %s", env.MasterKeyPath, store.Where)
		}
		return fmt.Errorf("init store: %w", err)
	}
	if err := ensureAdminToken(sys, svc, env, store.Etcd != nil); err != nil {
		return err
	}
	if err := interruptAtStart(sys, svc, store.Etcd != nil, log); err != nil {
		return err
	}
	resumed, err := svc.ResumeRollouts(sys)
	if err != nil {
		return fmt.Errorf("resuming rollouts: %w", err)
	}
	for _, id := range resumed {
		log.Info("rollout resumed", "rollout", id)
	}
	// Scheduled rollouts start when their time comes. Deferred after
	// StopRollouts, so it stops first: nothing starts during shutdown.
	// Scheduled work runs on the one elected runner (runner.go).
	// Stopped (and resigned) before the store closes: deferred after it.
	runCtx, stopRunner := context.WithCancel(ctx)
	run := startRunner(runCtx, store, nodeID, log, m.RunnerLeader)
	defer func() { stopRunner(); <-run.Done() }()
	schedCtx, stopSchedule := context.WithCancel(sys)
	scheduleDone := make(chan struct{})
	go func() {
		defer close(scheduleDone)
		run.runNowAndEvery(schedCtx, 30*time.Second, func(ctx context.Context) {
			if ids, err := svc.StartDueRollouts(ctx); err != nil && ctx.Err() == nil {
				log.Error("starting scheduled rollouts", "err", err)
			} else if len(ids) > 0 {
				log.Info("scheduled rollouts started", "rollouts", ids)
			}
		})
	}()
	defer func() { stopSchedule(); <-scheduleDone }()
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		run.runNowAndEvery(schedCtx, staleSweepEvery, func(ctx context.Context) { sweepStaleJobs(ctx, svc, log) })
	}()
	defer func() { stopSchedule(); <-sweepDone }()
	key, err := svc.CTKIPKey(sys, cfg.CTKIP.RSABits)
	if err != nil {
		return err
	}
	m.RegisterInventory(svc, store.Size, log)
	m.TLSExpiry("admin", env.TLS.Leaf.NotAfter)
	m.TLSExpiry("ctkip", env.TLS.Leaf.NotAfter)
	// A renewed certificate goes into service without a restart.
	env.Certs.OnReload = func(mat *tlsMaterial) {
		m.TLSExpiry("admin", mat.Leaf.NotAfter)
		m.TLSExpiry("ctkip", mat.Leaf.NotAfter)
		if cfg.RESTAuthn.Listen != "" {
			m.TLSExpiry("rest_authn", mat.Leaf.NotAfter)
		}
	}
	env.Certs.Start(ctx, tlsPollEvery)
	doors, err := newAgentDoors(env, svc, m) // RADIUS and the RSA REST API (agentsdoor.go)
	if err != nil {
		return err
	}
	doors.isRunner = run.IsLeader

	var ready atomic.Bool
	syncs := newSyncRunner(svc, m, log, env.Now)
	syncs.isRunner = run.IsLeader
	adm := admin.New(svc, admin.Options{Logger: log, Now: env.Now, Metrics: m.HTTP("admin"), AccessLog: true,
		Backup: store.Backup, Sync: syncs.SyncNow,
		Ready: func() error {
			if !ready.Load() {
				return errors.New("listeners not bound yet")
			}
			if store.Ping != nil {
				// Without a quorum (etcd) this node can neither read nor
				// write; with a file that refuses writes (bbolt: full or
				// failing disk) it cannot authenticate, since a replay
				// mark must be written first.
				pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				if err := store.Ping(pctx); err != nil {
					return err
				}
			}
			return doors.ready()
		}})
	mountMetrics(adm, m, cfg.Metrics.Auth)
	sc, err := scim.New(svc, scim.Options{Logger: log, Metrics: m})
	if err != nil {
		return err
	}
	adm.Engine().Any("/scim/v2/*path", gin.WrapH(http.StripPrefix("/scim/v2", sc)))
	console.New(svc, console.Options{Logger: log, Now: env.Now, Sources: consoleSources{svc: svc, sync: syncs},
		LoginLimits: consoleLoginLimits(cfg.Console)}).Mount(adm.Engine())

	ct, err := newCTKIPDoor(perNodeCTKIP(cfg.CTKIP, cfg.Store.Nodes), cfg.Store.Backend != backendBolt, svc, key, m, log, env.Now, env.Rand)
	if err != nil {
		return err
	}
	ctMux := http.NewServeMux()
	ctMux.Handle(ctkipPath, ct)
	ctMux.Handle("/", ct)

	group := env.newServerGroup(
		namedServer{Name: "admin", Addr: cfg.AdminListen, Server: newHTTPServer("admin", adm, log), TLS: env.AdminTLS},
		namedServer{Name: "ctkip", Addr: cfg.CTKIPListen, Server: newHTTPServer("ctkip", observed(ctMux, m.HTTP("ctkip"), log), log), TLS: env.CTKIPTLS},
	)
	group.Servers = append(group.Servers, doors.servers(env)...)
	group.Ready = func(addrs map[string]net.Addr) error {
		if a, ok := addrs["ctkip"]; ok && cfg.CTKIPPublicURL == "" {
			svc.SetCTKIPURL(strings.TrimRight(publicURL("", a.String(), env.Hostname), "/") + ctkipPath)
		}
		ready.Store(true)
		go syncs.loop(ctx, syncTick)
		go run.every(ctx, replacementSweepEvery, func(ctx context.Context) { sweepReplacementsOnce(ctx, svc, log) }) // replacesweep.go
		log.Info("tokend ready", "admin", addrs["admin"].String(), "ctkip", addrs["ctkip"].String(), "ctkip_url", svc.CTKIPURL(),
			"data_dir", env.Paths.DataDir)
		return nil
	}
	if err := doors.start(ctx); err != nil {
		return errors.Join(err, doors.shutdown())
	}
	err = group.Run(ctx)
	return errors.Join(err, doors.shutdown())
}

// interruptAtStart marks the imports a previous run left running (they
// will never finish) interrupted, so their tokens are traceable and the
// file resumable, and the rollouts it left applying interrupted, so
// ResumeRollouts continues them where their journal stopped. On a shared
// store the jobs other live nodes run are left alone; the runner's sweep
// (sweepStaleJobs) takes over those of dead nodes.
func interruptAtStart(ctx context.Context, svc *appliance.Service, shared bool, log *slog.Logger) error {
	var got appliance.StaleJobs
	var err error
	if shared {
		if got, err = svc.InterruptLeftoverJobs(ctx); err != nil {
			return fmt.Errorf("marking interrupted imports and rollouts: %w", err)
		}
	} else {
		if got.Imports, err = svc.InterruptImports(ctx); err != nil {
			return fmt.Errorf("marking interrupted imports: %w", err)
		}
		if got.Rollouts, err = svc.InterruptRollouts(ctx); err != nil {
			return fmt.Errorf("marking interrupted rollouts: %w", err)
		}
	}
	for _, id := range got.Imports {
		log.Warn("import interrupted by the previous stop; post the same file again to resume it", "job", id)
	}
	if len(got.Rollouts) > 0 {
		log.Warn("rollouts interrupted by the previous stop", "rollouts", got.Rollouts)
	}
	return nil
}

// staleSweepEvery: a dead node's job is marked interrupted (and its
// rollout resumed) within appliance.JobStale plus this.
const staleSweepEvery = 30 * time.Second

// sweepStaleJobs marks the imports and rollouts of dead nodes interrupted
// and resumes those rollouts here (the runner calls it).
func sweepStaleJobs(ctx context.Context, svc *appliance.Service, log *slog.Logger) {
	got, err := svc.InterruptStaleJobs(ctx)
	if err != nil && ctx.Err() == nil {
		log.Error("interrupting stale jobs", "err", err)
	}
	for _, id := range got.Imports {
		log.Warn("import interrupted: its node stopped writing; post the same file again to resume it", "job", id)
	}
	if len(got.Rollouts) > 0 {
		log.Warn("rollouts interrupted: their node stopped writing", "rollouts", got.Rollouts, "resumed", got.Resumed)
	}
}

// errBootstrapTokenShared: a node of a shared store found no admin-token
// file while the store has the bootstrap token.
var errBootstrapTokenShared = errors.New("the shared store already has the bootstrap admin token")

// ensureAdminToken (re)creates the bootstrap super-admin token when its file
// is missing, and prints only the file's path.
//
// On a shared store (etcd) it never replaces a bootstrap token that exists:
// that would lock out every other node's copy of the file. The node then
// refuses to start until the operator copies the file (one bootstrap token
// for the cluster, rotated in one place, rather than one per node).
func ensureAdminToken(ctx context.Context, svc *appliance.Service, env *serveEnv, shared bool) error {
	if _, err := os.Stat(env.Paths.AdminToken); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("admin token file: %w", err)
	}
	create := svc.ReplaceNamedAPIToken
	if shared {
		// Created only if absent, checked in the same transaction: of two
		// nodes starting at once on an empty store, exactly one creates it.
		create = svc.CreateNamedAPIToken
	}
	_, secret, err := create(ctx, adminTokenName, appliance.RoleSuperAdmin)
	if errors.Is(err, appliance.ErrExists) {
		return fmt.Errorf("%w and %s is missing: copy admin-token from the node that created it "+
			"(or run `tokend admin rotate-bootstrap-token` on one node and copy the new file to every node)",
			errBootstrapTokenShared, env.Paths.AdminToken)
	}
	if err != nil {
		return fmt.Errorf("create the admin API token: %w", err)
	}
	if err := writeSecretFile(env.Paths.AdminToken, []byte(secret.Reveal()+"\n")); err != nil {
		return fmt.Errorf("write the admin API token: %w", err)
	}
	fmt.Fprintf(env.Stdout, "tokend: super-admin API token written to %s\n", env.Paths.AdminToken)
	return nil
}

// mountMetrics serves /metrics on the admin listener, open or behind a
// bearer token of any role.
func mountMetrics(adm *admin.Server, m *metrics.Metrics, auth string) {
	h := gin.WrapH(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	if auth == "token" {
		adm.Engine().GET("/metrics", adm.Authenticate(), h)
		return
	}
	adm.Engine().GET("/metrics", h)
}

// observed adds per-route metrics and an access log line to a mux-served
// listener (the admin API does the same inside Gin).
func observed(mux *http.ServeMux, rec metrics.HTTPRecorder, log *slog.Logger) http.Handler {
	access := accesslog.New(log, "ctkip", 0, 0)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(sw, r)
		pattern := r.Pattern // set by the mux on this request
		d := time.Since(start)
		method := accesslog.Method(r.Method)
		rec.ObserveHTTP(pattern, method, sw.status, d)
		access.Request(r.Context(), method, pattern, sw.status, d, r.RemoteAddr)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// consoleSources shows identity sources and their last runs in the console
// and runs a sync from it.
type consoleSources struct {
	svc  *appliance.Service
	sync *syncRunner
}

func (s consoleSources) ListIdentitySources(ctx context.Context) ([]console.SourceStatus, error) {
	list, err := s.svc.ListIdentitySources(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]console.SourceStatus, 0, len(list))
	for _, x := range list {
		st := console.SourceStatus{ID: x.ID, Name: x.Name, Type: x.Type}
		if r := x.LastRun; r != nil {
			st.LastRunAt, st.LastRunOK, st.LastError = r.FinishedAt, r.Error == "", r.Error
			st.LastRunSummary = fmt.Sprintf("%d added, %d updated, %d deactivated, %d reactivated, %d purged",
				r.Added, r.Updated, r.Deactivated, r.Reactivated, r.Purged)
		}
		out = append(out, st)
	}
	return out, nil
}

func (s consoleSources) RunSync(ctx context.Context, id string) error {
	_, err := s.sync.SyncNow(ctx, id, false)
	return err
}

// adminSignInPolicy turns the console configuration into the Service's
// admin sign-in policy.
func adminSignInPolicy(c ConsoleConfig, m *metrics.Metrics) appliance.AdminSignInPolicy {
	lockout := c.LockoutDuration
	if lockout == 0 {
		lockout = -1 // the Service's "until unlocked"
	}
	return appliance.AdminSignInPolicy{MaxFailures: c.MaxFailures, LockoutDuration: lockout, ArgonSlots: c.Argon2Slots, Recorder: m}
}

func consoleLoginLimits(c ConsoleConfig) console.LoginLimits {
	return console.LoginLimits{RatePerClient: c.RatePerClient, BurstPerClient: c.BurstPerClient,
		RatePerAccount: c.RatePerAccount, BurstPerAccount: c.BurstPerAccount}
}

// authPolicy turns the configuration into the Service's policy.
func authPolicy(a AuthConfig) appliance.AuthPolicy {
	lockout := a.LockoutDuration
	if lockout == 0 {
		lockout = -1 // the Service's "until an admin unlocks"
	}
	return appliance.AuthPolicy{MaxFailures: a.MaxFailures, LockoutDuration: lockout, SmallWindow: a.SmallWindow,
		LargeWindow: a.LargeWindow, SessionTTL: a.SessionTTL, MaxEmergency: a.EmergencyMaxLifetime,
		PIN: appliance.PINPolicy{MinLength: a.PINMinLength, MaxLength: a.PINMaxLength, Alphanumeric: a.PINAlphanumeric,
			SystemGenerated: a.PINSystemGenerated}}
}
