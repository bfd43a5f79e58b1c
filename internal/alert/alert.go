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

	"github.com/riskwatch/riskwatch/internal/rules"
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
// notified again — unless it escalates past Priority, the priority it had
// when acknowledged (0: any).
type Ack struct {
	By       string
	At       time.Time
	Comment  string
	Priority rules.Priority
}

// covers says whether the ack still silences an alert at priority p.
func (k *Ack) covers(p rules.Priority) bool { return k.Priority == 0 || p >= k.Priority }

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
	// Priority is the most urgent priority the alert reached while open
	// (it escalates, never the other way).
	Priority rules.Priority
	// Notified is the most urgent priority a notification of it was routed
	// at (0: never notified); its resolve goes to the same receivers.
	Notified rules.Priority
	// Continues is the ID of the alert of the same rule and merchant whose
	// last notification was within the repeat interval when this one fired
	// (0: none), and ContinuesNotified that alert's Notified: a flapping
	// alert pages once.
	Continues         int64
	ContinuesNotified rules.Priority
}

// Key returns the alert's identity.
func (a *Alert) Key() Key { return Key{Rule: a.Rule, Merchant: a.Merchant} }

// Notification kinds.
const (
	NotifyFiring   = "firing"
	NotifyRepeat   = "repeat"
	NotifyResolved = "resolved"
	// NotifyEscalated: an open alert became more urgent.
	NotifyEscalated = "escalated"
	// NotifyContinued: the alert fired again soon after an earlier one of
	// the same rule and merchant was notified; it is told, not paged anew.
	NotifyContinued = "continued"
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
	// Escalated: the alert's priority became more urgent (from
	// PrevPriority to After.Priority).
	Escalated    bool
	PrevPriority rules.Priority
	// Notify is the notification kind to send, "" for none, and
	// NotifyPriority the priority it is routed at (receivers take those at
	// or above their min_priority).
	Notify         string
	NotifyPriority rules.Priority
}

// Escalated names an escalation where a transition's state would be.
const Escalated = "escalated"

// TransitionName is what the change did, as logs, metrics and the backtest
// name it: "firing", "resolved", "escalated", or "" for none.
func (c *Change) TransitionName() string {
	switch {
	case c.Transition != 0:
		return c.Transition.String()
	case c.Escalated:
		return Escalated
	}
	return ""
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
	// recent holds alerts resolved after being notified, while a new alert
	// of the same key would still continue them.
	recent map[Key]*Alert
}

// New returns a lifecycle holding the given open (firing) alerts, restored
// from the sink after a restart, or none for a backtest.
func New(opts Options, open []*Alert) *Lifecycle {
	l := &Lifecycle{opts: opts, open: make(map[Key]*Alert, len(open)), recent: map[Key]*Alert{}}
	for _, a := range open {
		l.open[a.Key()] = a
	}
	return l
}

// SetRecent restores the alerts resolved within the repeat interval (after
// a restart), so that a re-fire still continues them.
func (l *Lifecycle) SetRecent(resolved []*Alert) {
	for _, a := range resolved {
		if !a.LastSentAt.IsZero() && l.open[a.Key()] == nil {
			l.recent[a.Key()] = a
		}
	}
}

// IsOpen reports whether rule has an open alert for merchant.
func (l *Lifecycle) IsOpen(rule string, merchant int64) bool {
	return l.open[Key{Rule: rule, Merchant: merchant}] != nil
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
// never when acknowledged (at its priority) or silenced; at once when it
// was never notified (it fired while silenced); else once the repeat
// interval has passed.
func (l *Lifecycle) shouldResend(a *Alert, end time.Time, silenced bool) (string, bool) {
	if a.Ack != nil && a.Ack.covers(a.Priority) || silenced {
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
// priority is the evaluation's (0 when it does not fire); silenced says
// whether an operator's silence covers the alert now.
func (l *Lifecycle) Eval(m window.Minute, rule string, merchant int64, fires bool, priority rules.Priority, values map[string]any, silenced bool) *Change {
	k := Key{Rule: rule, Merchant: merchant}
	a := l.open[k]
	if a == nil && !fires {
		return nil
	}
	end := m.End()
	ch := &Change{Minute: m, Fires: fires, Values: values}
	notify := func(kind string, p rules.Priority) {
		// A re-fire soon after a page is not a page again, unless it is
		// more urgent than what was paged.
		if p == rules.P1 && a.ContinuesNotified == rules.P1 {
			p = rules.P2
		}
		ch.Notify, ch.NotifyPriority = kind, p
		a.LastSentAt = end
		if a.Notified == 0 || p < a.Notified {
			a.Notified = p
		}
	}
	switch {
	case a == nil:
		a = &Alert{Rule: rule, Merchant: merchant, State: Firing, ActiveAt: m.Start(), Values: maps.Clone(values), Priority: priority}
		if prev := l.recent[k]; prev != nil && end.Sub(prev.LastSentAt) < l.opts.RepeatInterval {
			// The chain's most urgent notification: a page three flaps
			// back still counts.
			a.Continues, a.ContinuesNotified = prev.ID, prev.Notified
			if c := prev.ContinuesNotified; c != 0 && (a.ContinuesNotified == 0 || c < a.ContinuesNotified) {
				a.ContinuesNotified = c
			}
		}
		delete(l.recent, k)
		l.open[k] = a
		ch.New, ch.Transition = true, Firing
		if !silenced {
			kind := NotifyFiring
			if a.Continues != 0 {
				kind = NotifyContinued
			}
			notify(kind, priority)
		}
	case fires:
		a.FalseCount = 0
		a.Values = maps.Clone(values)
		switch {
		case priority == 0:
		case a.Priority == 0:
			// Opened before alerts had priorities (an upgraded sink): it
			// takes its first one without a notification.
			a.Priority = priority
		case priority < a.Priority:
			ch.Escalated, ch.PrevPriority, a.Priority = true, a.Priority, priority
			// The ack covered the lower priority; a silence still holds.
			if !silenced && (a.Ack == nil || !a.Ack.covers(priority)) {
				notify(NotifyEscalated, priority)
			}
		}
		if ch.Notify != "" {
			break
		}
		if kind, ok := l.shouldResend(a, end, silenced); ok {
			notify(kind, a.Priority)
		}
	default:
		if a.Priority == 0 {
			// Opened before priorities and no longer holding: recorded
			// and shown, it resolves without paging anyone.
			a.Priority = rules.P3
		}
		a.FalseCount++
		if a.FalseCount >= l.opts.ResolveAfter {
			a.State, a.ResolvedAt = Resolved, m.Start()
			ch.Transition = Resolved
			delete(l.open, k)
			// Close the loop with every receiver that heard it fire,
			// silenced or acknowledged since or not.
			// (An alert notified before priorities existed has Notified 0,
			// which every receiver takes.)
			if a.Notified != 0 || !a.LastSentAt.IsZero() {
				ch.Notify, ch.NotifyPriority = NotifyResolved, a.Notified
				a.LastSentAt = end
				l.recent[k] = a
			}
		}
	}
	a.LastEvalAt = m.Start()
	ch.Alert, ch.After = a, *a
	return ch
}

// Forget drops resolved alerts that a re-fire at or after now could no
// longer continue.
func (l *Lifecycle) Forget(now time.Time) {
	for k, a := range l.recent {
		if now.Sub(a.LastSentAt) >= l.opts.RepeatInterval {
			delete(l.recent, k)
		}
	}
}
