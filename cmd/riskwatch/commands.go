package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/api"
	"github.com/riskwatch/riskwatch/internal/binlog"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/lease"
	"github.com/riskwatch/riskwatch/internal/merchantnames"
	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/source"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
	"github.com/riskwatch/riskwatch/web"
)

// setup parses flags, loads the config and builds the logger.
func setup(fs flags, args []string, stderr io.Writer, getenv func(string) string) (*config.Config, *slog.Logger, error) {
	if err := fs.Parse(args); err != nil {
		return nil, nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, nil, usageError{fmt.Sprintf("%s: unexpected arguments %q", fs.Name(), fs.Args())}
	}
	cfg, err := config.Load(*fs.config, getenv)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return nil, nil, fmt.Errorf("config: log.level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(stderr, hopts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(stderr, hopts)
	}
	return cfg, slog.New(h), nil
}

func openStore(ctx context.Context, cfg *config.Config) (*store.DB, error) {
	return store.Open(ctx, cfg.Sink.DSN, cfg.Sink.Schema, cfg.Location)
}

// withStore runs fn with the sink open.
func withStore(ctx context.Context, cfg *config.Config, fn func(*store.DB) error) error {
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	cfg, log, err := setup(newFlags("run", stderr), args, stderr, getenv)
	if err != nil {
		return err
	}
	log.Info("starting riskwatch", "version", version,
		"source", config.RedactDSN(cfg.Source.DSN), "sink", config.RedactDSN(cfg.Sink.DSN),
		"slot", cfg.Source.Slot, "business_timezone", cfg.BusinessTimezone)
	st, err := migratedStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	reg := newRegistry()
	ls := newLease(cfg, st, log, reg)
	// Every write of the pipeline, the senders and the merchant names goes
	// through the lease's fence; the API's reads and operators' acks do not.
	wst := st.Fenced(ls)
	senders, err := newSenders(cfg, wst, log, reg, ls.Current)
	if err != nil {
		return err
	}
	var srv *api.Server
	src, err := newSource(cfg, log, reg)
	if err != nil {
		return err
	}
	eng, err := engine.NewNode(engine.NodeOptions{Config: cfg, DB: wst, Source: src, Logger: log, Registry: reg, ProgressOut: stderr,
		OnAlerts: func() {
			for _, s := range senders {
				s.Wake()
			}
		},
		OnClose: func(ctx context.Context, c engine.ClosedMinutes) { srv.Closed(ctx, c) },
	})
	if err != nil {
		return err
	}
	srv, err = api.New(api.Options{
		Listen: cfg.HTTP.Listen, Gatherer: reg, Logger: log, Config: cfg, DB: st, Engine: eng, Lease: ls,
		Assets: web.Dist(), Version: version,
		Ready: func() (bool, any) {
			s := eng.Status()
			return readiness(s, map[string]any{"applied_lsn": s.Position, "lag_bytes": s.LagBytes, "role": ls.Role()})
		},
	})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return ls.Run(gctx, func(ctx context.Context) error {
			return runActive(ctx, cfg, wst, src, eng, senders, log)
		}, eng.Follow)
	})
	g.Go(func() error { return srv.Run(gctx, nil) })
	err = g.Wait()
	log.Info("riskwatch stopped")
	return err
}

// runActive is what the active one of several run processes does while it
// holds the lease: read the source, write the sink, send notifications.
func runActive(ctx context.Context, cfg *config.Config, st *store.DB, src engine.Source, eng *engine.Node, senders []*notify.Sender, log *slog.Logger) error {
	// The previous active process's walsender may outlive it (a network
	// loss) until the server's wal_sender_timeout; the lease is this
	// process's now, so that session is a leftover.
	if t, ok := src.(interface {
		TakeSlot(ctx context.Context) (int32, error)
	}); ok {
		pid, err := t.TakeSlot(ctx)
		if err != nil {
			log.Warn("could not end the session holding the replication slot; the pipeline retries until it is free", "err", err)
		} else if pid != 0 {
			log.Info("ended the previous active process's walsender", "pid", pid, "slot", cfg.Source.Slot)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return runMerchantNames(gctx, cfg, st, log) })
	for _, s := range senders {
		g.Go(func() error { return s.Run(gctx) })
	}
	g.Go(func() error {
		err := eng.Run(gctx)
		if err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
		return nil
	})
	return g.Wait()
}

// newLease is the lease that makes one of several run processes on the
// sink the active one.
func newLease(cfg *config.Config, st *store.DB, log *slog.Logger, reg prometheus.Registerer) *lease.Lease {
	holder := cfg.Standby.ID
	if holder == "" {
		holder = lease.DefaultHolder()
	}
	return lease.New(lease.Options{DB: st, Name: cfg.Source.Slot, Holder: holder, TTL: cfg.Standby.Lease.D(), Renew: cfg.Standby.Renew.D(),
		Logger: log, Registry: reg})
}

// readiness answers /readyz from an engine's status: detail and what every
// engine reports.
func readiness(s engine.Status, detail map[string]any) (bool, any) {
	detail["last_closed_minute"] = s.LastClosed.String()
	detail["lag_seconds"] = s.LagSeconds
	if s.Stuck != nil {
		detail["stuck"] = s.Stuck.Detail()
	}
	return s.Ready, detail
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("migrate", stderr)
	readerRole := fs.String("reader-role", "", "also create (if missing) this role with SELECT on the sink schema's tables, present and future, and nothing else (for Grafana)")
	cfg, _, err := setup(fs, args, stderr, getenv)
	if err != nil {
		return err
	}
	return withStore(ctx, cfg, func(st *store.DB) error {
		applied, err := st.Migrate(ctx)
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			fmt.Fprintf(stdout, "sink schema %s is up to date\n", cfg.Sink.Schema)
		} else {
			fmt.Fprintf(stdout, "applied to sink schema %s: %s\n", cfg.Sink.Schema, strings.Join(applied, ", "))
		}
		if *readerRole == "" {
			return nil
		}
		created, err := st.EnsureReaderRole(ctx, *readerRole)
		if err != nil {
			return err
		}
		verb := "exists"
		if created {
			verb = "created"
		}
		fmt.Fprintf(stdout, "reader role %s %s: SELECT on every table of sink schema %s, present and future\n", *readerRole, verb, cfg.Sink.Schema)
		return nil
	})
}

func cmdSlotStatus(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg, log, err := setup(newFlags("slot status", stderr), args, stderr, getenv)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	return withStore(ctx, cfg, func(st *store.DB) error {
		cp, cpErr := aggregates.New(st).Checkpoint(ctx, cfg.Source.Slot)
		if cfg.Source.IsMySQL() {
			if err := binlogStatus(ctx, cfg, log, tw, cp.Position); err != nil {
				return err
			}
		} else if err := slotStatus(ctx, cfg, log, tw); err != nil {
			return err
		}
		switch {
		case errors.Is(cpErr, aggregates.ErrNoCheckpoint):
			fmt.Fprintf(tw, "sink_checkpoint\tnone\n")
		case cpErr != nil:
			fmt.Fprintf(tw, "sink_checkpoint\tunreadable: %v\n", cpErr)
		default:
			name := "sink_checkpoint_lsn"
			if cfg.Source.IsMySQL() {
				name = "sink_checkpoint_position"
			}
			fmt.Fprintf(tw, "%s\t%s\nlast_closed_minute\t%s\nsource_progress\t%s\nbootstrapped_at\t%s\ncheckpoint_updated_at\t%s\n",
				name, cp.Position, cp.LastClosed, cp.Progress.UTC().Format(time.RFC3339Nano), cp.BootstrappedAt.UTC().Format(time.RFC3339), cp.UpdatedAt.UTC().Format(time.RFC3339Nano))
		}
		return nil
	})
}

// slotStatus shows a PostgreSQL source's replication slot.
func slotStatus(ctx context.Context, cfg *config.Config, log *slog.Logger, tw io.Writer) error {
	src, err := source.FromConfig(cfg, log, nil)
	if err != nil {
		return err
	}
	si, err := src.Slot(ctx)
	if err != nil {
		return err
	}
	if si == nil {
		fmt.Fprintf(tw, "slot\t%s\nexists\tno (the next run creates it with a first snapshot)\n", cfg.Source.Slot)
		return nil
	}
	pid := "-"
	if si.ActivePID != nil {
		pid = fmt.Sprint(*si.ActivePID)
	}
	fmt.Fprintf(tw, "slot\t%s\nplugin\t%s\ndatabase\t%s\nactive\t%v (pid %s)\nrestart_lsn\t%s\nconfirmed_flush_lsn\t%s\ncurrent_wal_lsn\t%s\nretained_wal\t%s\nwal_status\t%s\n",
		si.Name, si.Plugin, si.Database, si.Active, pid, si.RestartLSN, si.ConfirmedFlushLSN, si.CurrentWALLSN, humanBytes(si.RetainedBytes), si.WALStatus)
	return nil
}

// binlogStatus shows a MySQL source's binlog against the checkpoint.
func binlogStatus(ctx context.Context, cfg *config.Config, log *slog.Logger, tw io.Writer, checkpoint string) error {
	src, err := binlog.FromConfig(cfg, log, nil)
	if err != nil {
		return err
	}
	bs, err := src.Status(ctx, checkpoint)
	if err != nil {
		return err
	}
	fmt.Fprintf(tw, "slot\t%s\nsource\t%s (binlog, replica server_id %d)\nserver_position\t%s\noldest_binlog\t%s\n",
		cfg.Source.Slot, bs.Flavor, bs.ServerID, bs.Current, bs.Oldest)
	switch {
	case checkpoint == "":
		fmt.Fprintf(tw, "behind\t- (no checkpoint: the next run takes a first snapshot)\n")
	case bs.Held:
		fmt.Fprintf(tw, "behind\t%s\nbinlog_held\tyes\n", humanBytes(bs.Behind))
	default:
		fmt.Fprintf(tw, "behind\tunknown\nbinlog_held\tno: the server purged the checkpoint's binlog; run riskwatch slot drop to rebuild from a new snapshot\n")
	}
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func cmdSlotDrop(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg, log, err := setup(newFlags("slot drop", stderr), args, stderr, getenv)
	if err != nil {
		return err
	}
	if cfg.Source.IsMySQL() {
		// The server keeps nothing for riskwatch: forgetting the position
		// is what makes the next run take a new snapshot.
		return withStore(ctx, cfg, func(st *store.DB) error {
			had, err := aggregates.New(st).ForgetCheckpoint(ctx, cfg.Source.Slot)
			if err != nil {
				return err
			}
			if !had {
				fmt.Fprintf(stdout, "no checkpoint for %s; the next run takes a first snapshot\n", cfg.Source.Slot)
				return nil
			}
			fmt.Fprintf(stdout, "forgot the binlog position of %s; the next run rebuilds the sink from a new snapshot\n", cfg.Source.Slot)
			return nil
		})
	}
	src, err := source.FromConfig(cfg, log, nil)
	if err != nil {
		return err
	}
	if err := src.DropSlot(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dropped replication slot %s; the next run rebuilds the sink from a new snapshot\n", cfg.Source.Slot)
	return nil
}

// newSource is the engine's source: the DSN's scheme decides.
func newSource(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (engine.Source, error) {
	if cfg.Source.IsMySQL() {
		return binlog.FromConfig(cfg, log, reg)
	}
	return source.FromConfig(cfg, log, reg)
}

func cmdExportMinutes(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("export minutes", stderr)
	fromS := fs.String("from", "", "start, inclusive: RFC 3339 time, or a date (YYYY-MM-DD) in the business time zone")
	toS := fs.String("to", "", "end, exclusive: same forms as --from")
	cfg, _, err := setup(fs, args, stderr, getenv)
	if err != nil {
		return err
	}
	from, to, err := timeRange(*fromS, *toS, cfg.Location)
	if err != nil {
		return err
	}
	return withStore(ctx, cfg, func(st *store.DB) error {
		_, err := aggregates.New(st).ExportMinutes(ctx, from, to, stdout)
		return err
	})
}

// parseTime reads an RFC 3339 time, or a date meaning its midnight in loc.
func parseTime(s string, loc *time.Location) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("required")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-25T17:01:00+09:00) nor a date (2026-11-25)", s)
}

// runMerchantNames copies merchant names from the source until ctx is done;
// it returns at once when merchant_names is off.
func runMerchantNames(ctx context.Context, cfg *config.Config, st *store.DB, log *slog.Logger) error {
	mn := cfg.MerchantNames
	if mn.Table == "" {
		return nil
	}
	// On a MySQL source the table's "public." (or no qualifier) means the
	// DSN's database; merchantnames resolves it.
	schema, table := mn.SchemaTable()
	return merchantnames.New(merchantnames.Options{SourceDSN: cfg.Source.DSN, Schema: schema, Table: table, ID: mn.ID, Name: mn.Name,
		Refresh: mn.Refresh.D(), FullRefresh: mn.FullRefresh.D(), Names: dashboard.New(st), Logger: log}).Run(ctx)
}
