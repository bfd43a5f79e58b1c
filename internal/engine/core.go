// Package engine is riskwatch's one engine: it counts events into
// per-merchant minutes, makes them durable together with the position of
// the input they came from in one sink transaction, closes minutes as the
// input's progress passes them, evaluates the rules for each closed minute
// and stores the alerts. Core is that engine; two drivers feed it: Node,
// which reads a source database's change stream on its own (riskwatch run),
// and the Kafka worker, which reads the partitions it owns (riskwatch
// worker). Backtest drives the same Evaluator from stored minutes.
package engine

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Position is where an input stands after a batch: written with the batch
// (aggregates.Position), and marking minutes evaluated with their alerts
// (alertstore.Marker). A single node's is its checkpoint; a worker's its
// partitions' offsets.
type Position interface {
	aggregates.Position
	alertstore.Marker
}

// ClosedMinutes is what one close of minutes did.
type ClosedMinutes struct {
	First, Last window.Minute
	// Transitions are the alert changes that fired, escalated or resolved an alert,
	// in order; their Alert carries the sink's ID.
	Transitions []*alert.Change
}

// CoreOptions configure a Core.
type CoreOptions struct {
	Config     *config.Config
	Aggregates *aggregates.Store
	Alerts     *alertstore.Store
	Logger     *slog.Logger
	Metrics    *Metrics
	Status     *StatusBoard
	Stall      *StallWatch
	Now        func() time.Time
	// CanClose, when set, is asked before minutes through last are
	// evaluated; false waits for a later flush (a worker waits until every
	// partition of the platform has passed the baseline's end).
	CanClose func(ctx context.Context, last window.Minute) (bool, error)
	// OnAlerts is called after alert changes that enqueued notifications
	// were committed (the notification senders' wake-up).
	OnAlerts func()
	// OnClose is called after a close of minutes and its alerts were
	// committed. It runs on the input's goroutine, so it must not block.
	OnClose func(ctx context.Context, c ClosedMinutes)
	// SaveRules, when set, takes an image of the rules state that a
	// restart resumes from (aggregates.EncodeRulesImage) and has it
	// stored. It is called right after a flush numbered seq and the close
	// that followed it, once an hour of minutes has closed since
	// RulesSavedAt or a new business day has begun (at the first close
	// when that is 0); it must be done with st when it returns. A failure
	// only means the next start reads the week.
	SaveRules func(ctx context.Context, seq int64, st *rules.State) error
	// RulesSavedAt is the closed minute of the image the session resumed
	// from: a restart does not write a new one while it catches up.
	RulesSavedAt window.Minute
}

// Core is the engine for one input session: the window of minutes not yet
// durable, the rules' state, and the dead letters waiting for the next
// flush. It is used by one goroutine at a time.
type Core struct {
	o      CoreOptions
	routes []alertstore.Route
	w      *window.Window
	ev     *Evaluator

	dead        []event.DeadLetter
	commitTimes []int64 // of pending transactions with events, for latency
	progressUS  int64
	// evaluated is the newest minute whose rules ran and whose alerts are
	// stored. It trails the window's closing only between a flush and its
	// evaluation, or while CanClose waits.
	evaluated window.Minute
	closing   bool
	// dirty: something was added or the progress moved since the last
	// flush.
	dirty     bool
	lastFlush time.Time
	// saved is the closed minute of the newest rules image (0: none
	// yet).
	saved window.Minute
}

// NewCore starts a session whose minutes through lastClosed are closed and
// whose rules state ev holds, at progress.
func NewCore(o CoreOptions, ev *Evaluator, lastClosed window.Minute, progress time.Time) *Core {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Core{o: o, routes: Routes(o.Config), w: window.New(o.Config.Grace.D(), lastClosed), ev: ev,
		progressUS: progress.UnixMicro(), evaluated: lastClosed, lastFlush: o.Now(), saved: o.RulesSavedAt}
}

// Evaluated is the newest minute whose rules ran.
func (c *Core) Evaluated() window.Minute { return c.evaluated }

// Progress is the source commit time everything is applied up to.
func (c *Core) Progress() time.Time { return time.UnixMicro(c.progressUS).UTC() }

// Add counts what one unit of the input (a source transaction, a Kafka
// record's row) became: its events into the minutes, its dead letters, its
// filtered rows. commitUS, when not 0, is the source commit time, for the
// commit → aggregate latency; pos names where it ends, for the dead letter
// of an event whose minute's pending sum would pass int64.
func (c *Core) Add(out *event.Output, commitUS int64, pos func() string) {
	m := c.o.Metrics
	late, approvals, cancels := 0, 0, 0
	for _, ev := range out.Events {
		var isLate, ok bool
		if ev.Kind == event.Approval {
			isLate, ok = c.w.AddApproval(ev.Merchant, ev.TimeUS, ev.Amount)
		} else {
			isLate, ok = c.w.AddCancel(ev.Merchant, ev.TimeUS, ev.Amount)
		}
		if !ok {
			c.dead = append(c.dead, event.SumOverflow(ev, "minute", pos(), time.UnixMicro(commitUS).UTC()))
			m.deadLetters.WithLabelValues(string(event.ReasonAmountOutOfRange)).Inc()
			continue
		}
		if ev.Kind == event.Approval {
			approvals++
		} else {
			cancels++
		}
		if isLate {
			late++
		}
	}
	if approvals+cancels > 0 {
		m.events.WithLabelValues(event.Approval.String()).Add(float64(approvals))
		m.events.WithLabelValues(event.Cancel.String()).Add(float64(cancels))
		if commitUS != 0 {
			c.commitTimes = append(c.commitTimes, commitUS)
		}
	}
	if late > 0 {
		m.late.Add(float64(late))
	}
	for _, dl := range out.DeadLetters {
		m.deadLetters.WithLabelValues(string(dl.Reason)).Inc()
	}
	c.dead = append(c.dead, out.DeadLetters...)
	if out.Filtered > 0 {
		m.filtered.Add(float64(out.Filtered))
	}
	c.dirty = true
}

// DeadLetter records a unit of input that could not even be read as rows
// (an undecodable Kafka record).
func (c *Core) DeadLetter(dl event.DeadLetter) {
	c.o.Metrics.deadLetters.WithLabelValues(string(dl.Reason)).Inc()
	c.dead = append(c.dead, dl)
	c.dirty = true
}

// Advance records that every source commit up to us is applied; the minutes
// this completes close at the next flush.
func (c *Core) Advance(us int64) {
	if us > c.progressUS {
		c.progressUS = us
		c.dirty = true
	}
	if _, _, ok := c.w.Advance(c.progressUS); ok {
		c.closing = true
	}
}

// Touch records that the input moved (positions, nothing else) so that the
// next due flush writes the new position.
func (c *Core) Touch() { c.dirty = true }

// Due reports whether a flush is due at now: at once when minutes closed
// or the batch is full; after a flush interval with events or dead letters
// pending; after idleEvery when only the position moved.
func (c *Core) Due(now time.Time, idleEvery time.Duration) bool {
	switch {
	case c.closing || c.w.PendingEvents() >= c.o.Config.Pipeline.MaxBatchEvents:
		return true
	case !c.dirty:
		return false
	case c.w.PendingEvents() > 0 || len(c.dead) > 0:
		return now.Sub(c.lastFlush) >= c.o.Config.Pipeline.FlushInterval.D()
	}
	return now.Sub(c.lastFlush) >= idleEvery
}

// Flush makes the window's deltas, the dead letters and pos durable in one
// sink transaction; then, when minutes closed, it evaluates them against
// data that is all in the sink and stores the alerts, their outbox rows and
// pos's mark of the minutes evaluated in a second one. A crash between the
// two evaluates those minutes again after the restart.
func (c *Core) Flush(ctx context.Context, pos Position) error {
	if !c.dirty && !c.closing {
		return nil
	}
	started := c.o.Now()
	b := &aggregates.Batch{Deltas: c.w.Drain(), DeadLetters: c.dead, Position: pos, At: c.Progress(), Evaluated: c.evaluated}
	if err := c.o.Aggregates.Apply(ctx, b); err != nil {
		return fmt.Errorf("flushing to sink: %w", err)
	}
	now := c.o.Now()
	m := c.o.Metrics
	m.flushDuration.Observe(now.Sub(started).Seconds())
	for _, dl := range b.Refused {
		m.deadLetters.WithLabelValues(string(dl.Reason)).Inc()
		c.o.Logger.Error("a delta would take a stored sum past int64; recorded as a dead letter", "detail", dl.Detail)
	}
	events := 0
	for _, d := range b.Deltas {
		events += int(d.Approvals + d.Cancels)
		c.ev.Add(d)
	}
	for _, ct := range c.commitTimes {
		m.commitToAgg.Observe(float64(now.UnixMicro()-ct) / 1e6)
	}
	// The interval runs from the flush's start, so data waits at most one
	// interval however long the sink took (from its end, every batch
	// would wait a flush longer and grow, and each flush with it).
	c.commitTimes, c.dead, c.dirty, c.lastFlush = c.commitTimes[:0], nil, false, started
	c.o.Stall.Progressed(ctx, now, pos.String())
	if c.closing {
		if err := c.evaluate(ctx, pos); err != nil {
			return err
		}
		c.saveRules(ctx, b.Seq)
	}
	c.o.Status.durable(now, pos.String(), c.evaluated, c.Progress(), events)
	return nil
}

// saveRulesEvery is how many closed minutes apart rules images are stored;
// the first close of a business day stores one too, so that a restart
// finds the day's volume curves in it.
const saveRulesEvery = rules.HourMinutes

// saveRules stores an image of the rules state when one is due. Everything
// added is flushed (numbered seq) and closed, so the state is exactly what
// the sink holds. The alerts of the close are already committed and their
// senders woken, so taking the image delays the next flush, not a
// notification.
func (c *Core) saveRules(ctx context.Context, seq int64) {
	st := c.ev.State
	if c.o.SaveRules == nil || st.LastClosed() != c.evaluated {
		return
	}
	if cal := st.Calendar(); c.saved != 0 && c.evaluated-c.saved < saveRulesEvery && cal.Day(c.evaluated).Equal(cal.Day(c.saved)) {
		return
	}
	if err := c.o.SaveRules(ctx, seq, st); err != nil {
		if ctx.Err() == nil {
			c.o.Logger.Warn("storing the rules image failed; a restart reads the week instead", "err", err)
		}
		return
	}
	c.saved = c.evaluated
}

// evaluate runs the rules for the closed minutes and stores the alerts.
func (c *Core) evaluate(ctx context.Context, pos Position) error {
	first, last := c.evaluated+1, c.w.LastClosed()
	if last < first {
		c.closing = false
		return nil
	}
	if c.o.CanClose != nil {
		ok, err := c.o.CanClose(ctx, last)
		if err != nil || !ok {
			return err
		}
	}
	started := c.o.Now()
	closed, enqueued, err := c.closeAndStore(ctx, first, last, pos)
	if err != nil {
		return err
	}
	c.evaluated, c.closing = last, false
	c.o.Metrics.evalDuration.Observe(c.o.Now().Sub(started).Seconds())
	for _, ch := range closed.Transitions {
		c.o.Metrics.transitions.WithLabelValues(ch.After.Rule, ch.TransitionName()).Inc()
		c.o.Logger.Info("alert "+ch.TransitionName(), "rule", ch.After.Rule, "merchant", ch.After.Merchant, "minute", ch.Minute.String(), "priority", ch.After.Priority.String(),
			"notify", ch.Notify, "values", ch.Values)
	}
	if enqueued > 0 && c.o.OnAlerts != nil {
		c.o.OnAlerts()
	}
	c.o.Logger.Debug("minutes closed", "first", first.String(), "last", last.String(), "alert_transitions", len(closed.Transitions))
	if c.o.OnClose != nil {
		c.o.OnClose(ctx, closed)
	}
	return nil
}

// closeAndStore closes minutes first..last on the evaluator with the
// operators' current acknowledgements and silences, and stores the alert
// changes with pos's mark of the minutes evaluated in one sink transaction.
// It returns the transitions and the notifications enqueued.
func (c *Core) closeAndStore(ctx context.Context, first, last window.Minute, pos Position) (ClosedMinutes, int, error) {
	closed := ClosedMinutes{First: first, Last: last}
	// Three reads of the sink, independent of each other: side by side,
	// the close waits for the slowest instead of their sum (the stream
	// waits with it).
	var acks map[int64]alert.Ack
	var silences []alertstore.Silence
	var leaving Leaving
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { acks, err = c.o.Alerts.Acks(gctx); return err })
	g.Go(func() (err error) { silences, err = c.o.Alerts.Silences(gctx, first.Start()); return err })
	g.Go(func() (err error) { leaving, err = c.ev.Leaving(gctx, first, last); return err })
	if err := g.Wait(); err != nil {
		return closed, 0, err
	}
	c.ev.Lifecycle.SetAcks(acks)
	changes, err := c.ev.CloseWith(ctx, first, last, leaving, func(rule string, merchant int64, at time.Time) bool {
		return slices.ContainsFunc(silences, func(s alertstore.Silence) bool { return s.Covers(rule, merchant, at) })
	})
	if err != nil {
		return closed, 0, fmt.Errorf("evaluating %s..%s: %w", first, last, err)
	}
	batch := &alertstore.AlertBatch{LastClosed: last, Routes: c.routes, Closed: pos}
	for _, ch := range changes {
		batch.Changes = append(batch.Changes, alertChange(c.o.Config, ch))
	}
	enqueued, err := c.o.Alerts.ApplyAlerts(ctx, batch)
	if err != nil {
		return closed, 0, fmt.Errorf("storing alerts of %s..%s: %w", first, last, err)
	}
	for _, ch := range changes {
		if ch.Transition != 0 || ch.Escalated {
			closed.Transitions = append(closed.Transitions, ch)
		}
	}
	return closed, enqueued, nil
}

func alertChange(cfg *config.Config, ch *alert.Change) alertstore.AlertChange {
	return alertstore.AlertChange{
		Live: ch.Alert, Snap: ch.After, Minute: ch.Minute, Fires: ch.Fires, Values: ch.Values, New: ch.New,
		Notify: ch.Notify, NotifyPriority: ch.NotifyPriority, PrevPriority: ch.PrevPriority,
		// A notification's severity is that of the priority it is routed
		// at: a re-fire soon after a page goes out as a warning.
		Severity:     alert.Severity(ch.After.Rule, cmp.Or(ch.NotifyPriority, ch.After.Priority)),
		Summary:      alert.Headline(ch.After.Rule, ch.After.Merchant, ch.Values, ch.Notify, ch.After.Priority),
		DashboardURL: DashboardURL(cfg, ch.After.Merchant),
	}
}
