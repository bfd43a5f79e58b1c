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

	cfg := config.Default()
	cfg.RetentionAlerts = 0 // kept for ever
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	PruneOnce(ctx, db, cfg, log, through)
	if a, e, d, m := count("alerts"), count("alert_evaluations"), count("dead_letters"), count("minute_agg"); a != 1 || e != 0 || d != 1 || m != 0 {
		t.Fatalf("after pruning: %d alerts, %d evaluations, %d dead letters, %d minutes; want 1, 0 (30d), 1 (30d), 0", a, e, d, m)
	}
	cfg.RetentionAlerts = config.Duration(90 * day)
	PruneOnce(ctx, db, cfg, log, through)
	if a := count("alerts"); a != 0 {
		t.Fatalf("with retention_alerts 90d a 100-day-old resolved alert is still there")
	}
}
