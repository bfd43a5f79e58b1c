package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
)

// Stuck describes a pipeline that failed the same way at the same position
// over and over: restarting alone will not get it past whatever is there (a
// row the sink refuses, a sink that is down, a permission taken away).
type Stuck struct {
	// Since is the first of the identical failures.
	Since    time.Time
	Failures int
	Error    string
	// Position is where the pipeline stands: the source position the sink
	// holds everything up to.
	Position string
}

// StallWatch tells a stuck pipeline from one restarting through an outage
// that ends: it counts consecutive identical failures at one position, and
// forgets them as soon as the position moves.
type StallWatch struct {
	after       int
	notifyAfter time.Duration
	instance    string
	log         *slog.Logger
	gauge       prometheus.Gauge
	st          *alertstore.Store
	routes      []alertstore.Route
	url         string
	wake        func()

	mu       sync.Mutex
	pos, err string
	count    int
	since    time.Time
	stuck    *Stuck
	notified bool
	// unsure: a stuck alert of an earlier process may still be open; the
	// first progress of this one resolves it.
	unsure bool
}

// NewStallWatch watches the pipeline named instance, showing it in m's
// gauge and in status's reads (readiness); wake, when set, wakes the
// notification senders after an alert was stored.
func NewStallWatch(cfg *config.Config, instance string, st *alertstore.Store, wake func(), log *slog.Logger, m *Metrics, status *StatusBoard) *StallWatch {
	w := &StallWatch{after: cfg.Pipeline.StuckAfter, notifyAfter: cfg.Pipeline.StuckNotifyAfter.D(), instance: instance,
		url: dashboardBase(cfg) + "/", st: st, routes: Routes(cfg), wake: wake, log: log, unsure: true, gauge: m.stuck}
	status.stall = w
	return w
}

// Current is the stuck state, nil when the pipeline is not stuck.
func (w *StallWatch) Current() *Stuck {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stuck == nil {
		return nil
	}
	s := *w.stuck
	return &s
}

// Failed records a failed session at position pos. Once stuck for
// notifyAfter it tells the receivers, if the sink takes the alert.
func (w *StallWatch) Failed(ctx context.Context, now time.Time, pos string, err error) {
	msg := err.Error()
	w.mu.Lock()
	if pos != w.pos || msg != w.err {
		w.pos, w.err, w.count, w.since = pos, msg, 0, now
	}
	w.count++
	if w.count >= w.after {
		if w.stuck == nil {
			w.log.Error("pipeline stuck: the same failure at the same position again and again; it keeps retrying",
				"failures", w.count, "position", pos, "since", w.since, "err", msg)
		}
		w.stuck = &Stuck{Since: w.since, Failures: w.count, Error: msg, Position: pos}
		w.gauge.Set(1)
	}
	raise := w.stuck != nil && !w.notified && now.Sub(w.since) >= w.notifyAfter
	s := w.stuck
	w.mu.Unlock()
	if !raise {
		return
	}
	if err := w.st.RaiseSystemAlert(ctx, w.change(s, now, true), w.routes); err != nil {
		// The sink may be what fails; /readyz and the metric still say it.
		w.log.Warn("could not record the stuck-pipeline alert", "err", err)
		return
	}
	w.mu.Lock()
	w.notified, w.unsure = true, false
	w.mu.Unlock()
	if w.wake != nil {
		w.wake()
	}
}

// Progressed records that the pipeline made durable position pos; a
// different position from the failures' clears them.
func (w *StallWatch) Progressed(ctx context.Context, now time.Time, pos string) {
	w.mu.Lock()
	if pos == w.pos && w.count > 0 {
		w.mu.Unlock()
		return
	}
	was, resolve := w.stuck, w.notified || w.unsure
	w.pos, w.err, w.count, w.stuck, w.notified, w.unsure = pos, "", 0, nil, false, false
	w.mu.Unlock()
	if was != nil {
		w.gauge.Set(0)
		w.log.Info("pipeline moving again", "position", pos, "stuck_since", was.Since, "failures", was.Failures)
	}
	if !resolve {
		return
	}
	if was == nil {
		was = &Stuck{}
	}
	if err := w.st.ResolveSystemAlert(ctx, w.change(was, now, false), w.routes); err != nil {
		w.log.Warn("could not resolve the stuck-pipeline alert", "err", err)
		return
	}
	if w.wake != nil {
		w.wake()
	}
}

func (w *StallWatch) change(s *Stuck, now time.Time, firing bool) alertstore.SystemAlert {
	a := alertstore.SystemAlert{Rule: alert.RuleStuck, Instance: w.instance, At: now, Since: s.Since, Severity: "critical",
		DashboardURL: w.url, Values: s.Detail()}
	a.Values["instance"] = w.instance
	kind := alert.NotifyResolved
	if firing {
		kind = alert.NotifyFiring
	}
	a.Summary = alert.Summary(alert.RuleStuck, 0, a.Values, kind)
	return a
}

// Detail is the stuck state as /readyz and the API show it.
func (s *Stuck) Detail() map[string]any {
	return map[string]any{"since": s.Since.UTC().Format(time.RFC3339), "failures": s.Failures, "error": s.Error, "position": s.Position}
}
