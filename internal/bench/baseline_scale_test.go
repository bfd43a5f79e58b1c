package bench

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/pgserver"
	"github.com/riskwatch/riskwatch/internal/sim"
)

// TestBaselineScale times RunBaseline on the simulator's traffic (seed 42,
// 100,000 merchants, the default incidents, 8 days of history up to 15:00
// on 25 November 2026, Seoul), first with only the source schema's indexes,
// then after PrepareBaseline, and checks each minute's firing merchants
// against the engine's rule code on the same rows. It runs only with
// RISKWATCH_BENCH_BASELINE_PPD=N payments a day (3000000 is full scale);
// RISKWATCH_BENCH_BASELINE_EXPLAIN=1 also logs both statements' plans.
func TestBaselineScale(t *testing.T) {
	v := os.Getenv("RISKWATCH_BENCH_BASELINE_PPD")
	if v == "" {
		t.Skip("set RISKWATCH_BENCH_BASELINE_PPD to time the baseline on simulated traffic")
	}
	ppd, err := strconv.Atoi(v)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	loc := seoul(t)
	now := time.Date(2026, 11, 25, 14, 30, 0, 0, loc)
	plain, err := sim.NewGenerator(sim.Options{Seed: 42, PaymentsPerDay: ppd, Location: loc})
	if err != nil {
		t.Fatal(err)
	}
	g, err := sim.NewGenerator(sim.Options{Seed: 42, PaymentsPerDay: ppd, Location: loc, Scenarios: plain.DefaultScenarios(now)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(cluster.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, sim.Schema); err != nil {
		t.Fatal(err)
	}
	from, until := sim.HistoryStart(now, sim.DefaultHistoryDays, loc), now.Add(30*time.Minute)
	start := time.Now()
	np, nc, err := sim.LoadHistory(ctx, pool, g, from, until, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d payments, %d cancels in %s", np, nc, time.Since(start).Round(time.Second))

	pid, err := pgserver.PostmasterPID(cluster.Dir)
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultBaselineParams(loc)
	// The simulator's large merchants at any scale (design.md, demo).
	p.LargeDailyAmount = sim.LargeDailyAmount * int64(ppd) / sim.DefaultPaymentsPerDay
	p.ServerPID = pid
	// The rows LoadHistory wrote, generated again, for the engine's rule code.
	each := func(pay, cancel func(txRow)) {
		err := g.Generate(from, until, func(p sim.Payment) error {
			pay(txRow{p.MerchantID, p.ApprovedAt, p.Amount})
			return nil
		}, func(c sim.Cancel) error {
			if c.CanceledAt.Before(until) {
				cancel(txRow{c.MerchantID, c.CanceledAt, c.Amount})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	runs := func(label string) {
		for k := range 3 {
			m := now.Add(time.Duration(10+k) * time.Minute).UTC()
			run, err := RunBaseline(ctx, pool, p, m)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s, %s: cancel_rate_spike %v (%d firing), volume_drop %v (%d firing), server CPU %v",
				label, m.In(loc).Format("15:04"), run.CancelDur.Round(time.Millisecond), len(run.CancelFiring),
				run.VolumeDur.Round(time.Millisecond), len(run.VolumeFiring), run.SourceCPU)
			if c, v := engineFiring(t, each, p, m); !slices.Equal(c, run.CancelFiring) || !slices.Equal(v, run.VolumeFiring) {
				t.Errorf("at %s the SQL fires %v and %v, the engine's rule code %v and %v", m, run.CancelFiring, run.VolumeFiring, c, v)
			}
		}
	}
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) payments, payment_cancels`); err != nil {
		t.Fatal(err)
	}
	runs("schema indexes only")
	start = time.Now()
	if err := PrepareBaseline(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Logf("PrepareBaseline took %s", time.Since(start).Round(time.Second))
	runs("prepared")

	// What the fallback baseline adds in a minute where a candidate needs it.
	m := now.Add(10 * time.Minute).UTC()
	ca, va := ruleArgs(p, m)
	start = time.Now()
	var pa, pc int64
	if err := pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM payments WHERE approved_at >= @b_start AND approved_at < @h_start),
		(SELECT count(*) FROM payment_cancels WHERE canceled_at >= @b_start AND canceled_at < @h_start)`, ca).Scan(&pa, &pc); err != nil {
		t.Fatal(err)
	}
	t.Logf("platform-wide counts over B (%d approvals, %d cancels): %s", pa, pc, time.Since(start).Round(time.Millisecond))

	if os.Getenv("RISKWATCH_BENCH_BASELINE_EXPLAIN") == "" {
		return
	}
	for _, q := range []struct {
		sql  string
		args any
	}{{cancelRateSQL, ca}, {volumeDropSQL, va}} {
		rows, err := pool.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+q.sql, q.args)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		t.Logf("\n%s", strings.Join(lines, "\n"))
	}
}
