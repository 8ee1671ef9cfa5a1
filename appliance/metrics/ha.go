package metrics

import "github.com/prometheus/client_golang/prometheus"

// haMetrics are the metrics of a node in a cluster on etcd.
type haMetrics struct {
	conflicts prometheus.Counter
	runner    prometheus.Gauge
}

func newHAMetrics(r *prometheus.Registry) haMetrics {
	h := haMetrics{
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "tokend_store_conflicts_total",
			Help: "Store transaction attempts that lost to a concurrent writer and ran again (etcd)."}),
		runner: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tokend_runner_leader",
			Help: "1 while this node is the elected runner of scheduled work (always 1 on bbolt), else 0."}),
	}
	r.MustRegister(h.conflicts, h.runner)
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
