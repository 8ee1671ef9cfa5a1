package metrics

import "github.com/prometheus/client_golang/prometheus"

// AgentMetrics counts what the agents' doors (RADIUS, the RSA REST API)
// decide and drop. Labels are fixed vocabularies: never a user, an agent
// name or an address.
type AgentMetrics struct {
	decisions *prometheus.CounterVec
	dropped   *prometheus.CounterVec
}

// Agents registers the agents' doors' metrics in m's registry.
func (m *Metrics) Agents() *AgentMetrics {
	a := &AgentMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokend_agent_authentications_total",
			Help: "Authentication decisions asked for by agents, by agent kind (radius, rest) and result."}, []string{"kind", "result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokend_radius_dropped_total",
			Help: "RADIUS packets dropped without an answer, by reason."}, []string{"reason"}),
	}
	m.Registry.MustRegister(a.decisions, a.dropped)
	return a
}

// AgentAuthentication counts one decision.
func (a *AgentMetrics) AgentAuthentication(kind, result string) {
	a.decisions.WithLabelValues(kind, result).Inc()
}

// RADIUSDropped counts one dropped packet.
func (a *AgentMetrics) RADIUSDropped(reason string) { a.dropped.WithLabelValues(reason).Inc() }
