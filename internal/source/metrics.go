package source

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the source's Prometheus metrics.
type Metrics struct {
	ignored         *prometheus.CounterVec
	heartbeats      prometheus.Counter
	heartbeatErrors prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests and one-shot commands).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riskwatch_ignored_changes_total",
			Help: "Source changes that are not events (SPEC §2: updates, deletes, truncates), by table and operation.",
		}, []string{"table", "op"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "riskwatch_heartbeats_total",
			Help: "Heartbeat messages emitted on the source while its tables were quiet.",
		}),
		heartbeatErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "riskwatch_heartbeat_errors_total",
			Help: "Heartbeats that failed to be emitted.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.ignored, m.heartbeats, m.heartbeatErrors)
	}
	return m
}
