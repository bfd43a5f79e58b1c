package engine

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/store"
)

// TestPruneOnceFollowsTheConfig: each table is cut at progress minus its
// own retention, and a retention of 0 keeps its rows for ever.
func TestPruneOnceFollowsTheConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := store.Open(ctx, cluster.NewDB(t), "rw_sink", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool().Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	count := func(table string) (n int) {
		t.Helper()
		if err := db.Pool().QueryRow(ctx, "SELECT count(*) FROM "+db.Table(table)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	through := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	// A resolved alert 100 days old and its evaluation; dead letters 31
	// and 29 days old; a minute 10 days old (the minutes' own retention,
	// 8 days plus a day of margin).
	exec(`INSERT INTO rw_sink.alerts (id, rule, merchant_id, state, active_at, resolved_at, last_eval_at, "values")
		VALUES (1, 'volume_drop', 5, 'resolved', $1, $1, $1, '{}')`, through.Add(-100*day))
	exec(`INSERT INTO rw_sink.alert_evaluations (alert_id, minute, fires, "values") VALUES (1, $1, true, '{}')`, through.Add(-100*day))
	for _, age := range []time.Duration{31 * day, 29 * day} {
		exec(`INSERT INTO rw_sink.dead_letters (recorded_at, origin, source_table, kind, reason, detail, row)
			VALUES ($1, 'stream', 'public.payments', 'approval', 'null_amount', '', '{}')`, through.Add(-age))
	}
	exec(`INSERT INTO rw_sink.minute_agg VALUES (5, $1, 1, 100, 0, 0)`, through.Add(-10*day))
	// Rollups either side of their cutoffs: retention_hours 90d cuts at
	// 2026-08-27 06:00 UTC; retention_days 400d at 2025-10-21 15:00 in
	// Seoul, so business days before 2025-10-21 go.
	exec(`INSERT INTO rw_sink.hour_agg VALUES (5, '2026-08-27 05:00+00', 1, 100, 0, 0), (5, '2026-08-27 06:00+00', 1, 100, 0, 0)`)
	exec(`INSERT INTO rw_sink.day_agg VALUES (5, '2025-10-20', 1, 100, 0, 0), (5, '2025-10-21', 1, 100, 0, 0)`)

	cfg := config.Default()
	cfg.RetentionAlerts = 0 // kept for ever
	if cfg.Location, err = time.LoadLocation("Asia/Seoul"); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	PruneOnce(ctx, db, cfg, log, through)
	if a, e, d, m := count("alerts"), count("alert_evaluations"), count("dead_letters"), count("minute_agg"); a != 1 || e != 0 || d != 1 || m != 0 {
		t.Fatalf("after pruning: %d alerts, %d evaluations, %d dead letters, %d minutes; want 1, 0 (30d), 1 (30d), 0", a, e, d, m)
	}
	var hour time.Time
	var dayKept string
	if err := db.Pool().QueryRow(ctx, `SELECT (SELECT min(hour) FROM rw_sink.hour_agg), (SELECT min(day)::text FROM rw_sink.day_agg)`).Scan(&hour, &dayKept); err != nil {
		t.Fatal(err)
	}
	if h, d := count("hour_agg"), count("day_agg"); h != 1 || d != 1 || !hour.Equal(time.Date(2026, 8, 27, 6, 0, 0, 0, time.UTC)) || dayKept != "2025-10-21" {
		t.Fatalf("rollups after pruning: %d hours from %s, %d days from %s; want the 06:00 hour and the 2025-10-21 day", h, hour, d, dayKept)
	}
	cfg.RetentionAlerts = config.Duration(90 * day)
	cfg.RetentionHours, cfg.RetentionDays = 0, 0
	exec(`INSERT INTO rw_sink.hour_agg VALUES (5, '2020-01-01 00:00+00', 1, 100, 0, 0)`)
	PruneOnce(ctx, db, cfg, log, through)
	if a := count("alerts"); a != 0 {
		t.Fatalf("with retention_alerts 90d a 100-day-old resolved alert is still there")
	}
	if h := count("hour_agg"); h != 2 {
		t.Fatalf("retention_hours 0 pruned hourly rollups: %d left, want 2", h)
	}
}
