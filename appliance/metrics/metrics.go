package metrics

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"tokend/appliance"
)

// Metrics owns the registry and every tokend metric.
type Metrics struct {
	Registry *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	ctkipOutcome *prometheus.CounterVec
	ctkipLatency prometheus.Histogram
	authDecision *prometheus.CounterVec
	adminSignIn  *prometheus.CounterVec
	commitLat    prometheus.Histogram
	commitWrites prometheus.Counter
	commitFails  prometheus.Counter
	syncRuns     *prometheus.CounterVec
	syncDuration *prometheus.HistogramVec
	syncChanges  *prometheus.CounterVec
	syncLastOK   *prometheus.GaugeVec
	syncUp       *prometheus.GaugeVec
	scimRequests *prometheus.CounterVec
	tlsExpiry    *prometheus.GaugeVec
	ha           haMetrics // ha.go
}

// New builds the registry with the Go and process collectors and
// tokend_build_info.
func New(version string) *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tokend_build_info", Help: "Build information; always 1."},
		[]string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	m := &Metrics{
		Registry: r,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokend_http_requests_total",
			Help: "HTTP requests by listener, route pattern, method and status code."}, []string{"listener", "route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tokend_http_request_duration_seconds",
			Help: "HTTP request duration by listener and route pattern.", Buckets: latency}, []string{"listener", "route", "method"}),
		ctkipOutcome: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokend_ctkip_requests_total",
			Help: "CT-KIP requests by protocol step and outcome."}, []string{"step", "outcome"}),
		ctkipLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tokend_ctkip_exchange_duration_seconds",
			Help: "Time from ClientHello to ServerFinished of successful provisionings.", Buckets: latency}),
		authDecision: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokend_auth_decisions_total",
			Help: "Authentication decisions by result and reason."}, []string{"result", "reason"}),
		adminSignIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokend_console_signins_total",
			Help: "Security Console sign-in attempts by outcome and reason (refusals are audited at most once per account per minute; this counts all)."},
			[]string{"outcome", "reason"}),
		commitLat: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tokend_store_commit_duration_seconds",
			Help: "Duration of durable store commits (one per group).", Buckets: latency}),
		commitWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "tokend_store_writes_total",
			Help: "Keys written or deleted by committed store transactions."}),
		commitFails: prometheus.NewCounter(prometheus.CounterOpts{Name: "tokend_store_commit_failures_total",
			Help: "Store commits the storage refused (failed write or fsync, full disk, size cap; on etcd no quorum or an outcome unknown): their writes were answered 503."}),
		syncRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokend_sync_runs_total",
			Help: "Identity source sync runs by source type and result."}, []string{"type", "result"}),
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tokend_sync_duration_seconds",
			Help: "Identity source sync run duration.", Buckets: prometheus.ExponentialBuckets(0.01, 3, 10)}, []string{"type"}),
		syncChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokend_sync_changes_total",
			Help: "User changes applied by sync runs, by kind."}, []string{"type", "change"}),
		syncLastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tokend_sync_last_success_timestamp_seconds",
			Help: "Unix time of the last successful sync run per identity source."}, []string{"source"}),
		syncUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tokend_sync_directory_reachable",
			Help: "1 if the last sync of a pulled identity source reached its directory, 0 if it could not."}, []string{"source"}),
		scimRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokend_scim_requests_total",
			Help: "SCIM requests by operation and status code."}, []string{"operation", "code"}),
		tlsExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tokend_tls_certificate_expiry_timestamp_seconds",
			Help: "Unix time at which the listener certificate expires."}, []string{"listener"}),
	}
	r.MustRegister(build, m.httpRequests, m.httpDuration, m.ctkipOutcome, m.ctkipLatency, m.authDecision, m.adminSignIn, m.commitLat,
		m.commitWrites, m.commitFails, m.syncRuns, m.syncDuration, m.syncChanges, m.syncLastOK, m.syncUp, m.scimRequests, m.tlsExpiry)
	m.ha = newHAMetrics(r)
	return m
}

// HTTP returns a recorder for one listener ("admin" or "ctkip").
func (m *Metrics) HTTP(listener string) HTTPRecorder { return HTTPRecorder{m: m, listener: listener} }

// HTTPRecorder records requests of one listener.
type HTTPRecorder struct {
	m        *Metrics
	listener string
}

// ObserveHTTP records one request; route is the matched pattern, never the
// raw path, and method one of a closed set (the doors pass accesslog.Method),
// never the raw one.
func (h HTTPRecorder) ObserveHTTP(route, method string, status int, d time.Duration) {
	h.m.httpRequests.WithLabelValues(h.listener, route, method, strconv.Itoa(status)).Inc()
	h.m.httpDuration.WithLabelValues(h.listener, route, method).Observe(d.Seconds())
}

// CTKIPOutcome counts one CT-KIP request outcome.
func (m *Metrics) CTKIPOutcome(step, outcome string) {
	m.ctkipOutcome.WithLabelValues(step, outcome).Inc()
}

// CTKIPExchange observes a completed exchange.
func (m *Metrics) CTKIPExchange(d time.Duration) { m.ctkipLatency.Observe(d.Seconds()) }

// AuthDecision counts one authentication decision (appliance.AuthRecorder).
func (m *Metrics) AuthDecision(result, reason string) {
	m.authDecision.WithLabelValues(result, reason).Inc()
}

// AdminSignIn counts one console sign-in outcome
// (appliance.AdminSignInRecorder).
func (m *Metrics) AdminSignIn(outcome, reason string) {
	m.adminSignIn.WithLabelValues(outcome, reason).Inc()
}

// ObserveCommit records one durable commit of a group of transactions.
func (m *Metrics) ObserveCommit(d time.Duration, writes, _ int) {
	m.commitLat.Observe(d.Seconds())
	m.commitWrites.Add(float64(writes))
}

// ObserveCommitFailure counts one commit the storage refused
// (boltstore.CommitFailureObserver, etcdstore.CommitFailureObserver).
func (m *Metrics) ObserveCommitFailure() { m.commitFails.Inc() }

// SyncRun records a finished sync run.
func (m *Metrics) SyncRun(sourceType, sourceID string, ok bool, d time.Duration, changes map[string]int) {
	result := "success"
	if !ok {
		result = "failure"
	}
	m.syncRuns.WithLabelValues(sourceType, result).Inc()
	m.syncDuration.WithLabelValues(sourceType).Observe(d.Seconds())
	for k, n := range changes {
		m.syncChanges.WithLabelValues(sourceType, k).Add(float64(n))
	}
	if ok {
		// Source ids are admin-created and few: a bounded label.
		m.syncLastOK.WithLabelValues(sourceID).SetToCurrentTime()
	}
}

// DirectoryReachable records whether a pulled source's directory answered.
func (m *Metrics) DirectoryReachable(sourceID string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.syncUp.WithLabelValues(sourceID).Set(v)
}

// SCIMRequest counts one SCIM request.
func (m *Metrics) SCIMRequest(op string, status int) {
	m.scimRequests.WithLabelValues(op, strconv.Itoa(status)).Inc()
}

// TLSExpiry sets a listener certificate's expiry.
func (m *Metrics) TLSExpiry(listener string, notAfter time.Time) {
	m.tlsExpiry.WithLabelValues(listener).Set(float64(notAfter.Unix()))
}

// StatsSource reads inventory figures; *appliance.Service implements it.
type StatsSource interface {
	Stats(ctx context.Context) (appliance.Stats, error)
}

// RegisterInventory adds gauges read from the store at scrape time, and the
// store file size when size is not nil.
func (m *Metrics) RegisterInventory(src StatsSource, size func() int64, log *slog.Logger) {
	m.Registry.MustRegister(&inventory{src: src, size: size, log: log})
}

var (
	descTokens = prometheus.NewDesc("tokend_tokens", "Tokens in the inventory by kind and state.", []string{"kind", "state"}, nil)
	descAssign = prometheus.NewDesc("tokend_tokens_assigned", "Tokens assigned to a user.", nil, nil)
	descProv   = prometheus.NewDesc("tokend_tokens_provisioned", "Tokens holding a seed.", nil, nil)
	descCodes  = prometheus.NewDesc("tokend_activation_codes_outstanding", "Issued activation codes neither used, voided nor expired.", nil, nil)
	descUsers  = prometheus.NewDesc("tokend_users", "Users by identity source and active flag.", []string{"source", "active"}, nil)
	descSize   = prometheus.NewDesc("tokend_store_size_bytes", "Size of the store: the bbolt file, or on etcd the database of the member answering (every key prefix; etcd refuses writes at its quota).", nil, nil)
	descUp     = prometheus.NewDesc("tokend_inventory_scrape_success", "1 if the inventory gauges could be read from the store.", nil, nil)
)

type inventory struct {
	src  StatsSource
	size func() int64
	log  *slog.Logger
}

func (i *inventory) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTokens, descAssign, descProv, descCodes, descUsers, descSize, descUp} {
		ch <- d
	}
}

func (i *inventory) Collect(ch chan<- prometheus.Metric) {
	if i.size != nil {
		ch <- prometheus.MustNewConstMetric(descSize, prometheus.GaugeValue, float64(i.size()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := i.src.Stats(ctx)
	if err != nil {
		if i.log != nil {
			i.log.Warn("inventory metrics unavailable", "err", err)
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	for k, n := range st.Tokens {
		ch <- prometheus.MustNewConstMetric(descTokens, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	ch <- prometheus.MustNewConstMetric(descAssign, prometheus.GaugeValue, float64(st.Assigned))
	ch <- prometheus.MustNewConstMetric(descProv, prometheus.GaugeValue, float64(st.Provisioned))
	ch <- prometheus.MustNewConstMetric(descCodes, prometheus.GaugeValue, float64(st.OutstandingCodes))
	for k, n := range st.Users {
		ch <- prometheus.MustNewConstMetric(descUsers, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}
