package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/bootstrap"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/progress"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/source"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Source is a transaction database a Node reads through change data
// capture. Positions are the source's own text.
type Source interface {
	bootstrap.Source
	// Prepare readies the source: its settings checked, what replication
	// needs created. A mistake in them is a permanent error naming it.
	Prepare(ctx context.Context) error
	// Deliver sends every transaction committed after start to out, in
	// commit order and each once, until ctx ends or it fails. It confirms
	// to the server only durable(), what the sink holds, never what was
	// merely received. live is called once it delivers live.
	Deliver(ctx context.Context, start string, durable func() string, out chan<- *source.Txn, live func()) error
	// Heartbeat commits a small transaction on the source while quiet says
	// the tables have been quiet that long, and just after each minute's
	// end + grace, so that minutes close on an idle source.
	Heartbeat(ctx context.Context, quiet func(time.Duration) bool) error
	// Quiet reports whether no transaction has arrived for d.
	Quiet(now time.Time, d time.Duration) bool
	// Lag is how far the server is beyond applied: bytes of its log, and
	// its clock now; ok is false until the server has been heard.
	Lag(now time.Time, applied string) (bytes int64, serverNow time.Time, ok bool)
}

// NodeOptions configure a Node.
type NodeOptions struct {
	Config   *config.Config
	DB       *store.DB
	Source   Source
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Now is the engine's clock (time.Now when nil).
	Now func() time.Time
	// ProgressOut receives progress lines on a terminal.
	ProgressOut io.Writer
	// OnClose and OnAlerts are CoreOptions'.
	OnClose  func(ctx context.Context, c ClosedMinutes)
	OnAlerts func()
	// SnapshotHook runs inside the first snapshot (tests commit rows
	// there, to prove that rows committed during it count once).
	SnapshotHook func(ctx context.Context) error
}

// Node is the engine on one machine: it reads the source's change stream
// itself, takes the first snapshot when the sink has none, and restarts
// from the sink's checkpoint when the source or the sink fails.
type Node struct {
	o      NodeOptions
	cfg    *config.Config
	log    *slog.Logger
	now    func() time.Time
	agg    *aggregates.Store
	alerts *alertstore.Store
	m      *Metrics
	status *StatusBoard
	stall  *StallWatch
	// durable is the position the sink holds everything up to: the only
	// one the source confirms to its server.
	durable atomic.Pointer[string]
}

// NewNode builds a node.
func NewNode(o NodeOptions) (*Node, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if _, err := o.Config.RuleParams(); err != nil {
		return nil, err
	}
	n := &Node{o: o, cfg: o.Config, log: o.Logger, now: o.Now, agg: aggregates.New(o.DB), alerts: alertstore.New(o.DB), status: &StatusBoard{}}
	n.m = NewMetrics(o.Registry, n.status)
	n.stall = NewStallWatch(o.Config, "run:"+o.Config.Source.Slot, n.alerts, o.OnAlerts, o.Logger, n.m, n.status)
	n.status.SetLag(n.lag)
	promauto.With(o.Registry).NewGaugeFunc(prometheus.GaugeOpts{
		Name: "riskwatch_replication_lag_bytes",
		Help: "How much of the source's log the sink does not hold yet.",
	}, func() float64 { return float64(n.Status().LagBytes) })
	n.durable.Store(new(string))
	return n, nil
}

// Status returns the current state.
func (n *Node) Status() Status { return n.status.Status() }

// Ranking returns the riskiest merchants at the newest closed minute.
func (n *Node) Ranking() *rules.Ranking { return n.status.Ranking() }

// lag fills in a status read: until the server's first message the lag is
// unknown, not zero, so an engine restarted behind a backlog does not look
// live before it hears how far behind it is.
func (n *Node) lag(st *Status) {
	bytes, serverNow, ok := n.o.Source.Lag(n.now(), st.Position)
	if !ok {
		st.Ready = false
		return
	}
	st.LagBytes = bytes
	switch {
	case st.Progress.IsZero():
	case n.cfg.Source.MinuteDelivery():
		// Between drains the server is not asked; what an operator needs
		// is how old the newest data is, which runs up to a minute.
		st.LagSeconds = max(0, n.now().Sub(st.Progress).Seconds())
	default:
		// The server's clock now, not at its last message: while nothing
		// arrives or nothing can be applied (the sink is down, a session
		// keeps failing) the lag keeps growing instead of freezing.
		st.LagSeconds = max(0, serverNow.Sub(st.Progress).Seconds())
	}
}

// Run runs the pipeline until ctx is done. Failures of the source or the
// sink restart it from the sink's checkpoint after a backoff; what was
// received but not yet durable is simply received again. Only permanent
// errors (a mapping that does not match the tables) end it.
func (n *Node) Run(ctx context.Context) error {
	return Supervise(ctx, n.cfg, n.now, func(ctx context.Context) error {
		err := n.session(ctx)
		n.status.SetReady(false)
		return err
	}, func(err error, backoff time.Duration) {
		n.m.Restarted()
		n.log.Warn("pipeline stopped; restarting from the checkpoint", "err", err, "backoff", backoff)
		n.stall.Failed(ctx, n.now(), n.Status().Position, err)
	})
}

func (n *Node) session(ctx context.Context) error {
	src := n.o.Source
	// A restart's outage is these steps plus the backlog they leave: the
	// log line says which one an operator waited for.
	began := n.now()
	var took []any
	step := func(name string) {
		now := n.now()
		took = append(took, name, now.Sub(began).Round(time.Millisecond).String())
		began = now
	}
	if err := src.Prepare(ctx); err != nil {
		return fmt.Errorf("preparing source: %w", err)
	}
	step("prepare")
	loaded := false
	params, err := n.cfg.RuleParams()
	if err != nil {
		return err
	}
	var summed *rules.Snapshot
	cp, err := bootstrap.Start(ctx, src, n.agg, bootstrap.Options{Slot: n.cfg.Source.Slot, Location: n.cfg.Location, Grace: n.cfg.Grace.D(),
		Logger: n.log, ProgressOut: n.o.ProgressOut, Now: n.now, Hook: n.o.SnapshotHook, Loaded: func() { loaded = true },
		Rules: func(s rules.Snapshot) { summed = &s }, ExposureMinutes: params.ExposureMinutes})
	if err != nil {
		return err
	}
	step("checkpoint")
	// From here on this session is the checkpoint's only writer.
	if cp, err = n.agg.Claim(ctx, cp.Slot); err != nil {
		return err
	}
	step("claim")
	if cp.BusinessTimezone != n.cfg.Location.String() {
		n.log.Warn("business time zone changed; rebuilding hourly and daily rollups", "from", cp.BusinessTimezone, "to", n.cfg.Location.String())
		if err := n.agg.RebuildRollups(ctx, cp.Slot); err != nil {
			return err
		}
	}
	n.status.Restored(cp.Position, cp.LastClosed, cp.Progress)
	pos := cp.Position
	n.durable.Store(&pos)

	open, err := n.alerts.OpenAlerts(ctx)
	if err != nil {
		return err
	}
	step("open_alerts")
	// After a first snapshot there is no rules image: the loader summed
	// the state as it loaded (else it is read from the week), and the
	// first close would then wait seconds for the day's volume curves
	// (the minutes the snapshot took are closed at once). They are read
	// now instead, beside the rest of the restore; nothing is added to
	// the sink until the stream starts, after the read's snapshot.
	var curves func() (rules.VolumeDay, error)
	curvesDay := window.NewCalendar(n.cfg.Location).Day(cp.LastClosed + 1)
	if loaded {
		if curves, err = n.agg.PrefetchVolumeDay(ctx, curvesDay, params.Volume.LargeDailyAmount, cp.LastClosed); err != nil {
			n.log.Warn("the volume curves will be read at the first close", "err", err)
		}
	}
	var ev *Evaluator
	var imageAt window.Minute
	if summed != nil && summed.LastClosed == cp.LastClosed {
		// The first snapshot summed it as it loaded: the same state the
		// week's read gives, without reading it back.
		n.log.Info("rules state summed by the first snapshot", "merchants", len(summed.Baseline))
		ev, err = NewEvaluatorFrom(ctx, n.agg, n.cfg, *summed, open)
	} else {
		ev, imageAt, err = NewResumedEvaluator(ctx, n.agg, n.cfg, cp, open, n.log)
	}
	if err != nil {
		return fmt.Errorf("restoring rules state: %w", err)
	}
	_, needCurves := ev.State.NeedsVolumeDay(cp.LastClosed + 1)
	if curves != nil && needCurves {
		ev.UseAhead(curvesDay, curves)
	}
	step("rules_state")
	took = append(took, "rules_from_image", imageAt != 0, "curves_from_image", !needCurves)
	if err := ev.RestoreRecent(ctx, n.alerts, cp.LastClosed, n.cfg.Alerts.RepeatInterval.D()); err != nil {
		return err
	}
	step("recent_alerts")
	n.log.Info("restored", append([]any{"position", cp.Position}, took...)...)
	ev.Ranked, ev.Log, ev.ReadAhead = n.status.SetRanking, n.log, true
	images := make(chan aggregates.RulesImage, 1)
	core := NewCore(CoreOptions{Config: n.cfg, Aggregates: n.agg, Alerts: n.alerts, Logger: n.log, Metrics: n.m, Status: n.status, Stall: n.stall,
		Now: n.now, OnAlerts: n.o.OnAlerts, OnClose: n.o.OnClose, SaveRules: n.queueImage(images, ev.Params), RulesSavedAt: imageAt}, ev, cp.LastClosed, cp.Progress)
	txns := make(chan *source.Txn, n.cfg.Pipeline.QueueSize)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return src.Deliver(gctx, cp.Position, func() string { return *n.durable.Load() }, txns, func() { n.status.SetReady(true) })
	})
	g.Go(func() error {
		return src.Heartbeat(gctx, func(d time.Duration) bool { return src.Quiet(n.now(), d) })
	})
	g.Go(func() error { return n.apply(gctx, core, cp, txns) })
	g.Go(func() error { n.storeImages(gctx, cp, images); return nil })
	g.Go(func() error { return n.catchUpProgress(gctx) })
	g.Go(func() error { return n.prune(gctx) })
	return g.Wait()
}

// queueImage is the core's SaveRules: the image is encoded on the input's
// goroutine, where the state is exactly what the sink holds, and handed to
// storeImages to write: the write took 50 ms to 0.9 s at 5,000 TPS, and
// the flushes waited for it. An image taken while the previous one is
// still being written is refused.
func (n *Node) queueImage(images chan<- aggregates.RulesImage, p rules.Params) func(context.Context, int64, *rules.State) error {
	return func(_ context.Context, seq int64, st *rules.State) error {
		select {
		case images <- n.agg.EncodeRulesImage(seq, p, st):
			return nil
		default:
			return errors.New("the previous rules image is still being written")
		}
	}
}

// storeImages writes the rules images handed to it until ctx ends. A
// failed write is only logged: a restart reads the older image or the
// week, and the next image comes an hour of minutes later.
func (n *Node) storeImages(ctx context.Context, cp aggregates.Checkpoint, images <-chan aggregates.RulesImage) {
	for {
		select {
		case <-ctx.Done():
			return
		case img := <-images:
			began := n.now()
			size, err := n.agg.StoreRulesImage(ctx, cp, img)
			switch {
			case err == nil:
				n.log.Info("rules image stored", "last_closed", img.LastClosed.String(), "merchants", img.Merchants, "bytes", size,
					"took", n.now().Sub(began).Round(time.Millisecond).String())
			case ctx.Err() == nil:
				n.log.Warn("storing the rules image failed; a restart reads an older image or the week instead", "err", err)
			}
		}
	}
}

// apply is the session's input side: each transaction into the core, a
// flush when one is due.
func (n *Node) apply(ctx context.Context, core *Core, cp aggregates.Checkpoint, in <-chan *source.Txn) error {
	// A position with no data (heartbeats) is made durable about once a
	// second so the server can recycle its log. A drain (minute delivery)
	// waits for the sink before it confirms and disconnects, and comes once
	// a minute: its position is made durable at the next tick.
	idleEvery := time.Second
	if n.cfg.Source.MinuteDelivery() {
		idleEvery = 0
	}
	var applied source.Position
	flush := func(ctx context.Context) error {
		pos := cp.Position
		if applied != nil {
			pos = applied.String()
		}
		if err := core.Flush(ctx, cp.At(pos, core.Evaluated(), core.Progress())); err != nil {
			return err
		}
		n.durable.Store(&pos)
		return nil
	}
	tick := time.NewTicker(n.cfg.Pipeline.FlushInterval.D())
	defer tick.Stop()
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			// Everything in the window is whole transactions in commit
			// order, so it is safe to keep; a failed flush just means it
			// is streamed again after the restart.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := flush(fctx); err != nil {
				n.log.Warn("final flush failed; the stream resumes from the checkpoint", "err", err)
			}
			return nil
		case txn := <-in:
			core.Add(&txn.Output, txn.CommitUS, txn.End.String)
			applied = txn.End
			core.Advance(txn.CommitUS)
			now = n.now()
		case now = <-tick.C:
		}
		if core.Due(now, idleEvery) {
			if err := flush(ctx); err != nil {
				return err
			}
		}
	}
}

// Follow shows where the sink stands while another process is the active
// one (this one a standby): the checkpoint's position, closed minute and
// progress, read every second, so the dashboard served here stays current.
// It only reads.
func (n *Node) Follow(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if cp, err := n.agg.Checkpoint(ctx, n.cfg.Source.Slot); err == nil {
			n.status.Restored(cp.Position, cp.LastClosed, cp.Progress)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// prune is Prune by the node's own progress.
func (n *Node) prune(ctx context.Context) error {
	return Prune(ctx, n.o.DB, n.cfg, n.log, func(context.Context) (time.Time, error) { return n.Status().Progress, nil })
}

// Prune applies the retention (PruneOnce) at once and then hourly,
// measured from progress (the source commit time the sink holds
// everything up to; zero: not known yet). Failures wait for the next
// hour: pruning is never worth a restart.
func Prune(ctx context.Context, db *store.DB, cfg *config.Config, log *slog.Logger, progress func(context.Context) (time.Time, error)) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		through, err := progress(ctx)
		if err == nil && through.Unix() > 0 {
			PruneOnce(ctx, db, cfg, log, through)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// catchUpProgress shows progress while the sink trails the server by more
// than a few megabytes of its log for a few seconds in a row (after
// downtime, or a burst); the hysteresis keeps the sink's own writes, which
// add WAL when it shares the source server, from starting a report every
// second.
func (n *Node) catchUpProgress(ctx context.Context) error {
	const threshold, after = 8 << 20, 3
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var rep *progress.Reporter
	var start int64 // bytes behind when the report started
	behindFor := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st := n.Status()
		behind := st.LagBytes
		if behind > threshold {
			behindFor++
		} else {
			behindFor = 0
		}
		switch {
		case behindFor >= after && rep == nil:
			start = behind
			rep = progress.New("catching up", "bytes of log", start, progress.Options{Out: n.o.ProgressOut, Logger: n.log})
		case behindFor > 0 && rep != nil:
			start = max(start, behind)
			rep.SetTotal(start)
			rep.Set(start - behind)
		case behindFor == 0 && rep != nil:
			rep.Set(start)
			rep.Done()
			rep = nil
			n.log.Info("caught up", "position", st.Position)
		}
	}
}
