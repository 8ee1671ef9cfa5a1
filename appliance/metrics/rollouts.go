package metrics

import "github.com/prometheus/client_golang/prometheus"

// RolloutMetrics counts the users rollouts handle. The one label is the
// result (done, failed, skipped): never a rollout id, a user or a serial.
type RolloutMetrics struct {
	users *prometheus.CounterVec
}

// Rollouts registers the rollout metrics in m's registry; the result is an
// appliance.RolloutRecorder.
func (m *Metrics) Rollouts() *RolloutMetrics {
	r := &RolloutMetrics{
		users: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokend_rollout_users_total",
			Help: "Users handled by rollout applies, by result: done (token assigned and distributed), failed, skipped (by the plan)."},
			[]string{"result"}),
	}
	// Every result is exported from the start, so a rate over it has a zero
	// to start from.
	for _, res := range []string{"done", "failed", "skipped"} {
		r.users.WithLabelValues(res)
	}
	m.Registry.MustRegister(r.users)
	return r
}

// RolloutUsers counts n users with one result.
func (r *RolloutMetrics) RolloutUsers(result string, n int) {
	r.users.WithLabelValues(result).Add(float64(n))
}
