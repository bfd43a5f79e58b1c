// Package alert is the alert lifecycle of SPEC §7 as one state machine:
// an alert per (rule, merchant) fires on its first true evaluation, is
// re-notified every repeat interval while it stays true and nobody
// acknowledged it, and resolves after a number of consecutive false
// evaluations. It does no I/O: the pipeline persists what Eval returns in
// the same sink transaction as the closed minute, and the backtest simply
// prints it.
package alert

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/riskwatch/riskwatch/internal/window"
)

// State of an alert.
type State int

const (
	// Firing: the rule holds (or has not yet been false long enough).
	Firing State = iota + 1
	// Resolved: the rule was false for ResolveAfter evaluations in a row.
	Resolved
)

func (s State) String() string {
	switch s {
	case Firing:
		return "firing"
	case Resolved:
		return "resolved"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ParseState reads "firing" or "resolved".
func ParseState(s string) (State, error) {
	switch s {
	case "firing":
		return Firing, nil
	case "resolved":
		return Resolved, nil
	}
	return 0, fmt.Errorf("alert state must be firing or resolved, got %q", s)
}

// Key is an alert's identity.
type Key struct {
	Rule     string
	Merchant int64
}

// Ack is an operator's acknowledgement: the alert stays open, but is not
// notified again.
type Ack struct {
	By      string
	At      time.Time
	Comment string
}

// Alert is one alert's lifetime. Times are minute boundaries of transaction
// time, so that a live run and a backtest over the same data agree.
type Alert struct {
	// ID is assigned by the sink when the alert is first stored (0 before,
	// and always in a backtest).
	ID       int64
	Rule     string
	Merchant int64
	State    State
	// ActiveAt is the start of the minute of the first true evaluation.
	ActiveAt time.Time
	// ResolvedAt is the start of the minute that resolved it.
	ResolvedAt time.Time
	// LastEvalAt is the start of the newest evaluated minute.
	LastEvalAt time.Time
	// LastSentAt is the end of the minute whose evaluation was last
	// notified; zero when never notified.
	LastSentAt time.Time
	// FalseCount counts consecutive false evaluations.
	FalseCount int
	// Values are the rule's reported values at the newest true evaluation.
	Values map[string]any
	Ack    *Ack
}

// Key returns the alert's identity.
func (a *Alert) Key() Key { return Key{Rule: a.Rule, Merchant: a.Merchant} }

// Notification kinds.
const (
	NotifyFiring   = "firing"
	NotifyRepeat   = "repeat"
	NotifyResolved = "resolved"
)

// Change is what one evaluation did to an alert.
type Change struct {
	// Alert is the lifecycle's own alert, which later evaluations change
	// (the sink sets its ID once stored).
	Alert *Alert
	// After is a copy of the alert as this evaluation left it.
	After  Alert
	Minute window.Minute
	// Fires is the evaluation's outcome.
	Fires bool
	// Values are the evaluation's reported values.
	Values map[string]any
	// New: the alert was created by this evaluation.
	New bool
	// Transition is Firing or Resolved when the state changed, 0 otherwise.
	Transition State
	// Notify is the notification kind to send, "" for none.
	Notify string
}

// Options of the lifecycle (SPEC §7 defaults: 4h, 5).
type Options struct {
	RepeatInterval time.Duration
	ResolveAfter   int
}

// Lifecycle holds the open alerts and decides transitions.
type Lifecycle struct {
	opts Options
	open map[Key]*Alert
}

// New returns a lifecycle holding the given open (firing) alerts, restored
// from the sink after a restart, or none for a backtest.
func New(opts Options, open []*Alert) *Lifecycle {
	l := &Lifecycle{opts: opts, open: make(map[Key]*Alert, len(open))}
	for _, a := range open {
		l.open[a.Key()] = a
	}
	return l
}

// OpenMerchants returns the merchants with an open alert of rule, sorted:
// they are evaluated every minute until their alert resolves.
func (l *Lifecycle) OpenMerchants(rule string) []int64 {
	var out []int64
	for k := range l.open {
		if k.Rule == rule {
			out = append(out, k.Merchant)
		}
	}
	slices.Sort(out)
	return out
}

// SetAcks replaces the acknowledgements of open alerts with those stored by
// operators (keyed by alert ID), since acks arrive through the API, not the
// stream.
func (l *Lifecycle) SetAcks(acks map[int64]Ack) {
	for _, a := range l.open {
		if ack, ok := acks[a.ID]; ok && a.ID != 0 {
			a.Ack = &ack
		}
	}
}

// shouldResend is the one predicate for notifying a still-firing alert:
// never when acknowledged or silenced; at once when it was never notified
// (it fired while silenced); else once the repeat interval has passed.
func (l *Lifecycle) shouldResend(a *Alert, end time.Time, silenced bool) (string, bool) {
	if a.Ack != nil || silenced {
		return "", false
	}
	if a.LastSentAt.IsZero() {
		return NotifyFiring, true
	}
	if end.Sub(a.LastSentAt) >= l.opts.RepeatInterval {
		return NotifyRepeat, true
	}
	return "", false
}

// Eval records one evaluation of rule for merchant at minute m and returns
// what changed; nil when there is no alert and the rule does not hold.
// silenced says whether an operator's silence covers the alert now.
func (l *Lifecycle) Eval(m window.Minute, rule string, merchant int64, fires bool, values map[string]any, silenced bool) *Change {
	k := Key{Rule: rule, Merchant: merchant}
	a := l.open[k]
	if a == nil && !fires {
		return nil
	}
	end := m.End()
	ch := &Change{Minute: m, Fires: fires, Values: values}
	if a == nil {
		a = &Alert{Rule: rule, Merchant: merchant, State: Firing, ActiveAt: m.Start(), Values: maps.Clone(values)}
		l.open[k] = a
		ch.New, ch.Transition = true, Firing
		if !silenced {
			ch.Notify = NotifyFiring
			a.LastSentAt = end
		}
	} else if fires {
		a.FalseCount = 0
		a.Values = maps.Clone(values)
		if kind, ok := l.shouldResend(a, end, silenced); ok {
			ch.Notify = kind
			a.LastSentAt = end
		}
	} else {
		a.FalseCount++
		if a.FalseCount >= l.opts.ResolveAfter {
			a.State, a.ResolvedAt = Resolved, m.Start()
			ch.Transition = Resolved
			// Close the loop with every receiver that heard it fire,
			// silenced or acknowledged since or not.
			if !a.LastSentAt.IsZero() {
				ch.Notify = NotifyResolved
			}
			delete(l.open, k)
		}
	}
	a.LastEvalAt = m.Start()
	ch.Alert, ch.After = a, *a
	return ch
}
