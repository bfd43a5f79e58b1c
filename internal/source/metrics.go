package source

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the source's Prometheus metrics.
type Metrics struct {
	ignored         *prometheus.CounterVec
	heartbeats      prometheus.Counter
	heartbeatErrors prometheus.Counter
	drains          prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests and one-shot commands).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		ignored: f.NewCounterVec(prometheus.CounterOpts{
			Name: "riskwatch_ignored_changes_total",
			Help: "Source changes that are not events (SPEC §2: updates, deletes, truncates), by table and operation.",
		}, []string{"table", "op"}),
		heartbeats: f.NewCounter(prometheus.CounterOpts{
			Name: "riskwatch_heartbeats_total",
			Help: "Heartbeat messages committed on the source: while its tables were quiet, after each minute's end + grace, and before each drain.",
		}),
		heartbeatErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "riskwatch_heartbeat_errors_total",
			Help: "Heartbeats that failed to be emitted.",
		}),
		drains: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "riskwatch_drain_seconds",
			Help:    "Duration of each drain with minute delivery: heartbeat, connection, reading to the server's WAL end, confirming.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
}

// Ignored counts a change of a mapped table that is not an event.
func (m *Metrics) Ignored(table, op string) { m.ignored.WithLabelValues(table, op).Inc() }

// Heartbeat counts a heartbeat committed on the source.
func (m *Metrics) Heartbeat() { m.heartbeats.Inc() }

// HeartbeatFailed counts a heartbeat that could not be committed.
func (m *Metrics) HeartbeatFailed() { m.heartbeatErrors.Inc() }
