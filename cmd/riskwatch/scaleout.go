package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/api"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/kafka"
	"github.com/riskwatch/riskwatch/internal/leader"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/web"
)

// migratedStore opens the sink and brings its schema up to date.
func migratedStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (*store.DB, error) {
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if applied, err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	} else if len(applied) > 0 {
		log.Info("sink schema migrated", "applied", applied)
	}
	return st, nil
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// setupKafka is setup for capture and worker: the kafka section must be
// valid, and --http overrides http.listen.
func setupKafka(fs flags, args []string, stderr io.Writer, getenv func(string) string, listen *string) (*config.Config, *slog.Logger, error) {
	cfg, log, err := setup(fs, args, stderr, getenv)
	if err != nil {
		return nil, nil, err
	}
	if err := cfg.ValidateKafka(); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	if *listen != "" {
		cfg.HTTP.Listen = *listen
	}
	return cfg, log, nil
}

// cmdCapture runs `riskwatch capture`: the source's slot to the Kafka topic.
func cmdCapture(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("capture", stderr)
	listen := fs.String("http", "", "listen address for /metrics and /healthz (default: http.listen)")
	cfg, log, err := setupKafka(fs, args, stderr, getenv, listen)
	if err != nil {
		return err
	}
	log.Info("starting riskwatch capture", "version", version, "source", config.RedactDSN(cfg.Source.DSN), "sink", config.RedactDSN(cfg.Sink.DSN),
		"slot", cfg.Source.Slot, "brokers", cfg.Kafka.Brokers, "topic", cfg.Kafka.Topic)
	st, err := migratedStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	reg := newRegistry()
	c, err := kafka.NewCapture(kafka.CaptureOptions{Config: cfg, DB: st, Logger: log, Registry: reg, ProgressOut: stderr})
	if err != nil {
		return err
	}
	srv, err := api.New(api.Options{Listen: cfg.HTTP.Listen, Gatherer: reg, Logger: log, Version: version})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx, nil) })
	err = g.Wait()
	log.Info("riskwatch capture stopped")
	return err
}

// cmdWorker runs `riskwatch worker`: one member of the consumer group, with
// the same dashboard, API and notifications as `run`. Notifications, the
// merchant directory and pruning run in one worker at a time (a sink lock).
func cmdWorker(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("worker", stderr)
	listen := fs.String("http", "", "listen address of this worker's dashboard and API (default: http.listen)")
	host, _ := os.Hostname()
	member := fs.String("member", fmt.Sprintf("%s-%d", host, os.Getpid()), "this worker's name in the sink")
	cfg, log, err := setupKafka(fs, args, stderr, getenv, listen)
	if err != nil {
		return err
	}
	log.Info("starting riskwatch worker", "member", *member, "version", version, "sink", config.RedactDSN(cfg.Sink.DSN), "brokers", cfg.Kafka.Brokers,
		"topics", cfg.KafkaTopics(), "group", cfg.Kafka.Group)
	st, err := migratedStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	reg := newRegistry()
	senders, err := newSenders(cfg, st, log, reg, nil)
	if err != nil {
		return err
	}
	wake := func() {
		for _, s := range senders {
			s.Wake()
		}
	}
	var srv *api.Server
	wk, err := kafka.NewWorker(kafka.WorkerOptions{Config: cfg, DB: st, Logger: log, Registry: reg, Member: *member,
		OnAlerts: wake, OnClose: func(ctx context.Context, c engine.ClosedMinutes) { srv.Closed(ctx, c) }})
	if err != nil {
		return err
	}
	srv, err = api.New(api.Options{
		Listen: cfg.HTTP.Listen, Gatherer: reg, Logger: log, Config: cfg, DB: st, Engine: wk, Assets: web.Dist(), Version: version,
		Ready: func() (bool, any) { return readiness(wk.Status(), map[string]any{}) },
	})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return wk.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx, nil) })
	g.Go(func() error {
		return leader.Run(gctx, st, "leader", alertstore.OutboxChannel, log, wake, func(ctx context.Context) error {
			lg, lctx := errgroup.WithContext(ctx)
			for _, s := range senders {
				lg.Go(func() error { return s.Run(lctx) })
			}
			lg.Go(func() error { return runMerchantNames(lctx, cfg, st, log) })
			lg.Go(func() error {
				// What every partition has applied is the clock.
				return engine.Prune(lctx, st, cfg, log, func(ctx context.Context) (time.Time, error) {
					return kafka.AppliedThrough(ctx, st, cfg.KafkaTopics())
				})
			})
			return lg.Wait()
		})
	})
	err = g.Wait()
	log.Info("riskwatch worker stopped")
	return err
}
