package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
)

// PruneOnce deletes what has left its retention as of through.
//
// Minute aggregates: it never deletes what the rules still read (7 days
// and an hour back), whatever the retention, and keeps a day of margin for
// minutes that late events could still reach.
//
// The rest (docs/retention.md) is measured from the same clock, so a sink
// catching up after downtime keeps more, never less: resolved alerts with
// everything attached (never an open one, never one still owed a
// delivery), evaluations, delivered or rejected deliveries and the
// notifications left without any (never a pending one), dead letters, and
// the operators' audit rows, hourly and daily
// rollups. A retention of 0 keeps
// its rows for ever. Each step logs its own failure and the others still
// run.
func PruneOnce(ctx context.Context, db *store.DB, cfg *config.Config, log *slog.Logger, through time.Time) {
	report := func(what string, rows int64, err error) {
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("pruning "+what+" failed", "err", err)
		case rows > 0:
			log.Info("pruned "+what+" older than the retention", "rows", rows)
		}
	}
	agg, alerts := aggregates.New(db), alertstore.New(db)
	keep := max(cfg.Retention.D(), (rules.BaselineMinutes+rules.HourMinutes)*time.Minute) + 24*time.Hour
	rows, err := agg.PruneMinutes(ctx, through.Add(-keep))
	report("minutes", rows, err)

	cutoff := func(d config.Duration) (time.Time, bool) { return through.Add(-d.D()), d > 0 }
	// Rollups: validation keeps both at or above what the rules read.
	if cfg.RetentionHours > 0 || cfg.RetentionDays > 0 {
		// Far enough back to delete nothing stands in for "for ever".
		hours, days := time.Unix(0, 0).UTC(), time.Unix(0, 0).UTC()
		if before, ok := cutoff(cfg.RetentionHours); ok {
			hours = before
		}
		if before, ok := cutoff(cfg.RetentionDays); ok {
			days = before.In(cfg.Location)
		}
		rows, err := agg.PruneRollups(ctx, hours, days)
		report("hourly and daily rollups", rows, err)
	}
	// Alerts first: an alert takes its own evaluations and notifications
	// with it, which the steps after then need not look at.
	if before, ok := cutoff(cfg.RetentionAlerts); ok {
		rows, err := alerts.PruneAlerts(ctx, before)
		report("resolved alerts", rows, err)
	}
	if before, ok := cutoff(cfg.RetentionEvaluations); ok {
		rows, err := alerts.PruneEvaluations(ctx, before)
		report("alert evaluations", rows, err)
	}
	if before, ok := cutoff(cfg.RetentionDeliveries); ok {
		deliveries, notifications, err := alerts.PruneDeliveries(ctx, before)
		report("deliveries", deliveries, err)
		report("notifications", notifications, nil)
	}
	if before, ok := cutoff(cfg.RetentionDeadLetters); ok {
		rows, err := agg.PruneDeadLetters(ctx, before)
		report("dead letters", rows, err)
	}
	if before, ok := cutoff(cfg.RetentionAudit); ok {
		rows, err := alerts.PruneAudit(ctx, before)
		report("operator actions", rows, err)
	}
}
