package sim

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestLoadHistoryFullScale measures the history load at full scale. It runs
// only with RISKWATCH_SIM_FULL_DAYS=N (N days of 3,000,000 payments).
func TestLoadHistoryFullScale(t *testing.T) {
	days := os.Getenv("RISKWATCH_SIM_FULL_DAYS")
	if days == "" {
		t.Skip("set RISKWATCH_SIM_FULL_DAYS to measure a full-scale history load")
	}
	d, _ := time.ParseDuration(days + "h")
	pool := newSource(t, 4)
	g := newGen(t, Options{Seed: testSeed})
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, g.Location())
	from := now.Add(-d * 24)
	start := time.Now()
	last := start
	p, c, err := LoadHistory(context.Background(), pool, g, from, now, func(done, total int64) {
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			t.Logf("%d / %d after %s", done, total, time.Since(start).Round(time.Second))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("%d payments + %d cancels in %s: %.0f payments/s", p, c, el.Round(time.Millisecond), float64(p)/el.Seconds())
}

// TestLivePeakRate measures the one-payment-per-transaction rate the live
// writer sustains. It runs only with RISKWATCH_SIM_PEAK_TPS=N.
func TestLivePeakRate(t *testing.T) {
	v := os.Getenv("RISKWATCH_SIM_PEAK_TPS")
	if v == "" {
		t.Skip("set RISKWATCH_SIM_PEAK_TPS to measure the live writer's peak rate")
	}
	tps, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatal(err)
	}
	pool := newSource(t, 16)
	g := newGen(t, Options{Seed: testSeed})
	st, err := Live(context.Background(), pool, g, LiveOptions{TPS: tps, BurstTPS: -1, Workers: 16, Until: time.Now().Add(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("asked %v TPS: %+v", tps, st)
}

// TestLoadHistoryMySQLRate measures the history load into MariaDB. It runs
// only with RISKWATCH_SIM_MYSQL_PAYMENTS=N (one day of N payments at full
// population).
func TestLoadHistoryMySQLRate(t *testing.T) {
	v := os.Getenv("RISKWATCH_SIM_MYSQL_PAYMENTS")
	if v == "" {
		t.Skip("set RISKWATCH_SIM_MYSQL_PAYMENTS to measure a history load into MariaDB")
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatal(err)
	}
	my, _ := newMySQLSource(t, 4, time.UTC)
	g := newGen(t, Options{Seed: testSeed, PaymentsPerDay: n})
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, g.Location())
	start := time.Now()
	var first time.Duration
	p, c, err := LoadHistoryInto(context.Background(), my, g, now.AddDate(0, 0, -1), now, func(done, total int64) {
		if first == 0 {
			first = time.Since(start)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("merchants and the first batch: %s", first.Round(time.Millisecond))
	t.Logf("%d payments + %d cancels in %s: %.0f payments/s, %.0f rows/s", p, c, el.Round(time.Millisecond), float64(p)/el.Seconds(), float64(p+c)/el.Seconds())
}
