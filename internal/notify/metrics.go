package notify

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the delivery outcomes per receiver. One Metrics serves every
// Sender of a process; the receivers named up front get their series at 0 so
// rate() and absence alerts work from the first scrape.
type Metrics struct {
	sent        *prometheus.CounterVec
	failed      *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	queueErrors *prometheus.CounterVec
	sendSeconds *prometheus.HistogramVec
	delay       *prometheus.HistogramVec
}

// NewMetrics creates the notification metrics and registers them with reg
// (nil: not registered, for tests and tools).
func NewMetrics(reg prometheus.Registerer, receivers ...string) *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"receiver"})
	}
	m := &Metrics{
		sent: counter("riskwatch_notifications_sent_total", "Notifications the receiver accepted."),
		failed: counter("riskwatch_notifications_failed_total",
			"Notifications in send attempts that failed and will be retried (receiver down, slow, 5xx, 408, 429); one notification failing three times counts three."),
		rejected: counter("riskwatch_notifications_rejected_total",
			"Notifications the receiver rejected permanently (4xx); kept in the outbox for operators, not retried."),
		queueErrors: counter("riskwatch_notification_queue_errors_total",
			"Failed reads or writes of the notification outbox; the sender retries them."),
		sendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "riskwatch_notification_send_seconds",
			Help:    "Duration of one send attempt to the receiver, successful or not.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"receiver"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "riskwatch_notification_delay_seconds",
			Help:    "From a notification's creation in the outbox to its delivery to the receiver.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600},
		}, []string{"receiver"}),
	}
	for _, r := range receivers {
		m.forReceiver(r)
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.failed, m.rejected, m.queueErrors, m.sendSeconds, m.delay)
	}
	return m
}

// receiverMetrics is Metrics curried for one receiver, resolved once so the
// send loop does not look labels up on every attempt.
type receiverMetrics struct {
	sent, failed, rejected, queueErrors prometheus.Counter
	sendSeconds, delay                  prometheus.Observer
}

func (m *Metrics) forReceiver(name string) receiverMetrics {
	return receiverMetrics{
		sent:        m.sent.WithLabelValues(name),
		failed:      m.failed.WithLabelValues(name),
		rejected:    m.rejected.WithLabelValues(name),
		queueErrors: m.queueErrors.WithLabelValues(name),
		sendSeconds: m.sendSeconds.WithLabelValues(name),
		delay:       m.delay.WithLabelValues(name),
	}
}
