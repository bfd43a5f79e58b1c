package kafka_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/kafka"
	"github.com/riskwatch/riskwatch/internal/source"
	"github.com/riskwatch/riskwatch/internal/store"
)

// TestRunAndWorkerMetricNames: riskwatch run and riskwatch worker expose
// the same names for the same things — every engine metric in both — and
// differ only in what belongs to their input: the replication source's
// for run, the Kafka partitions' for a worker.
func TestRunAndWorkerMetricNames(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.Source.DSN, cfg.Sink.DSN = "postgres://u@127.0.0.1:1/src", "postgres://u@127.0.0.1:1/sink"
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// Nothing below connects: pools and clients connect when used.
	db, err := store.Open(ctx, cfg.Sink.DSN, cfg.Sink.Schema, cfg.Location)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	names := func(reg *prometheus.Registry) []string {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, mf := range mfs {
			out = append(out, mf.GetName())
		}
		return out
	}
	runReg := prometheus.NewRegistry()
	src, err := source.FromConfig(cfg, log, runReg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.NewNode(engine.NodeOptions{Config: cfg, DB: db, Source: src, Logger: log, Registry: runReg}); err != nil {
		t.Fatal(err)
	}
	workerReg := prometheus.NewRegistry()
	w, err := kafka.NewWorker(kafka.WorkerOptions{Config: cfg, DB: db, Logger: log, Registry: workerReg, Member: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	// A worker failing the same way at the same offsets is stuck in its
	// status (readiness) as a single node is, not only in the gauge.
	at := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	for range cfg.Pipeline.StuckAfter {
		w.Stall().Failed(ctx, at, "[t/0@7]", errors.New("sink refused the batch"))
	}
	if st := w.Status().Stuck; st == nil || st.Position != "[t/0@7]" {
		t.Errorf("worker status after %d identical failures: stuck = %+v", cfg.Pipeline.StuckAfter, st)
	}
	engineReg := prometheus.NewRegistry()
	engine.NewMetrics(engineReg, &engine.StatusBoard{})

	run, worker, core := names(runReg), names(workerReg), names(engineReg)
	if len(core) < 10 {
		t.Fatalf("engine metrics: %v", core)
	}
	for _, n := range core {
		if !slices.Contains(run, n) || !slices.Contains(worker, n) {
			t.Errorf("engine metric %s: in run %v, in worker %v", n, slices.Contains(run, n), slices.Contains(worker, n))
		}
	}
	var runOnly, workerOnly []string
	for _, n := range run {
		if !slices.Contains(worker, n) {
			runOnly = append(runOnly, n)
		}
	}
	for _, n := range worker {
		if !slices.Contains(run, n) {
			workerOnly = append(workerOnly, n)
		}
	}
	wantRun := []string{"riskwatch_drain_seconds", "riskwatch_heartbeat_errors_total", "riskwatch_heartbeats_total", "riskwatch_replication_lag_bytes"}
	wantWorker := []string{"riskwatch_worker_duplicates_total", "riskwatch_worker_platform_waits_total"}
	if !slices.Equal(runOnly, wantRun) || !slices.Equal(workerOnly, wantWorker) {
		t.Errorf("only in run: %v, want %v (the replication source's)\nonly in worker: %v, want %v (the partitions')", runOnly, wantRun, workerOnly, wantWorker)
	}
}
