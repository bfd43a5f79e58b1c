package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/sim"
)

// TestSimCommands: history loads a small simulation and its ground truth,
// a second run reuses it, and live continues it and reports its rate.
func TestSimCommands(t *testing.T) {
	t.Parallel()
	dsn := cluster.NewDB(t) // empty: sim creates the schema itself
	ctx := context.Background()
	truth := filepath.Join(t.TempDir(), "truth.json")
	out, errOut, err := runCLI(ctx, "sim", "history", "--dsn", dsn, "--days", "2", "--payments-per-day", "20000", "--merchants", "2000", "--truth", truth)
	if err != nil {
		t.Fatalf("sim history: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "loaded ") || !strings.Contains(out, "ground truth written") {
		t.Fatalf("sim history said:\n%s", out)
	}
	var truths []map[string]any
	b, err := os.ReadFile(truth)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &truths); err != nil || len(truths) == 0 {
		t.Fatalf("ground truth: %v\n%s", err, b)
	}
	kinds := map[string]bool{}
	for _, tr := range truths {
		kinds[tr["scenario"].(string)] = true
	}
	for _, k := range []string{"bust_out", "cancel_surge", "silent", "volume_drop", "tiny", "promotion", "steady_high_cancel"} {
		if !kinds[k] {
			t.Errorf("ground truth lacks scenario %s", k)
		}
	}
	c := &cliEnv{t: t, dsn: dsn}
	c.pool = mustPool(t, dsn)
	var payments, merchants int64
	if err := c.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM merchants)`).Scan(&payments, &merchants); err != nil {
		t.Fatal(err)
	}
	// Two business days at 20,000 a day, the second one partial.
	if merchants != 2000 || payments < 20000 || payments > 40000*11/10 {
		t.Fatalf("loaded %d payments of %d merchants", payments, merchants)
	}
	out, _, err = runCLI(ctx, "sim", "history", "--dsn", dsn, "--days", "2", "--payments-per-day", "20000", "--merchants", "2000")
	if err != nil || !strings.Contains(out, "reusing") {
		t.Fatalf("second sim history: %v\n%s", err, out)
	}
	out, errOut, err = runCLI(ctx, "sim", "live", "--dsn", dsn, "--tps", "100", "--burst-tps", "-1", "--for", "3s")
	if err != nil {
		t.Fatalf("sim live: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "payments/s achieved") {
		t.Fatalf("sim live said:\n%s", out)
	}
	var after int64
	if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM payments`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	// 100 TPS for 3 s: about 300 more payments.
	if d := after - payments; d < 200 || d > 400 {
		t.Fatalf("live added %d payments in 3 s at 100 TPS", d)
	}
	if _, _, err := runCLI(ctx, "sim", "live", "--dsn", cluster.NewDB(t), "--for", "1s"); err == nil || !strings.Contains(err.Error(), "sim history") {
		t.Fatalf("live without history: %v", err)
	}
}

// TestSimHistoryScoredDay: --profile realistic --scored-day --now put the
// scored day's mix on the day before --now (a midnight: the day that just
// ended), widen the history to the 7 days the rules look back, record
// profile and scored day in sim_meta, write the truth of that day, and
// live rebuilds the same generator from sim_meta.
func TestSimHistoryScoredDay(t *testing.T) {
	t.Parallel()
	dsn := cluster.NewDB(t)
	ctx := context.Background()
	for _, bad := range [][]string{
		{"--profile", "chaotic"},
		{"--scored-day", "--incidents=false"},
		{"--now", "yesterday"},
	} {
		if _, _, err := runCLI(ctx, append([]string{"sim", "history", "--dsn", dsn}, bad...)...); err == nil || !strings.Contains(err.Error(), "sim history") {
			t.Errorf("sim history %v: %v", bad, err)
		}
	}
	truth := filepath.Join(t.TempDir(), "truth.json")
	out, errOut, err := runCLI(ctx, "sim", "history", "--dsn", dsn, "--days", "2", "--payments-per-day", "20000", "--merchants", "2000",
		"--profile", "realistic", "--scored-day", "--now", "2026-11-30T00:00:00+09:00", "--truth", truth)
	if err != nil {
		t.Fatalf("sim history: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "scored day 2026-11-29 (Asia/Seoul): 40 incidents and 30 controls") || !strings.Contains(out, "ground truth written") {
		t.Fatalf("sim history said:\n%s", out)
	}
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 29, 0, 0, 0, 0, loc)
	b, err := os.ReadFile(truth)
	if err != nil {
		t.Fatal(err)
	}
	var truths []sim.Truth
	if err := json.Unmarshal(b, &truths); err != nil || !strings.Contains(string(b), `"incident": false`) {
		t.Fatalf("ground truth: %v\n%s", err, b)
	}
	incidents, controls := map[int64]bool{}, map[int64]bool{}
	for _, tr := range truths {
		if tr.DailyPayments <= 0 {
			t.Fatalf("truth without daily_payments: %+v", tr)
		}
		if tr.Incident {
			incidents[tr.Merchant] = true
		} else {
			controls[tr.Merchant] = true
		}
		for _, at := range []time.Time{tr.From, tr.IncidentFrom, tr.Start} {
			if !at.IsZero() && (at.Before(day) || !at.Before(day.AddDate(0, 0, 1))) {
				t.Errorf("%s/%s at %v: outside the scored day", tr.Scenario, tr.Rule, at)
			}
		}
	}
	if len(incidents) != 40 || len(controls) != 30 {
		t.Errorf("truth of %d incident and %d control merchants, want 40 and 30", len(incidents), len(controls))
	}
	pool := mustPool(t, dsn)
	var profile string
	var scored, histFrom, minAt, maxAt time.Time
	err = pool.QueryRow(ctx, `SELECT profile, scored_day, history_from, (SELECT min(approved_at) FROM payments), (SELECT max(approved_at) FROM payments) FROM sim_meta`).
		Scan(&profile, &scored, &histFrom, &minAt, &maxAt)
	if err != nil {
		t.Fatal(err)
	}
	if profile != "realistic" || !scored.Equal(day) || !histFrom.Equal(day.AddDate(0, 0, -7)) || minAt.Before(histFrom) || !maxAt.Before(day.AddDate(0, 0, 1)) {
		t.Errorf("sim_meta: profile %q, scored day %v, history from %v; payments %v … %v", profile, scored, histFrom, minAt, maxAt)
	}
	out, errOut, err = runCLI(ctx, "sim", "live", "--dsn", dsn, "--tps", "50", "--burst-tps", "-1", "--for", "1s")
	if err != nil || !strings.Contains(out, "payments/s achieved") {
		t.Fatalf("sim live after a scored day: %v\n%s%s", err, out, errOut)
	}
}

func mustPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
