package metrics

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// haMetrics are the metrics of a node in a cluster on etcd.
type haMetrics struct {
	conflicts prometheus.Counter
	runner    prometheus.Gauge
	etcd      *prometheus.HistogramVec
}

func newHAMetrics(r *prometheus.Registry) haMetrics {
	h := haMetrics{
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "tokend_store_conflicts_total",
			Help: "Store transaction attempts that lost to a concurrent writer and ran again (etcd)."}),
		runner: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tokend_runner_leader",
			Help: "1 while this node is the elected runner of scheduled work (always 1 on bbolt), else 0."}),
		etcd: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tokend_etcd_request_duration_seconds",
			Help:    "Duration of each request to etcd (every attempt), by gRPC method such as KV/Txn.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"method"}),
	}
	r.MustRegister(h.conflicts, h.runner, h.etcd)
	return h
}

// ObserveConflict counts one transaction attempt that lost to a
// concurrent writer (etcdstore.ConflictObserver).
func (m *Metrics) ObserveConflict() { m.ha.conflicts.Inc() }

// RunnerLeader sets whether this node runs the scheduled work.
func (m *Metrics) RunnerLeader(leader bool) {
	v := 0.0
	if leader {
		v = 1
	}
	m.ha.runner.Set(v)
}

// EtcdRequest observes one request to etcd. method is the gRPC method
// ("/etcdserverpb.KV/Txn"); its service's package is dropped. The set is
// etcd's API, so the label is bounded.
func (m *Metrics) EtcdRequest(method string, d time.Duration) {
	if i := strings.LastIndexByte(method, '.'); i >= 0 {
		method = method[i+1:]
	}
	m.ha.etcd.WithLabelValues(method).Observe(d.Seconds())
}
