package engine

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Evaluator advances the rules state minute by minute and runs the alert
// lifecycle over the results. The live pipeline and the backtest share it,
// which is what makes them raise the same alerts on the same data.
type Evaluator struct {
	State     *rules.State
	Lifecycle *alert.Lifecycle
	Params    rules.Params
	st        *aggregates.Store
	// Ranked, when set, receives the ranking of the newest minute of each
	// Close (the live engine sets it; a backtest has no use for it).
	Ranked func(*rules.Ranking)
	// Log, when set, hears how long loading a business day's volume
	// curves took: a close waits for it, once a day and after a start.
	Log *slog.Logger
	// ReadAhead, when set, starts reading the next business day's volume
	// curves as soon as the day's last minute has closed, so that the new
	// day's first close (a minute later) does not wait seconds for them.
	// Every delta flushed after that must then go through Add. The live
	// single-node engine sets it; a backtest has nothing to overlap.
	ReadAhead bool
	next      *nextDay
	scope     *Scope
}

// nextDay is a business day whose volume curves are being read ahead from
// a snapshot of the sink; late holds the approvals flushed since into the
// 7 days [from, to) the curves sum.
type nextDay struct {
	day      time.Time
	from, to window.Minute
	wait     func() (rules.VolumeDay, error)
	late     []window.Delta
}

// Add gives the state a delta that is now in the sink.
func (ev *Evaluator) Add(d window.Delta) {
	if n := ev.next; n != nil && d.ApprovedAmount != 0 && d.Minute >= n.from && d.Minute < n.to {
		n.late = append(n.late, d)
	}
	ev.State.Add(d)
}

// Scope limits an evaluator to some merchants: a worker's, those of the
// Kafka partitions it owns.
type Scope struct {
	// Owns reports whether the merchant is evaluated here.
	Owns func(merchant int64) bool
	// Evaluated reports whether the merchant's rules already ran for m
	// (under the partition's previous owner); it is then not evaluated
	// again, so no alert changes twice.
	Evaluated func(m window.Minute, merchant int64) bool
	// Platform returns every merchant's approvals and cancels over the
	// minutes [from, to), the platform-wide baseline of SPEC §5.
	Platform func(ctx context.Context, from, to window.Minute) (approvals, cancels int64, err error)
}

// NewScopedEvaluator is NewEvaluator (with open minutes) for the merchants
// of scope only.
func NewScopedEvaluator(ctx context.Context, st *aggregates.Store, cfg *config.Config, lastClosed window.Minute, open []*alert.Alert, scope *Scope) (*Evaluator, error) {
	return newEvaluator(ctx, st, cfg, open, scope, func(p rules.Params) (rules.Snapshot, error) {
		return st.RulesSnapshot(ctx, lastClosed, true, p.ExposureMinutes)
	})
}

// NewEvaluator restores the rules state after lastClosed from the sink.
// withOpen includes stored minutes after lastClosed (live: they were
// flushed but not yet closed); a backtest feeds those minute by minute.
func NewEvaluator(ctx context.Context, st *aggregates.Store, cfg *config.Config, lastClosed window.Minute, withOpen bool, open []*alert.Alert) (*Evaluator, error) {
	return newEvaluator(ctx, st, cfg, open, nil, func(p rules.Params) (rules.Snapshot, error) {
		return st.RulesSnapshot(ctx, lastClosed, withOpen, p.ExposureMinutes)
	})
}

// NewEvaluatorFrom is NewEvaluator from a rules state summed already (by
// a first snapshot's loader) for the same exposure window.
func NewEvaluatorFrom(ctx context.Context, st *aggregates.Store, cfg *config.Config, snap rules.Snapshot, open []*alert.Alert) (*Evaluator, error) {
	return newEvaluator(ctx, st, cfg, open, nil, func(p rules.Params) (rules.Snapshot, error) {
		if p.ExposureMinutes != snap.ExposureMinutes {
			return snap, fmt.Errorf("the rules state was summed for an exposure window of %d minutes, the rules need %d", snap.ExposureMinutes, p.ExposureMinutes)
		}
		return snap, nil
	})
}

// NewResumedEvaluator is NewEvaluator with open minutes for the claimed
// checkpoint cp's writer: from the rules image a previous session stored
// when it can be used (imageAt is the closed minute it was taken at), else
// from the week (imageAt 0).
func NewResumedEvaluator(ctx context.Context, st *aggregates.Store, cfg *config.Config, cp aggregates.Checkpoint, open []*alert.Alert, log *slog.Logger) (ev *Evaluator, imageAt window.Minute, err error) {
	ev, err = newEvaluator(ctx, st, cfg, open, nil, func(p rules.Params) (rules.Snapshot, error) {
		var snap rules.Snapshot
		snap, imageAt, err = st.ResumeRulesSnapshot(ctx, cp.Slot, cp.LastClosed, p, log)
		return snap, err
	})
	return ev, imageAt, err
}

// newEvaluator builds the evaluator from the snapshot read for the
// configured rules.
func newEvaluator(ctx context.Context, st *aggregates.Store, cfg *config.Config, open []*alert.Alert, scope *Scope, read func(rules.Params) (rules.Snapshot, error)) (*Evaluator, error) {
	params, err := cfg.RuleParams()
	if err != nil {
		return nil, err
	}
	snap, err := read(params)
	if err != nil {
		return nil, err
	}
	if scope != nil {
		snap.Recent = slices.DeleteFunc(snap.Recent, func(d window.Delta) bool { return !scope.Owns(d.Merchant) })
		snap.Baseline = slices.DeleteFunc(snap.Baseline, func(m rules.MerchantSums) bool { return !scope.Owns(m.Merchant) })
		snap.HourOfDay = slices.DeleteFunc(snap.HourOfDay, func(m rules.HourOfDaySums) bool { return !scope.Owns(m.Merchant) })
		snap.Today = slices.DeleteFunc(snap.Today, func(m rules.MerchantSums) bool { return !scope.Owns(m.Merchant) })
		snap.Exposure = slices.DeleteFunc(snap.Exposure, func(m rules.MerchantAmount) bool { return !scope.Owns(m.Merchant) })
		open = slices.DeleteFunc(slices.Clone(open), func(a *alert.Alert) bool { return !scope.Owns(a.Merchant) })
	}
	state := rules.NewState(snap, window.NewCalendar(cfg.Location))
	state.SetPriorityParams(params.Priority)
	return &Evaluator{
		scope:     scope,
		State:     state,
		Lifecycle: alert.New(alert.Options{RepeatInterval: cfg.Alerts.RepeatInterval.D(), ResolveAfter: cfg.Alerts.ResolveAfter}, open),
		Params:    params,
		st:        st,
	}, nil
}

// RestoreRecent gives the lifecycle the alerts resolved within the repeat
// interval before lastClosed's end, so that a re-fire after a restart still
// continues them.
func (ev *Evaluator) RestoreRecent(ctx context.Context, st *alertstore.Store, lastClosed window.Minute, repeat time.Duration) error {
	recent, err := st.RecentlyResolved(ctx, lastClosed.End().Add(-repeat))
	if err != nil {
		return err
	}
	if ev.scope != nil {
		recent = slices.DeleteFunc(recent, func(a *alert.Alert) bool { return !ev.scope.Owns(a.Merchant) })
	}
	ev.Lifecycle.SetRecent(recent)
	return nil
}

// Close closes minutes first..last (which must follow the state's last
// closed minute), reading from the sink the minutes that leave the 7-day
// window and, at a new business day, the large merchants' curves, and
// returns every alert change in order. silenced tells whether an
// operator's silence covers a rule for a merchant at a time.
func (ev *Evaluator) Close(ctx context.Context, first, last window.Minute, silenced func(rule string, merchant int64, at time.Time) bool) ([]*alert.Change, error) {
	l, err := ev.Leaving(ctx, first, last)
	if err != nil {
		return nil, err
	}
	return ev.CloseWith(ctx, first, last, l, silenced)
}

// Leaving is what closing first..last takes out of the state, read from
// the sink: the minutes leaving the 7-day window and those leaving the
// exposure window. Everything given to Add must be in the sink.
type Leaving struct{ baseline, exposure []window.Delta }

// Leaving reads the minutes that closing first..last takes out of the
// state; it only reads, so it may run beside other reads of the close.
func (ev *Evaluator) Leaving(ctx context.Context, first, last window.Minute) (Leaving, error) {
	var l Leaving
	var err error
	if l.baseline, err = ev.st.Minutes(ctx, rules.LeavingMinute(first), rules.LeavingMinute(last)+1); err != nil {
		return l, err
	}
	if lf, ok := ev.State.ExposureLeavingMinute(first); ok {
		ll, _ := ev.State.ExposureLeavingMinute(last)
		if l.exposure, err = ev.st.Minutes(ctx, lf, ll+1); err != nil {
			return l, err
		}
	}
	return l, nil
}

// CloseWith is Close with the leaving minutes already read.
func (ev *Evaluator) CloseWith(ctx context.Context, first, last window.Minute, l Leaving, silenced func(rule string, merchant int64, at time.Time) bool) ([]*alert.Change, error) {
	leaving, leavingExpo := l.baseline, l.exposure
	if ev.scope != nil {
		leaving = slices.DeleteFunc(leaving, func(d window.Delta) bool { return !ev.scope.Owns(d.Merchant) })
		leavingExpo = slices.DeleteFunc(leavingExpo, func(d window.Delta) bool { return !ev.scope.Owns(d.Merchant) })
	}
	var changes []*alert.Change
	for m := first; m <= last; m++ {
		if day, need := ev.State.NeedsVolumeDay(m); need {
			vd, err := ev.volumeDay(ctx, day, m)
			if err != nil {
				return nil, err
			}
			if ev.scope != nil {
				maps.DeleteFunc(vd.Curves, func(id int64, _ *rules.Curve) bool { return !ev.scope.Owns(id) })
				maps.DeleteFunc(vd.Today, func(id int64, _ int64) bool { return !ev.scope.Owns(id) })
			}
			ev.State.SetVolumeDay(vd)
		}
		lm := rules.LeavingMinute(m)
		n := 0
		for n < len(leaving) && leaving[n].Minute == lm {
			n++
		}
		rows := leaving[:n]
		if le, ok := ev.State.ExposureLeavingMinute(m); ok {
			k := 0
			for k < len(leavingExpo) && leavingExpo[k].Minute == le {
				k++
			}
			rows = append(slices.Clip(rows), leavingExpo[:k]...)
			leavingExpo = leavingExpo[k:]
		}
		if err := ev.State.Close(m, rows); err != nil {
			return nil, err
		}
		leaving = leaving[n:]
		if ev.scope != nil {
			// B of m is the 7 days before H = m-59 … m.
			hFrom := m - rules.HourMinutes + 1
			a, c, err := ev.scope.Platform(ctx, hFrom-rules.BaselineMinutes, hFrom)
			if err != nil {
				return nil, err
			}
			ev.State.SetPlatformBaseline(a, c)
		}
		changes = append(changes, ev.evaluate(m, silenced, m == last && ev.Ranked != nil)...)
	}
	if day, need := ev.State.NeedsVolumeDay(last + 1); need && ev.ReadAhead && ev.next == nil {
		ev.readAhead(ctx, day, last)
	}
	return changes, nil
}

// readAhead starts reading day's curves, whose 7 days ended with the
// closed minute last. Everything given to Add so far is in the sink, and
// the read's snapshot is taken before this returns, so the approvals Add
// hears from now on are exactly those it misses.
func (ev *Evaluator) readAhead(ctx context.Context, day time.Time, last window.Minute) {
	wait, err := ev.st.PrefetchVolumeDay(ctx, day, ev.Params.Volume.LargeDailyAmount, last)
	if err != nil {
		if ev.Log != nil && ctx.Err() == nil {
			ev.Log.Warn("the next day's volume curves will be read at its first close", "err", err)
		}
		return
	}
	ev.UseAhead(day, wait)
}

// UseAhead makes a read of day's curves that the caller started
// (aggregates.Store.PrefetchVolumeDay, with nothing added to the sink
// since its snapshot) the one the close of the day's first minute takes,
// as if read ahead by Close; the approvals Add hears from now on are
// added to them.
func (ev *Evaluator) UseAhead(day time.Time, wait func() (rules.VolumeDay, error)) {
	from, to := rules.CurveWeek(ev.State.Calendar(), day)
	ev.next = &nextDay{day: day, from: from, to: to, wait: wait}
}

// volumeDay is day's curves for the close of m: those read ahead when
// they are for this day, with the approvals flushed since added, else
// read now.
func (ev *Evaluator) volumeDay(ctx context.Context, day time.Time, m window.Minute) (rules.VolumeDay, error) {
	began := time.Now()
	logLoaded := func(vd rules.VolumeDay, how string) {
		if ev.Log != nil {
			ev.Log.Info("volume curves loaded", "day", day.Format(time.DateOnly), "large_merchants", len(vd.Curves), "read", how,
				"waited", time.Since(began).Round(time.Millisecond).String())
		}
	}
	if n := ev.next; n != nil {
		ev.next = nil
		if n.day.Equal(day) {
			vd, err := n.wait()
			if err == nil {
				for _, d := range n.late {
					vd.Add(ev.State.Calendar(), d.Minute, d.Merchant, d.ApprovedAmount)
				}
				logLoaded(vd, "ahead")
				return vd, nil
			}
			if ctx.Err() != nil {
				return vd, err
			}
			if ev.Log != nil {
				ev.Log.Warn("reading the volume curves ahead failed; reading them now", "day", day.Format(time.DateOnly), "err", err)
			}
		}
	}
	vd, err := ev.st.VolumeDay(ctx, day, ev.Params.Volume.LargeDailyAmount, m-1)
	if err != nil {
		return vd, err
	}
	logLoaded(vd, "at the close")
	return vd, nil
}

// evaluate runs both rules at minute m and feeds the lifecycle.
func (ev *Evaluator) evaluate(m window.Minute, silenced func(string, int64, time.Time) bool, ranked bool) []*alert.Change {
	var out []*alert.Change
	end := m.End()
	record := func(rule string, merchant int64, fires bool, priority rules.Priority, values func() map[string]any) {
		if ev.scope != nil && ev.scope.Evaluated(m, merchant) {
			return
		}
		ch := ev.Lifecycle.Eval(m, rule, merchant, fires, priority, values(), silenced != nil && silenced(rule, merchant, end))
		if ch != nil {
			out = append(out, ch)
		}
	}
	ev.Lifecycle.Forget(end)
	var ranker *rules.Ranker
	if ranked {
		ranker = rules.NewRanker(ev.Params.Cancel)
	}
	ev.State.EachCancelEval(ev.Params.Cancel, ev.Lifecycle.OpenMerchants(rules.CancelRateSpike), func(e *rules.CancelEval) {
		// Values only for what the lifecycle keeps: most of the 60,000
		// merchants evaluated every minute neither fire nor have an alert.
		if e.Fires || ev.Lifecycle.IsOpen(rules.CancelRateSpike, e.Merchant) {
			record(rules.CancelRateSpike, e.Merchant, e.Fires, e.Priority, e.CancelResult.Values)
		}
		if ranker != nil {
			ranker.Offer(e)
		}
	})
	volume := ev.State.VolumeEvals(ev.Params.Volume, ev.Lifecycle.OpenMerchants(rules.VolumeDrop))
	for _, e := range volume {
		record(rules.VolumeDrop, e.Merchant, e.Fires, e.VolumeResult.Priority, e.VolumeResult.Values)
	}
	if ranker != nil {
		ev.Ranked(ranker.Ranking(m, volume))
	}
	return out
}
