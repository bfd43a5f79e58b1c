package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/progress"
	"github.com/riskwatch/riskwatch/internal/sim"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/window"
)

// benchWorld is the full-scale sink shared by the benchmarks of one run:
// the simulator's 100,000 merchants and 8 days at 3,000,000 payments a day,
// aggregated as the engine's snapshot does.
type benchWorld struct {
	base     string
	busiest  int64
	minutes  int64
	last     window.Minute
	setupErr error
}

var (
	benchOnce sync.Once
	bench     benchWorld
)

// benchNow is the history's end: fixed, so every run stores the same data.
var benchNow = time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)

func setupBench(b *testing.B) *benchWorld {
	benchOnce.Do(func() { bench.setupErr = bench.setup(b) })
	if bench.setupErr != nil {
		b.Fatal(bench.setupErr)
	}
	return &bench
}

func (w *benchWorld) setup(b *testing.B) error {
	ctx := context.Background()
	// Not cluster.NewDB: its cleanup would drop the database after the
	// first of the benchmark's runs, and every run shares this one.
	if err := cluster.Exec(ctx, "postgres", "CREATE DATABASE bench_series"); err != nil {
		return err
	}
	dsn := cluster.DSN("bench_series")
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, sim.Schema); err != nil {
		return err
	}
	loc := seoulLoc
	g, err := sim.NewGenerator(sim.Options{Seed: 1, Location: loc, HistoryFrom: benchNow.Add(-8 * 24 * time.Hour)})
	if err != nil {
		return err
	}
	started := time.Now()
	rep := progress.New("benchmark history", "payments", 0, progress.Options{})
	payments, cancels, err := sim.LoadHistory(ctx, pool, g, benchNow.Add(-8*24*time.Hour), benchNow, func(done, total int64) {
		rep.SetTotal(total)
		rep.Set(done)
	})
	if err != nil {
		return err
	}
	rep.Done()
	b.Logf("history: %d payments, %d cancels in %s", payments, cancels, time.Since(started).Round(time.Second))

	st, err := store.Open(ctx, dsn, "riskwatch", loc)
	if err != nil {
		return err
	}
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	w.last = window.MinuteOf(benchNow) - 1
	started = time.Now()
	agg := aggregates.New(st)
	err = agg.Bootstrap(ctx, aggregates.Checkpoint{Slot: "bench", Position: "0/1", LastClosed: w.last, Progress: benchNow}, func(ctx context.Context, l *aggregates.Loader) error {
		return nil
	}, nil)
	if err != nil {
		return err
	}
	for _, q := range []string{
		`INSERT INTO riskwatch.minute_agg SELECT merchant_id, minute, sum(a), sum(aa), sum(c), sum(ca) FROM (
			SELECT merchant_id, date_trunc('minute', approved_at) AS minute, count(*) AS a, sum(amount) AS aa, 0 AS c, 0 AS ca FROM payments GROUP BY 1, 2
			UNION ALL
			SELECT merchant_id, date_trunc('minute', canceled_at), 0, 0, count(*), sum(cancel_amount) FROM payment_cancels GROUP BY 1, 2) x
		GROUP BY 1, 2`,
		`INSERT INTO riskwatch.platform_minute SELECT minute, sum(approvals), sum(approved_amount), sum(cancels), sum(canceled_amount) FROM riskwatch.minute_agg GROUP BY 1`,
		`INSERT INTO riskwatch.merchants (id, name) SELECT id, name FROM merchants`,
		`VACUUM ANALYZE riskwatch.minute_agg`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("%.60s: %w", q, err)
		}
	}
	if err := agg.RebuildRollups(ctx, "bench"); err != nil {
		return err
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM riskwatch.minute_agg`).Scan(&w.minutes); err != nil {
		return err
	}
	if err := pool.QueryRow(ctx, `SELECT merchant_id FROM riskwatch.day_agg GROUP BY 1 ORDER BY sum(approvals) DESC LIMIT 1`).Scan(&w.busiest); err != nil {
		return err
	}
	b.Logf("sink: %d minute rows, busiest merchant %d, aggregated in %s", w.minutes, w.busiest, time.Since(started).Round(time.Second))

	cfg := config.Default()
	cfg.Location = loc
	srv, err := New(Options{Listen: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Ready: func() (bool, any) { return true, nil }, Config: cfg, DB: st,
		Engine: &fakeEngine{status: engine.Status{Ready: true, LastClosed: w.last}}, Now: func() time.Time { return benchNow }})
	if err != nil {
		return err
	}
	addr := make(chan string, 1)
	go srv.Run(ctx, addr) // lives as long as the benchmark process
	w.base = "http://" + <-addr
	return nil
}

// BenchmarkSeries7d is the dashboard's heaviest read: the busiest merchant's 7-day
// minute series (10,080 points with its rule lines, which read 8 days of
// its minutes and of the platform's), over HTTP, with 100,000 merchants and
// 8 days stored. It reports the median and 95th percentile per request.
//
//	go test ./internal/api -run '^$' -bench Series7d -benchtime 200x
func BenchmarkSeries7d(b *testing.B) {
	w := setupBench(b)
	url := fmt.Sprintf("%s/api/merchants/%d/series?step=1m&from=%s", w.base, w.busiest,
		w.last.End().Add(-7*24*time.Hour).Format(time.RFC3339))
	get := func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 || n < 100_000 {
			return fmt.Errorf("GET %s: %d, %d bytes, %v", url, resp.StatusCode, n, err)
		}
		return err
	}
	if err := get(); err != nil { // warm the connection, not the data's first read
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := get(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*95/100)].Microseconds())/1000, "p95-ms")
}
