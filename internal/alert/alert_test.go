package alert

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/window"
)

var t0 = window.MinuteOf(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))

type step struct {
	at       window.Minute
	fires    bool
	silenced bool
	ack      bool // acknowledge before this evaluation
	// expected
	transition State
	notify     string
	open       bool
}

func run(t *testing.T, opts Options, steps []step) {
	t.Helper()
	l := New(opts, nil)
	var id int64
	for i, s := range steps {
		if s.ack {
			l.SetAcks(map[int64]Ack{id: {By: "kim", At: s.at.Start(), Comment: "calling the merchant"}})
		}
		ch := l.Eval(s.at, "cancel_rate_spike", 42, s.fires, map[string]any{"c_h": i}, s.silenced)
		var tr State
		var notify string
		if ch != nil {
			tr, notify = ch.Transition, ch.Notify
			if ch.New {
				id++
				ch.Alert.ID = id // as the sink would
			}
		}
		if tr != s.transition || notify != s.notify {
			t.Fatalf("step %d (%s, fires=%v): transition %v notify %q, want %v %q", i, s.at, s.fires, tr, notify, s.transition, s.notify)
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
		{"re-fire after resolve is a new alert, notified again", []step{
			{at: t0, fires: true, transition: Firing, notify: NotifyFiring, open: true},
			{at: t0 + 1, open: true}, {at: t0 + 2, open: true}, {at: t0 + 3, open: true}, {at: t0 + 4, open: true},
			{at: t0 + 5, transition: Resolved, notify: NotifyResolved},
			{at: t0 + 6},
			{at: t0 + 7, fires: true, transition: Firing, notify: NotifyFiring, open: true},
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
	ch := l.Eval(t0+4, "volume_drop", 9, true, nil, false)
	if ch == nil || ch.New || ch.Transition != 0 || ch.Notify != "" || ch.Alert.ID != 7 {
		t.Fatalf("change = %+v", ch)
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
