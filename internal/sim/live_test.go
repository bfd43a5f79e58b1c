package sim

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"
)

// liveHistory loads the hour before now into db, for a live run from now:
// the tiny merchant's payment is history, its cancel falls due 1.5 s into
// the run.
func liveHistory(t *testing.T, db DB) (g *Generator, tiny int64, now, histFrom time.Time) {
	t.Helper()
	now = time.Now()
	pop := NewPopulation(testSeed, 2000)
	tiny = pop.Tiny()
	sc := []Scenario{{Kind: KindTiny, Merchant: tiny, Start: now.Add(-2 * time.Minute), Duration: 2*time.Minute + 1500*time.Millisecond}}
	g = newGen(t, Options{Seed: testSeed, Population: pop, PaymentsPerDay: 20_000, Scenarios: sc})
	histFrom = now.Add(-time.Hour)
	if _, _, err := LoadHistoryInto(context.Background(), db, g, histFrom, now, nil); err != nil {
		t.Fatal(err)
	}
	return g, tiny, now, histFrom
}

// TestLive commits at 200 TPS for 3 s against a real server after a short
// history, and checks the rate, the rows, and that a history payment's
// cancel falling due during the run is committed.
func TestLive(t *testing.T) {
	pool := newSource(t, 8)
	ctx := context.Background()
	g, tiny, now, histFrom := liveHistory(t, Postgres(pool))
	var mu sync.Mutex
	var reports []LiveStats
	const tps, run = 200.0, 3 * time.Second
	until := time.Now().Add(run)
	st, err := Live(ctx, pool, g, LiveOptions{
		TPS: tps, BurstTPS: -1, Workers: 4, From: now, HistoryFrom: histFrom,
		Until:       until,
		ReportEvery: time.Second,
		Report: func(s LiveStats) {
			mu.Lock()
			reports = append(reports, s)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("live: %+v", st)
	want := tps * run.Seconds()
	if math.Abs(float64(st.Payments)-want) > 0.2*want {
		t.Errorf("%d payments committed, want %.0f ± 20%%", st.Payments, want)
	}
	if math.Abs(st.AchievedTPS-tps) > 0.2*tps {
		t.Errorf("achieved %.1f TPS, want %.0f ± 20%%", st.AchievedTPS, tps)
	}
	if len(reports) < 3 || reports[len(reports)-1] != st {
		t.Errorf("%d reports, last %+v", len(reports), reports[len(reports)-1:])
	}
	var n, filler, scen int64
	err = pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE id % $2 >= $3), count(*) FILTER (WHERE merchant_id = $4)
		FROM payments WHERE approved_at >= $1`, now, IDsPerMinute, fillerBase, tiny).Scan(&n, &filler, &scen)
	if err != nil {
		t.Fatal(err)
	}
	if n != st.Payments || filler != st.Filler || scen != 0 {
		t.Errorf("table holds %d live payments (%d filler, %d of the tiny merchant), stats say %d (%d filler)", n, filler, scen, st.Payments, st.Filler)
	}
	var tinyCancels int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payment_cancels WHERE merchant_id = $1`, tiny).Scan(&tinyCancels); err != nil {
		t.Fatal(err)
	}
	if tinyCancels != 1 {
		t.Errorf("the tiny merchant's pending cancel: %d rows, want 1", tinyCancels)
	}
	var beyond int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE approved_at >= $1`, until).Scan(&beyond); err != nil {
		t.Fatal(err)
	}
	if beyond != 0 {
		t.Errorf("%d payments dated at or after Until", beyond)
	}
}

// TestLiveBatched: several payments per transaction.
func TestLiveBatched(t *testing.T) {
	pool := newSource(t, 4)
	g := newGen(t, Options{Seed: testSeed, Population: NewPopulation(testSeed, 2000), PaymentsPerDay: 20_000})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	st, err := Live(ctx, pool, g, LiveOptions{TPS: 500, BurstTPS: -1, Batch: 10})
	if err != nil {
		t.Fatalf("stopping by context: %v", err)
	}
	var n int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM payments`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	t.Logf("batched: %+v", st)
	if n != st.Payments || math.Abs(float64(n)-750) > 150 {
		t.Errorf("%d payments in the table, stats say %d, want about 750", n, st.Payments)
	}
}

func TestLiveRejects(t *testing.T) {
	pool := newSource(t, 2)
	g := smallGen(t)
	if _, err := Live(context.Background(), pool, g, LiveOptions{Workers: 3}); err == nil {
		t.Error("more workers than connections accepted")
	}
	if _, err := Live(context.Background(), pool, g, LiveOptions{TPS: -1}); err == nil {
		t.Error("negative TPS accepted")
	}
}

// TestLiveBursts: a burst raises the rate to BurstTPS for BurstFor.
func TestLiveBursts(t *testing.T) {
	pool := newSource(t, 8)
	g := smallGen(t)
	start := time.Now()
	st, err := Live(context.Background(), pool, g, LiveOptions{
		TPS: 100, BurstTPS: 1000, BurstEvery: time.Second, BurstFor: 500 * time.Millisecond,
		Workers: 8, Until: start.Add(2 * time.Second), Now: time.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 100/s over 2 s, plus 900/s extra during [1 s, 1.5 s): about 650.
	t.Logf("bursts: %+v", st)
	if st.Payments < 520 || st.Payments > 780 {
		t.Errorf("%d payments with one burst, want about 650", st.Payments)
	}
}
