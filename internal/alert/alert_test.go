package alert

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/window"
)

var t0 = window.MinuteOf(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))

type step struct {
	at       window.Minute
	fires    bool
	prio     rules.Priority // the evaluation's priority; P2 when it fires and none is given
	silenced bool
	ack      bool // acknowledge before this evaluation, at the alert's priority
	// expected
	transition State
	notify     string
	notifyPrio rules.Priority // checked when not 0
	escalated  bool
	open       bool
}

func run(t *testing.T, opts Options, steps []step) {
	t.Helper()
	l := New(opts, nil)
	var id int64
	for i, s := range steps {
		if s.ack {
			open := l.Open("")
			if len(open) != 1 {
				t.Fatalf("step %d: nothing to acknowledge", i)
			}
			l.SetAcks(map[int64]Ack{id: {By: "kim", At: s.at.Start(), Comment: "calling the merchant", Priority: open[0].Priority}})
		}
		prio := s.prio
		if s.fires && prio == 0 {
			prio = rules.P2
		}
		if !s.fires {
			prio = 0
		}
		ch := l.Eval(s.at, "cancel_rate_spike", 42, s.fires, prio, map[string]any{"c_h": i}, s.silenced)
		var tr State
		var notify string
		var escalated bool
		if ch != nil {
			tr, notify, escalated = ch.Transition, ch.Notify, ch.Escalated
			if ch.New {
				id++
				ch.Alert.ID = id // as the sink would
			}
		}
		if tr != s.transition || notify != s.notify || escalated != s.escalated {
			t.Fatalf("step %d (%s, fires=%v %v): transition %v notify %q escalated %v, want %v %q %v",
				i, s.at, s.fires, prio, tr, notify, escalated, s.transition, s.notify, s.escalated)
		}
		if s.notifyPrio != 0 && ch.NotifyPriority != s.notifyPrio {
			t.Fatalf("step %d: notified at %v, want %v", i, ch.NotifyPriority, s.notifyPrio)
		}
		if got := len(l.Open("")) == 1; got != s.open {
			t.Fatalf("step %d: open = %v, want %v", i, got, s.open)
		}
	}
}

func TestLifecycle(t *testing.T) {
	opts := Options{RepeatInterval: 4 * time.Hour, ResolveAfter: 5}
	tests := []struct {
		name  string
		steps []step
	}{
		{"no alert while false", []step{{at: t0}, {at: t0 + 1}}},
		{"fires, holds, resolves after 5 false", []step{
			{at: t0, fires: true, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 1, fires: true, open: true},
			{at: t0 + 2, open: true}, {at: t0 + 3, open: true}, {at: t0 + 4, open: true}, {at: t0 + 5, open: true},
			{at: t0 + 6, transition: Resolved, notify: NotifyResolved},
		}},
		{"a true evaluation resets the false count", []step{
			{at: t0, fires: true, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 1, open: true}, {at: t0 + 2, open: true}, {at: t0 + 3, open: true}, {at: t0 + 4, open: true},
			{at: t0 + 5, fires: true, open: true},
			{at: t0 + 6, open: true}, {at: t0 + 7, open: true}, {at: t0 + 8, open: true}, {at: t0 + 9, open: true},
			{at: t0 + 10, transition: Resolved, notify: NotifyResolved},
		}},
		// First notified at the end of t0 (09:01). 4h later is 13:01, the
		// end of minute 13:00 = t0+240: repeat there, not at t0+239.
		{"repeat interval", []step{
			{at: t0, fires: true, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 239, fires: true, open: true},
			{at: t0 + 240, fires: true, notify: NotifyRepeat, open: true},
			{at: t0 + 479, fires: true, open: true},
			{at: t0 + 480, fires: true, notify: NotifyRepeat, open: true},
		}},
		{"ack stops repeats but the alert stays open and still resolves", []step{
			{at: t0, fires: true, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 10, fires: true, ack: true, open: true},
			{at: t0 + 240, fires: true, open: true},
			{at: t0 + 600, fires: true, open: true},
			{at: t0 + 601, open: true}, {at: t0 + 602, open: true}, {at: t0 + 603, open: true}, {at: t0 + 604, open: true},
			{at: t0 + 605, transition: Resolved, notify: NotifyResolved},
		}},
		{"re-fire soon after resolve is a new alert, notified as a continuation", []step{
			{at: t0, fires: true, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 1, open: true}, {at: t0 + 2, open: true}, {at: t0 + 3, open: true}, {at: t0 + 4, open: true},
			{at: t0 + 5, transition: Resolved, notify: NotifyResolved},
			{at: t0 + 6},
			{at: t0 + 7, fires: true, transition: Firing, notify: NotifyContinued, open: true},
		}},
		// The resolve was notified at the end of t0+5 (09:06); 4h later is
		// 13:06, the end of t0+245.
		{"re-fire a repeat interval after the last notification is a new page", []step{
			{at: t0, fires: true, prio: rules.P1, transition: Firing, notify: NotifyFiring, notifyPrio: rules.P1, open: true},
			{at: t0 + 1, open: true}, {at: t0 + 2, open: true}, {at: t0 + 3, open: true}, {at: t0 + 4, open: true},
			{at: t0 + 5, transition: Resolved, notify: NotifyResolved, notifyPrio: rules.P1},
			{at: t0 + 244, fires: true, prio: rules.P1, transition: Firing, notify: NotifyContinued, notifyPrio: rules.P2, open: true},
			{at: t0 + 245, open: true}, {at: t0 + 246, open: true}, {at: t0 + 247, open: true}, {at: t0 + 248, open: true},
			{at: t0 + 249, transition: Resolved, notify: NotifyResolved, notifyPrio: rules.P2},
			{at: t0 + 249 + 240, fires: true, prio: rules.P1, transition: Firing, notify: NotifyFiring, notifyPrio: rules.P1, open: true},
		}},
		{"flapping pages once: continuations of a page are routed as P2", []step{
			{at: t0, fires: true, prio: rules.P1, transition: Firing, notify: NotifyFiring, notifyPrio: rules.P1, open: true},
			{at: t0 + 1, open: true}, {at: t0 + 2, open: true}, {at: t0 + 3, open: true}, {at: t0 + 4, open: true},
			{at: t0 + 5, transition: Resolved, notify: NotifyResolved, notifyPrio: rules.P1},
			{at: t0 + 9, fires: true, prio: rules.P1, transition: Firing, notify: NotifyContinued, notifyPrio: rules.P2, open: true},
			{at: t0 + 10, open: true}, {at: t0 + 11, open: true}, {at: t0 + 12, open: true}, {at: t0 + 13, open: true},
			{at: t0 + 14, transition: Resolved, notify: NotifyResolved, notifyPrio: rules.P2},
			{at: t0 + 15, fires: true, prio: rules.P1, transition: Firing, notify: NotifyContinued, notifyPrio: rules.P2, open: true},
		}},
		{"a continuation more urgent than what was told before pages", []step{
			{at: t0, fires: true, prio: rules.P3, transition: Firing, notify: NotifyFiring, notifyPrio: rules.P3, open: true},
			{at: t0 + 1, open: true}, {at: t0 + 2, open: true}, {at: t0 + 3, open: true}, {at: t0 + 4, open: true},
			{at: t0 + 5, transition: Resolved, notify: NotifyResolved, notifyPrio: rules.P3},
			{at: t0 + 9, fires: true, prio: rules.P1, transition: Firing, notify: NotifyContinued, notifyPrio: rules.P1, open: true},
		}},
		{"escalates P3 → P2 → P1, each notified; never back while open", []step{
			{at: t0, fires: true, prio: rules.P3, transition: Firing, notify: NotifyFiring, notifyPrio: rules.P3, open: true},
			{at: t0 + 1, fires: true, prio: rules.P3, open: true},
			{at: t0 + 2, fires: true, prio: rules.P2, escalated: true, notify: NotifyEscalated, notifyPrio: rules.P2, open: true},
			{at: t0 + 3, fires: true, prio: rules.P1, escalated: true, notify: NotifyEscalated, notifyPrio: rules.P1, open: true},
			{at: t0 + 4, fires: true, prio: rules.P3, open: true},
			{at: t0 + 5, fires: true, prio: rules.P1, open: true},
			{at: t0 + 6, open: true}, {at: t0 + 7, open: true}, {at: t0 + 8, open: true}, {at: t0 + 9, open: true},
			{at: t0 + 10, transition: Resolved, notify: NotifyResolved, notifyPrio: rules.P1},
		}},
		{"the repeat of an escalated alert goes where the escalation went", []step{
			{at: t0, fires: true, prio: rules.P2, transition: Firing, notify: NotifyFiring, notifyPrio: rules.P2, open: true},
			{at: t0 + 100, fires: true, prio: rules.P1, escalated: true, notify: NotifyEscalated, notifyPrio: rules.P1, open: true},
			{at: t0 + 339, fires: true, prio: rules.P3, open: true},
			{at: t0 + 340, fires: true, prio: rules.P3, notify: NotifyRepeat, notifyPrio: rules.P1, open: true},
		}},
		{"an ack covers its priority, not an escalation past it", []step{
			{at: t0, fires: true, prio: rules.P3, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 1, fires: true, prio: rules.P3, ack: true, open: true},
			{at: t0 + 241, fires: true, prio: rules.P3, open: true},
			{at: t0 + 242, fires: true, prio: rules.P2, escalated: true, notify: NotifyEscalated, notifyPrio: rules.P2, open: true},
			// Not acknowledged at P2: the repeat interval runs again.
			{at: t0 + 482, fires: true, prio: rules.P2, notify: NotifyRepeat, open: true},
			{at: t0 + 483, fires: true, prio: rules.P2, ack: true, open: true},
			{at: t0 + 800, fires: true, prio: rules.P2, open: true},
		}},
		{"an ack at P1 covers everything", []step{
			{at: t0, fires: true, prio: rules.P1, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 1, fires: true, prio: rules.P1, ack: true, open: true},
			{at: t0 + 500, fires: true, prio: rules.P1, open: true},
		}},
		{"a silenced escalation is recorded, not notified", []step{
			{at: t0, fires: true, prio: rules.P3, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 1, fires: true, prio: rules.P1, silenced: true, escalated: true, open: true},
			// Told at the next repeat after the silence, at P1.
			{at: t0 + 240, fires: true, prio: rules.P1, notify: NotifyRepeat, notifyPrio: rules.P1, open: true},
		}},
		{"silenced: recorded, not notified; notified once the silence ends", []step{
			{at: t0, fires: true, silenced: true, transition: Firing, open: true},
			{at: t0 + 1, fires: true, silenced: true, open: true},
			{at: t0 + 2, fires: true, notify: NotifyFiring, open: true},
			{at: t0 + 3, fires: true, open: true},
		}},
		{"silenced throughout: resolves without any notification", []step{
			{at: t0, fires: true, silenced: true, transition: Firing, open: true},
			{at: t0 + 1, silenced: true, open: true}, {at: t0 + 2, silenced: true, open: true},
			{at: t0 + 3, silenced: true, open: true}, {at: t0 + 4, silenced: true, open: true},
			{at: t0 + 5, silenced: true, transition: Resolved},
		}},
		{"silenced after firing was sent: the resolve still closes the loop", []step{
			{at: t0, fires: true, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 1, fires: true, silenced: true, open: true},
			{at: t0 + 300, fires: true, silenced: true, open: true},
			{at: t0 + 301, silenced: true, open: true}, {at: t0 + 302, silenced: true, open: true},
			{at: t0 + 303, silenced: true, open: true}, {at: t0 + 304, silenced: true, open: true},
			{at: t0 + 305, silenced: true, transition: Resolved, notify: NotifyResolved},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { run(t, opts, tc.steps) })
	}
	t.Run("resolve_after 1", func(t *testing.T) {
		run(t, Options{RepeatInterval: time.Hour, ResolveAfter: 1}, []step{
			{at: t0, fires: true, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 1, transition: Resolved, notify: NotifyResolved},
		})
	})
}

func TestRestoredAlertIsNotNewAgain(t *testing.T) {
	// After a restart the open alert comes back from the sink: a still-true
	// evaluation must not notify it as new.
	restored := &Alert{ID: 7, Rule: "volume_drop", Merchant: 9, State: Firing, ActiveAt: t0.Start(),
		LastEvalAt: (t0 + 3).Start(), LastSentAt: t0.End()}
	l := New(Options{RepeatInterval: 4 * time.Hour, ResolveAfter: 5}, []*Alert{restored})
	ch := l.Eval(t0+4, "volume_drop", 9, true, rules.P1, nil, false)
	if ch == nil || ch.New || ch.Transition != 0 || ch.Notify != "" || ch.Alert.ID != 7 {
		t.Fatalf("change = %+v", ch)
	}
	// It was opened before alerts had priorities: it takes its first one
	// silently, and escalates from there.
	if ch.Escalated || ch.After.Priority != rules.P1 {
		t.Fatalf("pre-priority alert: escalated %v priority %v, want a silent P1", ch.Escalated, ch.After.Priority)
	}
	// One that no longer holds gets P3, silently, and its resolve still
	// goes to every receiver (it was told to all before the upgrade).
	old := &Alert{ID: 8, Rule: "cancel_rate_spike", Merchant: 9, State: Firing, ActiveAt: t0.Start(), LastSentAt: t0.End()}
	l2 := New(Options{RepeatInterval: 4 * time.Hour, ResolveAfter: 2}, []*Alert{old})
	if ch := l2.Eval(t0+4, "cancel_rate_spike", 9, false, 0, nil, false); ch.Notify != "" || ch.After.Priority != rules.P3 {
		t.Fatalf("first false evaluation after the upgrade: %+v", ch)
	}
	if ch := l2.Eval(t0+5, "cancel_rate_spike", 9, false, 0, nil, false); ch.Notify != NotifyResolved || ch.NotifyPriority != 0 {
		t.Fatalf("its resolve: notify %q at %v, want resolved to every receiver", ch.Notify, ch.NotifyPriority)
	}
	if got := l.OpenMerchants("volume_drop"); len(got) != 1 || got[0] != 9 {
		t.Fatalf("open merchants = %v", got)
	}
	if got := l.OpenMerchants("cancel_rate_spike"); len(got) != 0 {
		t.Fatalf("open merchants of the other rule = %v", got)
	}
}

func TestStateNames(t *testing.T) {
	for _, s := range []State{Firing, Resolved} {
		back, err := ParseState(s.String())
		if err != nil || back != s {
			t.Fatalf("%v round trip: %v %v", s, back, err)
		}
	}
	if _, err := ParseState("pending"); err == nil {
		t.Fatal("ParseState accepted pending")
	}
}

// Open returns the open alerts of a rule (all rules when rule is ""),
// ordered by merchant.
func (l *Lifecycle) Open(rule string) []*Alert {
	var out []*Alert
	for _, a := range l.open {
		if rule == "" || a.Rule == rule {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b *Alert) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Merchant, b.Merchant))
	})
	return out
}
