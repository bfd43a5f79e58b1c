package window

import (
	"math"
	"reflect"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func us(s string) int64 { return at(s).UnixMicro() }

func TestMinuteOf(t *testing.T) {
	tests := []struct {
		name, in, start string
	}{
		// SPEC §3: 17:01 holds 17:01:00–17:01:59.999.
		{"first instant", "2026-11-25T17:01:00Z", "2026-11-25T17:01:00Z"},
		{"last microsecond", "2026-11-25T17:01:59.999999Z", "2026-11-25T17:01:00Z"},
		{"next minute", "2026-11-25T17:02:00Z", "2026-11-25T17:02:00Z"},
		{"zone offset ignored", "2026-11-26T02:01:30+09:00", "2026-11-25T17:01:00Z"},
		{"before epoch floors", "1969-12-31T23:59:59.5Z", "1969-12-31T23:59:00Z"},
		{"epoch", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := MinuteOf(at(tc.in))
			if got := m.Start(); !got.Equal(at(tc.start)) {
				t.Fatalf("MinuteOf(%s).Start() = %s, want %s", tc.in, got, tc.start)
			}
			if got := m.End().Sub(m.Start()); got != time.Minute {
				t.Fatalf("minute length %s", got)
			}
			if m.String() != at(tc.start).UTC().Format(time.RFC3339) {
				t.Fatalf("String() = %s", m.String())
			}
		})
	}
}

func TestAdvanceClosesByProgressAndGrace(t *testing.T) {
	m1700 := MinuteOf(at("2026-11-25T17:00:00Z"))
	tests := []struct {
		name      string
		grace     time.Duration
		progress  string
		wantOK    bool
		wantFirst Minute
		wantLast  Minute
	}{
		// Minute 17:00 ends at 17:01:00; with grace 1s it closes at 17:01:01.
		{"just before end+grace", time.Second, "2026-11-25T17:01:00.999999Z", false, 0, 0},
		{"exactly end+grace", time.Second, "2026-11-25T17:01:01Z", true, m1700, m1700},
		{"zero grace at end", 0, "2026-11-25T17:01:00Z", true, m1700, m1700},
		{"zero grace just before end", 0, "2026-11-25T17:00:59.999999Z", false, 0, 0},
		// An idle gap closes every minute in between at once.
		{"gap of three minutes", time.Second, "2026-11-25T17:03:01Z", true, m1700, m1700 + 2},
		{"grace 30s", 30 * time.Second, "2026-11-25T17:01:30Z", true, m1700, m1700},
		{"grace 30s not yet", 30 * time.Second, "2026-11-25T17:01:29.9Z", false, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := New(tc.grace, m1700-1)
			first, last, ok := w.Advance(us(tc.progress))
			if ok != tc.wantOK || first != tc.wantFirst || last != tc.wantLast {
				t.Fatalf("Advance(%s) = (%s, %s, %v), want (%s, %s, %v)", tc.progress, first, last, ok, tc.wantFirst, tc.wantLast, tc.wantOK)
			}
			wantClosed := m1700 - 1
			if ok {
				wantClosed = tc.wantLast
			}
			if w.LastClosed() != wantClosed {
				t.Fatalf("LastClosed = %s, want %s", w.LastClosed(), wantClosed)
			}
		})
	}
}

func TestAdvanceNeverMovesBack(t *testing.T) {
	m := MinuteOf(at("2026-11-25T17:00:00Z"))
	w := New(time.Second, m)
	if _, _, ok := w.Advance(us("2026-11-25T16:00:00Z")); ok {
		t.Fatal("older progress closed a minute")
	}
	if w.LastClosed() != m {
		t.Fatalf("LastClosed moved to %s", w.LastClosed())
	}
	// Repeating the same progress closes nothing twice.
	if _, _, ok := w.Advance(us("2026-11-25T17:02:01Z")); !ok {
		t.Fatal("expected 17:01 to close")
	}
	if _, _, ok := w.Advance(us("2026-11-25T17:02:01Z")); ok {
		t.Fatal("same progress closed again")
	}
}

func TestLateEvents(t *testing.T) {
	closed := MinuteOf(at("2026-11-25T17:00:00Z"))
	tests := []struct {
		name string
		at   string
		late bool
	}{
		{"in the closed minute", "2026-11-25T17:00:59.999999Z", true},
		{"older minute", "2026-11-25T16:10:00Z", true},
		{"first open minute", "2026-11-25T17:01:00Z", false},
		{"future minute", "2026-11-25T17:04:00Z", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := New(time.Second, closed)
			if got, ok := w.AddApproval(7, us(tc.at), 100); got != tc.late || !ok {
				t.Fatalf("AddApproval late = %v, want %v", got, tc.late)
			}
			if got, ok := w.AddCancel(7, us(tc.at), 100); got != tc.late || !ok {
				t.Fatalf("AddCancel late = %v, want %v", got, tc.late)
			}
		})
	}
}

func TestDrainSumsPerMerchantMinuteInOrder(t *testing.T) {
	w := New(time.Second, 0)
	// Merchant 2: two approvals and a partial cancel in 17:00, one approval in 17:01.
	w.AddApproval(2, us("2026-11-25T17:00:01Z"), 10_000)
	w.AddApproval(2, us("2026-11-25T17:00:59Z"), 25_000)
	w.AddCancel(2, us("2026-11-25T17:00:30Z"), 4_000)
	w.AddApproval(2, us("2026-11-25T17:01:00Z"), 1)
	// Merchant 1: a cancellation only.
	w.AddCancel(1, us("2026-11-25T17:05:00Z"), 9_999_999_999)
	if w.PendingEvents() != 5 || w.PendingKeys() != 3 {
		t.Fatalf("pending = %d events, %d keys; want 5, 3", w.PendingEvents(), w.PendingKeys())
	}
	got := w.Drain()
	m := func(s string) Minute { return MinuteOf(at(s)) }
	want := []Delta{
		{Key{1, m("2026-11-25T17:05:00Z")}, Agg{Cancels: 1, CanceledAmount: 9_999_999_999}},
		{Key{2, m("2026-11-25T17:00:00Z")}, Agg{Approvals: 2, ApprovedAmount: 35_000, Cancels: 1, CanceledAmount: 4_000}},
		{Key{2, m("2026-11-25T17:01:00Z")}, Agg{Approvals: 1, ApprovedAmount: 1}},
	}
	if len(got) != len(want) {
		t.Fatalf("Drain() = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Drain()[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if w.PendingEvents() != 0 || w.PendingKeys() != 0 || len(w.Drain()) != 0 {
		t.Fatal("Drain did not reset the window")
	}
}

func TestCalendarSeoulDayBoundary(t *testing.T) {
	seoul, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		loc      *time.Location
		minute   string
		wantDay  string
		wantHour string
	}{
		// 14:59 UTC is 23:59 in Seoul: still the 25th there.
		{"seoul last minute of day", seoul, "2026-11-25T14:59:00Z", "2026-11-25", "2026-11-25T14:00:00Z"},
		// 15:00 UTC is 00:00 on the 26th in Seoul.
		{"seoul first minute of next day", seoul, "2026-11-25T15:00:00Z", "2026-11-26", "2026-11-25T15:00:00Z"},
		{"utc", time.UTC, "2026-11-25T15:00:00Z", "2026-11-25", "2026-11-25T15:00:00Z"},
		// India is UTC+5:30: its hours start at :30 UTC.
		{"kolkata half-hour offset", kolkata, "2026-11-25T15:10:00Z", "2026-11-25", "2026-11-25T14:30:00Z"},
		{"kolkata midnight", kolkata, "2026-11-25T18:30:00Z", "2026-11-26", "2026-11-25T18:30:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCalendar(tc.loc)
			m := MinuteOf(at(tc.minute))
			if got := c.Day(m).Format(time.DateOnly); got != tc.wantDay {
				t.Fatalf("Day = %s, want %s", got, tc.wantDay)
			}
			if got := c.Hour(m); !got.Equal(at(tc.wantHour)) {
				t.Fatalf("Hour = %s, want %s", got.UTC(), tc.wantHour)
			}
		})
	}
}

// TestClosingIsExhaustive walks every progress instant on a 250 ms grid over
// ten minutes for several graces and checks the closing rule from its
// definition: M is closed iff End(M)+grace <= progress.
func TestClosingIsExhaustive(t *testing.T) {
	base := at("2026-11-25T23:55:00Z")
	for _, grace := range []time.Duration{0, 250 * time.Millisecond, time.Second, 59 * time.Second} {
		w := New(grace, MinuteOf(base)-1)
		for p := base; p.Before(base.Add(10 * time.Minute)); p = p.Add(250 * time.Millisecond) {
			w.Advance(p.UnixMicro())
			for m := MinuteOf(base) - 1; m <= MinuteOf(base)+11; m++ {
				want := !m.End().Add(grace).After(p) || m == MinuteOf(base)-1
				got := m <= w.LastClosed()
				if got != want {
					t.Fatalf("grace %s progress %s minute %s: closed=%v want %v", grace, p.Format(time.RFC3339Nano), m, got, want)
				}
			}
		}
	}
}

func TestSatAdd(t *testing.T) {
	const max, min = math.MaxInt64, math.MinInt64
	tests := []struct {
		a, b, want int64
		over       bool
	}{
		{1, 2, 3, false},
		{max - 1, 1, max, false},
		{max, 1, max, true},
		{max, max, max, true},
		{min + 1, -1, min, false},
		{min, -1, min, true},
		{max, min, -1, false},
		{0, 0, 0, false},
	}
	for _, tt := range tests {
		got, over := SatAdd(tt.a, tt.b)
		if got != tt.want || over != tt.over {
			t.Errorf("SatAdd(%d, %d) = %d, %v; want %d, %v", tt.a, tt.b, got, over, tt.want, tt.over)
		}
	}
}

// TestAddOverflow: an event that would take its pending minute past int64
// is refused whole, and the minute keeps what it had.
func TestAddOverflow(t *testing.T) {
	w := New(time.Second, 0)
	at := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC).UnixMicro()
	if _, ok := w.AddApproval(1, at, math.MaxInt64-10); !ok {
		t.Fatal("first approval refused")
	}
	if _, ok := w.AddApproval(1, at, 11); ok {
		t.Fatal("approval past int64 accepted")
	}
	if _, ok := w.AddApproval(1, at, 10); !ok {
		t.Fatal("approval reaching exactly int64's maximum refused")
	}
	if _, ok := w.AddCancel(1, at, 1); !ok {
		t.Fatal("a cancel has its own sum")
	}
	if _, ok := w.AddApproval(2, at, 11); !ok {
		t.Fatal("another merchant's minute refused")
	}
	got := w.Drain()
	want := []Delta{
		{Key{1, MinuteOfMicros(at)}, Agg{Approvals: 2, ApprovedAmount: math.MaxInt64, Cancels: 1, CanceledAmount: 1}},
		{Key{2, MinuteOfMicros(at)}, Agg{Approvals: 1, ApprovedAmount: 11}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Drain = %+v, want %+v", got, want)
	}
	if w.PendingEvents() != 0 {
		t.Error("events left after Drain")
	}
}

// PendingKeys is the number of distinct merchant-minutes since the last Drain.
func (w *Window) PendingKeys() int { return len(w.pending) }
