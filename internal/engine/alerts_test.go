package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/sim"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// seedAlertHistory gives merchant 100 a 7-day baseline of 1% cancels
// (2,000 approvals, 20 cancels spread over the 7 days before the last
// hour) and merchant 300 a steady high rate (10%) that must not fire.
func seedAlertHistory(e *env) {
	e.exec(`INSERT INTO payments SELECT nextval('ids'), 100, 10000, 'approved', now() - interval '2 hours' - g * interval '4.5 minutes' FROM generate_series(1, 2000) g`)
	e.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 100, 5000, now() - interval '2 hours' - g * interval '7 hours' FROM generate_series(1, 20) g`)
	e.exec(`INSERT INTO payments SELECT nextval('ids'), 300, 10000, 'approved', now() - interval '2 hours' - g * interval '9 minutes' FROM generate_series(1, 1000) g`)
	e.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 300, 5000, now() - interval '2 hours' - g * interval '90 minutes' FROM generate_series(1, 100) g`)
}

// liveTransitions reads the transitions the live engine stored.
func liveTransitions(t *testing.T, st *store.DB) []string {
	t.Helper()
	list, err := alertstore.New(st).Alerts(context.Background(), alertstore.AlertFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		out = append(out, fmt.Sprintf("%s %d firing %s", a.Rule, a.Merchant, window.MinuteOf(a.ActiveAt)))
		if !a.ResolvedAt.IsZero() {
			out = append(out, fmt.Sprintf("%s %d resolved %s", a.Rule, a.Merchant, window.MinuteOf(a.ResolvedAt)))
		}
	}
	slices.Sort(out)
	return out
}

// TestAlertsLiveThenBacktest: a cancellation surge and a bust-out fire
// live, a merchant with a high but steady rate does not, the outbox holds
// one firing notification per unsilenced alert for each receiver whose rules
// match, and a backtest over
// the same minutes raises exactly the same transitions. A restart neither
// loses the open alerts nor notifies them again as new.
func TestAlertsLiveThenBacktest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sim.Schema)
	seedAlertHistory(e)
	cfg := e.config(func(c *config.Config) {
		c.Notify.Receivers = []config.Receiver{{Name: "hook", Type: "webhook", URL: "http://127.0.0.1:9/x"}, {Name: "only-volume", Type: "log", Rules: []string{"volume_drop"}}}
	})
	r := e.start(cfg, nil)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	startClosed := r.eng.Status().LastClosed
	// Merchant 200 is under review: its alerts are recorded, not notified.
	if _, err := alertstore.New(r.st).AddSilence(context.Background(), alertstore.Silence{Merchant: 200, StartsAt: time.Now().Add(-time.Minute), EndsAt: time.Now().Add(time.Hour),
		Reason: "under review", CreatedBy: "test"}); err != nil {
		t.Fatal(err)
	}

	// Merchant 100: 30 approvals and 12 cancels now. H holds 30 and 12;
	// baseline 20/2000 = 1% (merchant); needs 12 >= 5 and
	// 12 >= 2 × 0.01 × max(30, 20) = 0.6: fires.
	e.exec(`INSERT INTO payments SELECT nextval('ids'), 100, 10000, 'approved', now() FROM generate_series(1, 30)`)
	e.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 100, 10000, now() FROM generate_series(1, 12)`)
	// Merchant 200, never seen: no approvals, 8 cancels. Baseline from
	// the platform: (20 + 100) / (2000 + 1000) = 4%; 8 >= 2 × 0.04 × 20 = 1.6.
	e.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 200, 50000, now() FROM generate_series(1, 8)`)
	// Merchant 300: 50 approvals and 6 cancels: 12% against its 10%;
	// 6 < 2 × 0.1 × 50 = 10: no alert.
	e.exec(`INSERT INTO payments SELECT nextval('ids'), 300, 10000, 'approved', now() FROM generate_series(1, 50)`)
	e.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 300, 10000, now() FROM generate_series(1, 6)`)
	// Merchant 400: 1 approval, 1 cancel: below min_cancels.
	e.exec(`INSERT INTO payments VALUES (nextval('ids'), 400, 10000, 'approved', now())`)
	e.exec(`INSERT INTO payment_cancels VALUES (nextval('ids'), 0, 400, 10000, now())`)

	r.waitFor("two alerts", 90*time.Second, func() bool { return len(liveTransitions(t, r.st)) == 2 })
	got := liveTransitions(t, r.st)
	if got[0][:len("cancel_rate_spike 100 firing")] != "cancel_rate_spike 100 firing" || got[1][:len("cancel_rate_spike 200 firing")] != "cancel_rate_spike 200 firing" {
		t.Fatalf("live transitions = %v", got)
	}
	list, err := alertstore.New(r.st).Alerts(context.Background(), alertstore.AlertFilter{State: "firing", Merchant: 200})
	if err != nil || len(list) != 1 {
		t.Fatalf("alerts of 200: %v %v", list, err)
	}
	if v := list[0].Values; v["baseline_source"] != "platform" || v["c_h"] != float64(8) || v["rate_h"] != nil {
		t.Fatalf("bust-out values = %v", v)
	}
	countNotifications := func() (n, deliveries int) {
		err := e.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM riskwatch.notifications), (SELECT count(*) FROM riskwatch.deliveries)`).Scan(&n, &deliveries)
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	// One firing notification, for merchant 100 (200 is silenced), to
	// "hook" only (the other receiver takes volume_drop alone).
	if n, d := countNotifications(); n != 1 || d != 1 {
		t.Fatalf("outbox: %d notifications, %d deliveries; want 1, 1", n, d)
	}

	// Restart: the open alerts come back, nothing is notified as new.
	evaluated := r.eng.Status().LastClosed
	r.shutdown()
	r2 := e.start(cfg, nil)
	r2.waitFor("a minute evaluated after the restart", 90*time.Second, func() bool { return r2.eng.Status().LastClosed >= evaluated+1 })
	if n, d := countNotifications(); n != 1 || d != 1 {
		t.Fatalf("after restart: %d notifications, %d deliveries; want still 1, 1", n, d)
	}
	after := liveTransitions(t, r2.st)
	if fmt.Sprint(after) != fmt.Sprint(got) {
		t.Fatalf("transitions after restart %v, before %v", after, got)
	}
	var evals int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM riskwatch.alert_evaluations e JOIN riskwatch.alerts a ON a.id = e.alert_id WHERE a.merchant_id = 100`).Scan(&evals); err != nil {
		t.Fatal(err)
	}
	// Evaluated at the minute it fired, and again at least once after the
	// restart.
	if evals < 2 {
		t.Fatalf("merchant 100's alert has %d stored evaluations, want one per minute since it fired", evals)
	}

	// Backtest over every minute the live engine evaluated.
	last := r2.eng.Status().LastClosed
	r2.shutdown()
	var bt []string
	err = Backtest(context.Background(), aggregates.New(r2.st0(t)), cfg, BacktestOptions{From: startClosed + 1, To: last + 1, ProgressOut: r2.logs, Logger: slog.New(slog.NewTextHandler(r2.logs, nil)),
		Emit: func(tr Transition) error {
			bt = append(bt, fmt.Sprintf("%s %d %s %s", tr.Rule, tr.MerchantID, tr.State, window.MinuteOf(mustTime(t, tr.Minute))))
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(bt)
	if fmt.Sprint(bt) != fmt.Sprint(got) {
		t.Fatalf("backtest transitions %v, live %v", bt, got)
	}
}

func mustTime(t *testing.T, s string) time.Time {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
