package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
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

func mustPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
