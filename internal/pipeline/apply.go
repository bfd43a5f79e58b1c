package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/source"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/window"
)

// applier is the apply loop of one session. It owns the window; the only
// state shared with the stream is the durable position.
type applier struct {
	e  *Engine
	in <-chan *source.Txn
	w  *window.Window

	// applied is the end of the newest transaction in w (not yet durable).
	applied    source.LSN
	progressUS int64
	durable    atomic.Uint64

	deadLetters []event.DeadLetter
	commitTimes []int64 // of pending transactions with events, for latency
	lastFlush   time.Time
	closedFrom  window.Minute
	closing     bool

	ev *Evaluator
	// evaluated is the newest minute whose rules ran and whose alerts are
	// stored; the checkpoint's last_closed. It trails the window's closing
	// only between the two sink transactions of a flush.
	evaluated window.Minute
}

func (a *applier) run(ctx context.Context) error {
	interval := a.e.cfg.Pipeline.FlushInterval.D()
	// A position with no data (heartbeats) is made durable about once a
	// second so the server can recycle WAL. A drain (minute delivery)
	// waits for the sink before it confirms and disconnects, and comes once
	// a minute: its position is made durable at the next tick.
	idleEvery := time.Second
	if a.e.cfg.Source.MinuteDelivery() {
		idleEvery = 0
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// Everything in the window is whole transactions in commit
			// order, so it is safe to keep; a failed flush just means it
			// is streamed again after the restart.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := a.flush(fctx); err != nil {
				a.e.log.Warn("final flush failed; the stream resumes from the checkpoint", "err", err)
			}
			return nil
		case txn := <-a.in:
			a.apply(txn)
			if a.closing || a.w.PendingEvents() >= a.e.cfg.Pipeline.MaxBatchEvents {
				if err := a.flush(ctx); err != nil {
					return err
				}
			}
		case now := <-tick.C:
			// Data waits at most one interval; a bare position idleEvery.
			idleCheckpoint := a.applied > source.LSN(a.durable.Load()) && now.Sub(a.lastFlush) >= idleEvery
			if a.w.PendingEvents() > 0 || len(a.deadLetters) > 0 || idleCheckpoint {
				if err := a.flush(ctx); err != nil {
					return err
				}
			}
		}
	}
}

func (a *applier) apply(txn *source.Txn) {
	if txn.EndLSN <= a.applied {
		return // sent again after a reconnect; already counted
	}
	m := a.e.m
	late, approvals, cancels := 0, 0, 0
	for _, ev := range txn.Events {
		var isLate, ok bool
		if ev.Kind == event.Approval {
			isLate, ok = a.w.AddApproval(ev.Merchant, ev.TimeUS, ev.Amount)
		} else {
			isLate, ok = a.w.AddCancel(ev.Merchant, ev.TimeUS, ev.Amount)
		}
		if !ok {
			txn.DeadLetters = append(txn.DeadLetters, event.SumOverflow(ev, "minute", uint64(txn.EndLSN), time.UnixMicro(txn.CommitUS).UTC()))
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
		a.commitTimes = append(a.commitTimes, txn.CommitUS)
	}
	if late > 0 {
		m.late.Add(float64(late))
	}
	for _, dl := range txn.DeadLetters {
		m.deadLetters.WithLabelValues(string(dl.Reason)).Inc()
	}
	a.deadLetters = append(a.deadLetters, txn.DeadLetters...)
	if txn.Filtered > 0 {
		m.filtered.Add(float64(txn.Filtered))
	}
	a.applied = txn.EndLSN
	a.progressUS = max(a.progressUS, txn.CommitUS)
	if first, _, ok := a.w.Advance(a.progressUS); ok {
		if !a.closing {
			a.closedFrom = first
		}
		a.closing = true
	}
}

// flush makes the window's deltas, the dead letters and the position
// durable in one sink transaction; then, when minutes closed, it evaluates
// them against data that is all in the sink and stores the alerts, their
// outbox rows and the new last closed minute in a second one. A crash
// between the two evaluates those minutes again after the restart.
func (a *applier) flush(ctx context.Context) error {
	if a.applied <= source.LSN(a.durable.Load()) && a.w.PendingEvents() == 0 && len(a.deadLetters) == 0 && !a.closing {
		return nil
	}
	started := a.e.now()
	progress := time.UnixMicro(a.progressUS).UTC()
	b := &store.Batch{
		Deltas:      a.w.Drain(),
		DeadLetters: a.deadLetters,
		Checkpoint:  store.Checkpoint{Slot: a.e.cfg.Source.Slot, LSN: uint64(a.applied), LastClosed: a.evaluated, Progress: progress},
	}
	if err := a.e.opts.Store.Apply(ctx, b); err != nil {
		return fmt.Errorf("flushing to sink: %w", err)
	}
	for _, dl := range b.Refused {
		a.e.m.deadLetters.WithLabelValues(string(dl.Reason)).Inc()
		a.e.log.Error("a delta would take a stored sum past int64; recorded as a dead letter", "detail", dl.Detail)
	}
	now := a.e.now()
	a.e.m.flushDuration.Observe(now.Sub(started).Seconds())
	events := 0
	for _, d := range b.Deltas {
		events += int(d.Approvals + d.Cancels)
	}
	for _, ct := range a.commitTimes {
		a.e.m.commitToAgg.Observe(float64(now.UnixMicro()-ct) / 1e6)
	}
	a.commitTimes = a.commitTimes[:0]
	a.deadLetters = nil
	a.lastFlush = now
	a.durable.Store(uint64(a.applied))
	a.e.stall.Progressed(ctx, now, a.applied.String())
	for _, d := range b.Deltas {
		a.ev.State.Add(d)
	}
	if a.closing {
		if err := a.evaluate(ctx, a.closedFrom, a.w.LastClosed()); err != nil {
			return err
		}
		a.closing = false
	}
	a.e.setDurable(a.applied, a.evaluated, progress, events)
	return nil
}

// evaluate runs the rules for the closed minutes and stores the alerts.
func (a *applier) evaluate(ctx context.Context, first, last window.Minute) error {
	started := a.e.now()
	batch := &store.AlertBatch{Slot: a.e.cfg.Source.Slot, LastClosed: last, Routes: a.e.routes}
	c, enqueued, err := CloseAndStore(ctx, a.ev, a.e.opts.Store, a.e.cfg, first, last, batch)
	if err != nil {
		return err
	}
	a.evaluated = last
	a.e.m.evalDuration.Observe(a.e.now().Sub(started).Seconds())
	for _, ch := range c.Transitions {
		a.e.m.transitions.WithLabelValues(ch.After.Rule, ch.Transition.String()).Inc()
		a.e.log.Info("alert "+ch.Transition.String(), "rule", ch.After.Rule, "merchant", ch.After.Merchant, "minute", ch.Minute.String(),
			"notify", ch.Notify, "values", ch.Values)
	}
	if enqueued > 0 && a.e.opts.OnAlerts != nil {
		a.e.opts.OnAlerts()
	}
	a.e.log.Debug("minutes closed", "first", first.String(), "last", last.String(), "alert_transitions", len(c.Transitions))
	if a.e.opts.OnClose != nil {
		a.e.opts.OnClose(ctx, c)
	}
	return nil
}

// CloseAndStore closes minutes first..last on ev with the operators'
// current acknowledgements and silences, and stores the alert changes in
// batch (whose Slot or Partitions say what to mark closed) in one sink
// transaction. It returns the transitions and the notifications enqueued.
func CloseAndStore(ctx context.Context, ev *Evaluator, st *store.Store, cfg *config.Config, first, last window.Minute, batch *store.AlertBatch) (Closed, int, error) {
	c := Closed{First: first, Last: last}
	acks, err := st.Acks(ctx)
	if err != nil {
		return c, 0, err
	}
	ev.Lifecycle.SetAcks(acks)
	silences, err := st.Silences(ctx, first.Start())
	if err != nil {
		return c, 0, err
	}
	changes, err := ev.Close(ctx, first, last, func(rule string, merchant int64, at time.Time) bool {
		for _, s := range silences {
			if s.Covers(rule, merchant, at) {
				return true
			}
		}
		return false
	})
	if err != nil {
		return c, 0, fmt.Errorf("evaluating %s..%s: %w", first, last, err)
	}
	for _, ch := range changes {
		batch.Changes = append(batch.Changes, alertChange(cfg, ch))
	}
	enqueued, err := st.ApplyAlerts(ctx, batch)
	if err != nil {
		return c, 0, fmt.Errorf("storing alerts of %s..%s: %w", first, last, err)
	}
	for _, ch := range changes {
		if ch.Transition != 0 {
			c.Transitions = append(c.Transitions, ch)
		}
	}
	return c, enqueued, nil
}
