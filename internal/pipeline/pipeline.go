// Package pipeline is the single-node engine: it wires the replication
// source, the event mapping, the minute window and the sink into one apply
// loop, restarts it from the sink's checkpoint when the source or the sink
// fails, and takes the first snapshot when there is no checkpoint yet.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/progress"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/source"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Options configure an Engine.
type Options struct {
	Config   *config.Config
	Store    *store.Store
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Now is the engine's clock (time.Now when nil).
	Now func() time.Time
	// ProgressOut receives progress lines on a terminal (os.Stderr when nil).
	ProgressOut io.Writer
	// OnClose is called after minutes [first, last] closed and the sink holds
	// everything up to their end + grace and their alerts. It runs on the
	// apply loop, so it must not block.
	OnClose func(ctx context.Context, c Closed)
	// OnAlerts is called after alert changes that enqueued notifications
	// were committed (the notification senders' wake-up).
	OnAlerts func()
	// SnapshotHook runs inside the first snapshot, after the slot was created
	// and before history is aggregated (tests insert rows here to prove that
	// rows committed during the snapshot are counted exactly once).
	SnapshotHook func(ctx context.Context) error
}

// Closed is what one close of minutes did.
type Closed struct {
	First, Last window.Minute
	// Transitions are the alert changes that fired or resolved an alert,
	// in order; their Alert carries the sink's ID.
	Transitions []*alert.Change
}

// Status is the engine's state for health checks, metrics and the API.
type Status struct {
	Ready      bool
	LastClosed window.Minute
	// AppliedLSN is the position the sink holds everything up to.
	AppliedLSN source.LSN
	LagBytes   int64
	LagSeconds float64
	// Progress is the source commit time the sink holds everything up to.
	Progress time.Time
	// EventsPerSecond is the rate of events made durable over about the
	// last ten seconds.
	EventsPerSecond float64
	// Stuck is set while the pipeline fails the same way at the same
	// position again and again.
	Stuck *Stuck
}

// rateSample is the count of durable events at a time.
type rateSample struct {
	at    time.Time
	total int64
}

// Engine runs the pipeline.
type Engine struct {
	opts    Options
	cfg     *config.Config
	log     *slog.Logger
	now     func() time.Time
	src     *source.Source
	mapping *event.Mapping
	m       *metrics
	tracker *source.Tracker
	routes  []store.Route
	stall   *StallWatch

	mu      sync.Mutex
	status  Status
	events  int64
	samples []rateSample // guarded by mu; covers the last ten seconds
	ready   atomic.Bool
	ranking atomic.Pointer[Ranking]
}

// Ranking returns the riskiest merchants at the newest closed minute, or
// nil before the first minute closed.
func (e *Engine) Ranking() *Ranking { return e.ranking.Load() }

// Specs converts the configured mapping.
func Specs(tables []config.TableMapping) ([]event.Spec, error) {
	out := make([]event.Spec, 0, len(tables))
	for i, t := range tables {
		kind, err := event.ParseKind(t.Kind)
		if err != nil {
			return nil, fmt.Errorf("mapping[%d].kind: %w", i, err)
		}
		schema, table := t.SchemaTable()
		sp := event.Spec{Schema: schema, Table: table, Kind: kind, Merchant: t.Merchant, Amount: t.Amount, Time: t.Time}
		if t.Filter != nil {
			sp.FilterColumn, sp.FilterIn = t.Filter.Column, t.Filter.In
		}
		out = append(out, sp)
	}
	return out, nil
}

// NewMapping builds the event mapping from the configuration.
func NewMapping(cfg *config.Config) (*event.Mapping, error) {
	specs, err := Specs(cfg.Mapping)
	if err != nil {
		return nil, err
	}
	return event.NewMapping(specs, event.Limits{MaxFuture: cfg.MaxFuture.D(), Retention: cfg.Retention.D(), MaxAmount: cfg.MaxAmount})
}

// DashboardURL links to a merchant's page on the dashboard.
func DashboardURL(cfg *config.Config, merchant int64) string {
	return fmt.Sprintf("%s/merchants/%d", dashboardBase(cfg), merchant)
}

// dashboardBase is the dashboard's address without a trailing slash.
func dashboardBase(cfg *config.Config) string {
	base := cfg.HTTP.ExternalURL
	if base == "" {
		base = "http://" + cfg.HTTP.Listen
	}
	return strings.TrimRight(base, "/")
}

func alertChange(cfg *config.Config, ch *alert.Change) store.AlertChange {
	return store.AlertChange{
		Live: ch.Alert, Snap: ch.After, Minute: ch.Minute, Fires: ch.Fires, Values: ch.Values, New: ch.New, Notify: ch.Notify,
		Severity: Severity(ch.After.Rule), Summary: Summary(ch.After.Rule, ch.After.Merchant, ch.Values, ch.Notify),
		DashboardURL: DashboardURL(cfg, ch.After.Merchant),
	}
}

// NewSource builds the replication source from the configuration.
func NewSource(cfg *config.Config, mapping *event.Mapping, log *slog.Logger, reg prometheus.Registerer) *source.Source {
	return source.New(source.Options{
		DSN: cfg.Source.DSN, Slot: cfg.Source.Slot, Publication: cfg.Source.Publication, Mapping: mapping,
		StatusInterval: cfg.Source.StatusInterval.D(), HeartbeatInterval: cfg.Source.HeartbeatInterval.D(), Grace: cfg.Grace.D(),
		Minute: cfg.Source.MinuteDelivery(),
		Logger: log, Metrics: source.NewMetrics(reg),
	})
}

// New builds an engine.
func New(opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	mapping, err := NewMapping(opts.Config)
	if err != nil {
		return nil, err
	}
	e := &Engine{opts: opts, cfg: opts.Config, log: opts.Logger, now: opts.Now, mapping: mapping, tracker: &source.Tracker{}}
	if _, err := NewRuleParams(opts.Config); err != nil {
		return nil, err
	}
	e.src = NewSource(opts.Config, mapping, opts.Logger, opts.Registry)
	e.m = newMetrics(opts.Registry, e)
	e.routes = Routes(opts.Config)
	e.stall = NewStallWatch(opts.Config, "run:"+opts.Config.Source.Slot, opts.Store, e.routes, opts.OnAlerts, opts.Logger, opts.Registry)
	return e, nil
}

// Routes are the configured receivers with the rules each takes.
func Routes(cfg *config.Config) []store.Route {
	var out []store.Route
	for _, r := range cfg.Notify.Receivers {
		out = append(out, store.Route{Receiver: r.Name, Rules: r.Rules})
	}
	return out
}

// Status returns the current state.
func (e *Engine) Status() Status {
	e.mu.Lock()
	st := e.status
	e.mu.Unlock()
	pos := e.tracker.Position()
	st.Stuck = e.stall.Current()
	// Until the server's first message the lag is unknown, not zero: an
	// engine restarted behind a backlog must not look live for the moment
	// before it hears how far behind it is.
	st.Ready = e.ready.Load() && pos.ServerWALEnd != 0 && st.Stuck == nil
	if pos.ServerWALEnd > st.AppliedLSN {
		st.LagBytes = int64(pos.ServerWALEnd - st.AppliedLSN)
	}
	switch {
	case pos.ServerWALEnd == 0 || st.Progress.IsZero():
	case e.cfg.Source.MinuteDelivery():
		// Between drains the server is not asked; what an operator needs
		// is how old the newest data is, which runs up to a minute.
		st.LagSeconds = max(0, e.now().Sub(st.Progress).Seconds())
	default:
		// The server's clock now, not at its last message: while nothing
		// arrives or nothing can be applied (the sink is down, a session
		// keeps failing) the lag keeps growing instead of freezing.
		serverNow := pos.ServerTime.Add(max(0, e.now().Sub(pos.HeardAt)))
		st.LagSeconds = max(0, serverNow.Sub(st.Progress).Seconds())
	}
	return st
}

// position is where the pipeline stands, for telling a stuck pipeline.
func (e *Engine) position() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status.AppliedLSN.String()
}

func (e *Engine) setDurable(lsn source.LSN, lastClosed window.Minute, progress time.Time, events int) {
	now := e.now()
	e.mu.Lock()
	e.status.AppliedLSN, e.status.LastClosed, e.status.Progress = lsn, lastClosed, progress
	e.events += int64(events)
	e.samples = append(e.samples, rateSample{now, e.events})
	for len(e.samples) > 2 && now.Sub(e.samples[1].at) >= 10*time.Second {
		e.samples = e.samples[1:]
	}
	if first := e.samples[0]; len(e.samples) > 1 && now.Sub(first.at) > 0 {
		e.status.EventsPerSecond = float64(e.events-first.total) / now.Sub(first.at).Seconds()
	}
	e.mu.Unlock()
	e.m.lastClosed.Set(float64(lastClosed.Start().Unix()))
}

// Run runs the pipeline until ctx is done. Failures of the source or the
// sink restart it from the sink's checkpoint after a backoff; what was
// received but not yet durable is simply received again. Only permanent
// errors (a mapping that does not match the tables) end it.
func (e *Engine) Run(ctx context.Context) error {
	return Restarting(ctx, e.cfg, e.now, func(ctx context.Context) error {
		err := e.session(ctx)
		e.ready.Store(false)
		return err
	}, func(err error, backoff time.Duration) {
		e.m.restarts.Inc()
		e.log.Warn("pipeline stopped; restarting from the checkpoint", "err", err, "backoff", backoff)
		e.stall.Failed(ctx, e.now(), e.position(), err)
	})
}

// Restarting runs session until ctx is done, and again after each failure
// with a backoff from source.reconnect_min doubling up to reconnect_max
// (back to the minimum after a session that ran a minute); onFail hears
// each failure. Only a permanent error (source.IsPermanent) ends it.
func Restarting(ctx context.Context, cfg *config.Config, now func() time.Time, session func(context.Context) error, onFail func(err error, backoff time.Duration)) error {
	backoff := cfg.Source.ReconnectMin.D()
	for {
		started := now()
		err := session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if source.IsPermanent(err) {
			return err
		}
		if now().Sub(started) > time.Minute {
			backoff = cfg.Source.ReconnectMin.D()
		}
		onFail(err, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, cfg.Source.ReconnectMax.D())
	}
}

func (e *Engine) session(ctx context.Context) error {
	if err := e.src.Prepare(ctx); err != nil {
		return fmt.Errorf("preparing source: %w", err)
	}
	cp, err := e.checkpoint(ctx)
	if err != nil {
		return err
	}
	if cp.BusinessTimezone != e.cfg.Location.String() {
		e.log.Warn("business time zone changed; rebuilding hourly and daily rollups", "from", cp.BusinessTimezone, "to", e.cfg.Location.String())
		if err := e.opts.Store.RebuildRollups(ctx, e.cfg.Source.Slot); err != nil {
			return err
		}
	}
	e.setDurable(source.LSN(cp.LSN), cp.LastClosed, cp.Progress, 0)

	open, err := e.opts.Store.OpenAlerts(ctx)
	if err != nil {
		return err
	}
	ev, err := NewEvaluator(ctx, e.opts.Store, e.cfg, cp.LastClosed, true, open)
	if err != nil {
		return fmt.Errorf("restoring rules state: %w", err)
	}
	ev.Ranked = e.ranking.Store
	txns := make(chan *source.Txn, e.cfg.Pipeline.QueueSize)
	a := &applier{
		e: e, in: txns, w: window.New(e.cfg.Grace.D(), cp.LastClosed),
		applied: source.LSN(cp.LSN), progressUS: cp.Progress.UnixMicro(), lastFlush: e.now(),
		ev: ev, evaluated: cp.LastClosed,
	}
	a.durable.Store(uint64(cp.LSN))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return e.src.Deliver(gctx, source.StreamOptions{
			Start: source.LSN(cp.LSN), Flushed: func() source.LSN { return source.LSN(a.durable.Load()) },
			Tracker: e.tracker, Out: txns, OnStreaming: func() { e.ready.Store(true) },
		})
	})
	g.Go(func() error {
		return e.src.Heartbeat(gctx, func(d time.Duration) bool { return e.tracker.Quiet(e.now(), d) })
	})
	g.Go(func() error { return a.run(gctx) })
	g.Go(func() error { return e.catchUpProgress(gctx, a) })
	g.Go(func() error { return e.prune(gctx) })
	return g.Wait()
}

// Prepare readies the source (publication) and returns the sink's
// checkpoint, taking the first snapshot when there is none; riskwatch
// capture starts this way and then streams to Kafka instead.
func (e *Engine) Prepare(ctx context.Context) (store.Checkpoint, error) {
	if err := e.src.Prepare(ctx); err != nil {
		return store.Checkpoint{}, fmt.Errorf("preparing source: %w", err)
	}
	return e.checkpoint(ctx)
}

// Source is the engine's replication source.
func (e *Engine) Source() *source.Source { return e.src }

// checkpoint returns the sink's checkpoint, taking the first snapshot when
// there is none or when the slot it belongs to is gone.
func (e *Engine) checkpoint(ctx context.Context) (store.Checkpoint, error) {
	slotName := e.cfg.Source.Slot
	cp, err := e.opts.Store.Checkpoint(ctx, slotName)
	if err != nil && !errors.Is(err, store.ErrNoCheckpoint) {
		return cp, err
	}
	haveCP := err == nil
	slot, err := e.src.Slot(ctx)
	if err != nil {
		return cp, err
	}
	switch {
	case haveCP && slot != nil:
		return cp, nil
	case haveCP:
		e.log.Warn("replication slot is gone; the changes since the checkpoint are not in any stream, so the sink is rebuilt from a new snapshot",
			"slot", slotName, "checkpoint_lsn", source.LSN(cp.LSN).String())
	case slot != nil:
		// A slot without a checkpoint is a snapshot that never finished:
		// its start point was never reached by the sink.
		e.log.Warn("replication slot has no checkpoint in the sink (an earlier first start did not finish); recreating it", "slot", slotName)
		if err := e.src.DropSlot(ctx); err != nil {
			return cp, err
		}
	}
	if err := e.bootstrap(ctx); err != nil {
		return cp, fmt.Errorf("first snapshot: %w", err)
	}
	// The snapshot's rollups were summed in maps of a million entries that
	// are garbage now; without this the process would keep their pages
	// (measured at full scale: 259 MiB resident during the peak that
	// followed, 168 MiB with this).
	debug.FreeOSMemory()
	return e.opts.Store.Checkpoint(ctx, slotName)
}

func (e *Engine) bootstrap(ctx context.Context) error {
	started := e.now()
	return e.src.CreateSlotWithSnapshot(ctx, func(ctx context.Context, snap *source.Snapshot) error {
		if e.opts.SnapshotHook != nil {
			if err := e.opts.SnapshotHook(ctx); err != nil {
				return err
			}
		}
		// Minutes already over (end + grace) at the snapshot are closed.
		lastClosed := window.New(e.cfg.Grace.D(), 0).ClosableThrough(snap.Time.UnixMicro())
		cp := store.Checkpoint{Slot: e.cfg.Source.Slot, LSN: uint64(snap.LSN), LastClosed: lastClosed, Progress: snap.Time}
		return e.opts.Store.Bootstrap(ctx, cp, func(ctx context.Context, l *store.Loader) error {
			chunks := snap.Chunks(e.cfg.Location)
			rep := progress.New("first snapshot", "chunks", int64(len(chunks)), progress.Options{Out: e.opts.ProgressOut, Logger: e.log})
			// Two chunks at a time, each on its own connection to the
			// snapshot, into one stream to the sink.
			snaps := []*source.Snapshot{snap}
			if len(chunks) > 1 {
				fork, closeFork, err := snap.Fork(ctx)
				if err != nil {
					return err
				}
				defer closeFork()
				snaps = append(snaps, fork)
			}
			var minutes int64
			for i := 0; i < len(chunks); i += len(snaps) {
				group := chunks[i:min(i+len(snaps), len(chunks))]
				n, err := l.CopyMinutes(ctx, func(w io.Writer) error {
					_, err := source.CopyChunks(ctx, snaps, group, w, func(source.Chunk) { rep.Add(1) })
					return err
				})
				if err != nil {
					return err
				}
				minutes += n
			}
			rep.Done()
			// Rows the aggregation left out go through the stream's own
			// mapping, so both paths store the same aggregates and dead
			// letters.
			var dead int64
			note := "found by the first snapshot, whose time " + snap.Time.Format(time.RFC3339Nano) + " stands in for the commit time: "
			err := snap.Leftovers(ctx, l.Overflowed(), func(out *event.Output) error {
				for i := range out.DeadLetters {
					out.DeadLetters[i].Detail = note + out.DeadLetters[i].Detail
				}
				n, err := l.Leftovers(ctx, out)
				dead += n
				return err
			})
			if err != nil {
				return err
			}
			e.log.Info("first snapshot loaded", "merchant_minutes", minutes, "dead_letters", dead,
				"snapshot_time", snap.Time, "consistent_point", snap.LSN.String(), "elapsed", e.now().Sub(started).Round(time.Millisecond))
			return nil
		}, func(step string, took time.Duration) {
			e.log.Info("first snapshot: "+step, "took", took.Round(time.Millisecond).String())
		})
	})
}

// prune deletes minute aggregates that have left the retention, once at the
// start of a session and then hourly. It never deletes what the rules still
// read (7 days and an hour back), whatever the retention, and keeps a day
// of margin for minutes that late events could still reach.
func (e *Engine) prune(ctx context.Context) error {
	keep := max(e.cfg.Retention.D(), (rules.BaselineMinutes+rules.HourMinutes)*time.Minute) + 24*time.Hour
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		st := e.Status()
		if !st.Progress.IsZero() {
			n, err := e.opts.Store.PruneMinutes(ctx, st.Progress.Add(-keep))
			if err != nil && ctx.Err() == nil {
				// Pruning can wait an hour; it is never worth a restart.
				e.log.Warn("pruning old minutes failed", "err", err)
			} else if n > 0 {
				e.log.Info("pruned minutes older than the retention", "rows", n)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// catchUpProgress shows progress while the sink trails the server by more
// than a few megabytes of WAL for a few seconds in a row (after downtime, or
// a burst); the hysteresis keeps the sink's own writes, which add WAL when
// it shares the source server, from starting a report every second.
func (e *Engine) catchUpProgress(ctx context.Context, a *applier) error {
	const threshold, after = 8 << 20, 3
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var rep *progress.Reporter
	var start source.LSN
	behindFor := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		pos := e.tracker.Position()
		done := source.LSN(a.durable.Load())
		end := max(pos.ServerWALEnd, done)
		if end-done > threshold {
			behindFor++
		} else {
			behindFor = 0
		}
		switch {
		case behindFor >= after && rep == nil:
			start = done
			rep = progress.New("catching up", "bytes of WAL", int64(end-start), progress.Options{Out: e.opts.ProgressOut, Logger: e.log})
		case behindFor > 0 && rep != nil:
			rep.SetTotal(int64(end - start))
			rep.Set(int64(done - start))
		case behindFor == 0 && rep != nil:
			rep.SetTotal(int64(done - start))
			rep.Set(int64(done - start))
			rep.Done()
			rep = nil
			e.log.Info("caught up", "lsn", done.String())
		}
	}
}
