package engine

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/rules"
)

// Metrics are the engine's, the same for a single node and a Kafka worker:
// dashboards and alert rules read these names. Every labelled series is
// created up front so it starts at 0 and rate() works from the first
// scrape.
type Metrics struct {
	events        *prometheus.CounterVec
	late          prometheus.Counter
	deadLetters   *prometheus.CounterVec
	filtered      prometheus.Counter
	lastClosed    prometheus.Gauge
	commitToAgg   prometheus.Histogram
	flushDuration prometheus.Histogram
	restarts      prometheus.Counter
	evalDuration  prometheus.Histogram
	transitions   *prometheus.CounterVec
	stuck         prometheus.Gauge
}

// NewMetrics creates the engine's metrics and registers them with reg
// (nil: not registered), with the status gauges read from status.
func NewMetrics(reg prometheus.Registerer, status *StatusBoard) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "riskwatch_events_total",
			Help: "Events aggregated, by kind (approval, cancel).",
		}, []string{"kind"}),
		late: f.NewCounter(prometheus.CounterOpts{
			Name: "riskwatch_late_events_total",
			Help: "Events whose minute was already closed; applied to the stored minute, never dropped.",
		}),
		deadLetters: f.NewCounterVec(prometheus.CounterOpts{
			Name: "riskwatch_dead_letters_total",
			Help: "Rows written to the dead-letter table instead of being aggregated, by reason.",
		}, []string{"reason"}),
		filtered: f.NewCounter(prometheus.CounterOpts{
			Name: "riskwatch_filtered_rows_total",
			Help: "Inserted rows of mapped tables that no mapping filter selected.",
		}),
		lastClosed: f.NewGauge(prometheus.GaugeOpts{
			Name: "riskwatch_last_closed_minute_timestamp_seconds",
			Help: "Start of the newest closed minute, Unix seconds.",
		}),
		commitToAgg: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "riskwatch_commit_to_aggregate_seconds",
			Help:    "From a source transaction's commit to the sink commit holding its events.",
			Buckets: []float64{.005, .01, .025, .05, .1, .15, .2, .25, .35, .5, .75, 1, 2.5, 5, 10, 30, 60},
		}),
		flushDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "riskwatch_sink_flush_seconds",
			Help:    "Duration of one sink transaction (aggregates, dead letters, position).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		evalDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "riskwatch_rule_evaluation_seconds",
			Help:    "Evaluating closed minutes: rules, lifecycle and storing the alerts.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		transitions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "riskwatch_alert_transitions_total",
			Help: "Alerts that started firing, escalated or resolved, by rule.",
		}, []string{"rule", "state"}),
		restarts: f.NewCounter(prometheus.CounterOpts{
			Name: "riskwatch_pipeline_restarts_total",
			Help: "Times the pipeline restarted after an error (source, sink or Kafka down, fenced).",
		}),
		stuck: f.NewGauge(prometheus.GaugeOpts{
			Name: "riskwatch_pipeline_stuck",
			Help: "1 while the pipeline fails the same way at the same position over and over (pipeline.stuck_after times or more).",
		}),
	}
	for _, k := range []event.Kind{event.Approval, event.Cancel} {
		m.events.WithLabelValues(k.String())
	}
	for _, rule := range []string{rules.CancelRateSpike, rules.VolumeDrop} {
		for _, st := range []string{alert.Firing.String(), alert.Resolved.String(), alert.Escalated} {
			m.transitions.WithLabelValues(rule, st)
		}
	}
	for _, r := range event.Reasons {
		m.deadLetters.WithLabelValues(string(r))
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "riskwatch_replication_lag_seconds",
		Help: "How far the sink trails the source: the source's clock now minus the commit time the sink holds everything up to.",
	}, func() float64 { return status.Status().LagSeconds })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "riskwatch_ready",
		Help: "1 when the pipeline is serving live data.",
	}, func() float64 {
		if status.Status().Ready {
			return 1
		}
		return 0
	})
	status.lastClosed = m.lastClosed
	return m
}

// Restarted counts a restart of the input after a failure.
func (m *Metrics) Restarted() { m.restarts.Inc() }
