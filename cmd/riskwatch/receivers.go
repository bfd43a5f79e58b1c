package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/notify/alertmanager"
	"github.com/riskwatch/riskwatch/internal/notify/httptemplate"
	"github.com/riskwatch/riskwatch/internal/notify/lognotify"
	"github.com/riskwatch/riskwatch/internal/notify/pagerduty"
	"github.com/riskwatch/riskwatch/internal/notify/slack"
	"github.com/riskwatch/riskwatch/internal/notify/webhook"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
)

// newSenders builds one send loop per configured receiver, all reading the
// sink's outbox; gate, when not nil, is asked before each send.
func newSenders(cfg *config.Config, st *store.DB, log *slog.Logger, reg prometheus.Registerer, gate func() bool) ([]*notify.Sender, error) {
	names := make([]string, len(cfg.Notify.Receivers))
	for i, r := range cfg.Notify.Receivers {
		names[i] = r.Name
	}
	metrics := notify.NewMetrics(reg, names...)
	var out []*notify.Sender
	for i, r := range cfg.Notify.Receivers {
		n, err := newNotifier(r, cfg.Location, nil, log)
		if err != nil {
			return nil, fmt.Errorf("notify.receivers[%d] (%s): %w", i, r.Name, err)
		}
		out = append(out, notify.NewSender(notify.SenderOptions{
			Name: r.Name, Notifier: n, Queue: alertstore.New(st).Outbox(), Timeout: r.Timeout.D(),
			BackoffMin: cfg.Notify.BackoffMin.D(), BackoffMax: cfg.Notify.BackoffMax.D(),
			Logger: log.With("receiver", r.Name), Metrics: metrics, Jitter: notify.RandomJitter(0.1), Gate: gate,
		}))
	}
	return out, nil
}

// newNotifier builds r's integration; client nil means each integration's
// default client.
func newNotifier(r config.Receiver, loc *time.Location, client *http.Client, log *slog.Logger) (notify.Notifier, error) {
	timeout := r.Timeout.D()
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	switch r.Type {
	case "webhook":
		return webhook.New(webhook.Config{URL: r.URL, Timeout: timeout, Headers: r.Headers, HTTPClient: client})
	case "slack":
		return slack.New(slack.Config{URL: r.URL, Timeout: timeout, HTTPClient: client})
	case "pagerduty":
		return pagerduty.New(pagerduty.Config{URL: r.URL, RoutingKey: r.RoutingKey, Timeout: timeout, HTTPClient: client})
	case "alertmanager":
		return alertmanager.New(alertmanager.Config{URL: r.URL, Timeout: timeout, HTTPClient: client})
	case "template":
		return httptemplate.New(httptemplate.Config{Spec: r.TemplateSpec(), Location: loc, Timeout: timeout, HTTPClient: client})
	case "log":
		return lognotify.New(log.With("receiver", r.Name)), nil
	}
	return nil, fmt.Errorf("unknown receiver type %q", r.Type)
}
