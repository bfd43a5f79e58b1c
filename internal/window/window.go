// Package window buckets events into per-merchant minutes of transaction
// time and decides when a minute is closed. It does no I/O: the pipeline feeds
// it events in commit order and the source's progress (commit timestamps), and
// drains the pending per-minute deltas into the sink.
package window

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Minute is a minute bucket [start, start+1m), counted in whole minutes since
// the Unix epoch (UTC). An int64 keeps map keys small and arithmetic exact.
type Minute int64

const usPerMinute = int64(60_000_000)

// MinuteOf returns the bucket holding t.
func MinuteOf(t time.Time) Minute { return MinuteOfMicros(t.UnixMicro()) }

// MinuteOfMicros returns the bucket holding the instant us (Unix microseconds).
// It floors, so instants before 1970 land in the right bucket too.
func MinuteOfMicros(us int64) Minute {
	m := us / usPerMinute
	if us%usPerMinute < 0 {
		m--
	}
	return Minute(m)
}

// Start is the first instant of the minute, in UTC.
func (m Minute) Start() time.Time { return time.UnixMicro(int64(m) * usPerMinute).UTC() }

// End is the first instant after the minute (exclusive bound), in UTC.
func (m Minute) End() time.Time { return (m + 1).Start() }

// String formats the minute's start in RFC 3339, UTC.
func (m Minute) String() string { return m.Start().Format(time.RFC3339) }

// Agg is what is counted per merchant and minute. Money is integer KRW.
type Agg struct {
	Approvals      int64
	ApprovedAmount int64
	Cancels        int64
	CanceledAmount int64
}

// Add adds b into a and reports whether every sum fit in int64. A sum that
// did not stops at the int64 bound it passed instead of wrapping; callers
// that store sums refuse the addition instead.
func (a *Agg) Add(b Agg) (ok bool) {
	var o1, o2, o3, o4 bool
	a.Approvals, o1 = SatAdd(a.Approvals, b.Approvals)
	a.ApprovedAmount, o2 = SatAdd(a.ApprovedAmount, b.ApprovedAmount)
	a.Cancels, o3 = SatAdd(a.Cancels, b.Cancels)
	a.CanceledAmount, o4 = SatAdd(a.CanceledAmount, b.CanceledAmount)
	return !(o1 || o2 || o3 || o4)
}

// SatAdd is a+b, or the int64 bound it passed; overflowed reports that.
func SatAdd(a, b int64) (sum int64, overflowed bool) {
	sum = a + b
	switch {
	case b > 0 && sum < a:
		return math.MaxInt64, true
	case b < 0 && sum > a:
		return math.MinInt64, true
	}
	return sum, false
}

// IsZero reports whether nothing was counted.
func (a Agg) IsZero() bool { return a == Agg{} }

// Key identifies one merchant's minute.
type Key struct {
	Merchant int64
	Minute   Minute
}

// Delta is an increment to one stored minute aggregate.
type Delta struct {
	Key
	Agg
}

// Window holds the deltas not yet written to the sink and the closing state.
//
// A minute M closes once the source has progressed (every change committed up
// to that instant applied) to End(M)+grace. An event whose minute is already
// closed is late: it is still counted, and the caller is told so.
type Window struct {
	graceUS    int64
	lastClosed Minute
	pending    map[Key]Agg
	events     int
}

// New returns a window whose minutes up to and including lastClosed are
// already closed (restored from the sink's checkpoint).
func New(grace time.Duration, lastClosed Minute) *Window {
	return &Window{graceUS: grace.Microseconds(), lastClosed: lastClosed, pending: make(map[Key]Agg)}
}

// LastClosed is the newest closed minute.
func (w *Window) LastClosed() Minute { return w.lastClosed }

// AddApproval counts one approval of amount at time us (Unix microseconds)
// and reports whether it was late. ok is false, and nothing is counted,
// when the merchant's pending minute would pass int64.
func (w *Window) AddApproval(merchant, us, amount int64) (late, ok bool) {
	return w.add(merchant, us, Agg{Approvals: 1, ApprovedAmount: amount})
}

// AddCancel is AddApproval for one cancellation.
func (w *Window) AddCancel(merchant, us, amount int64) (late, ok bool) {
	return w.add(merchant, us, Agg{Cancels: 1, CanceledAmount: amount})
}

func (w *Window) add(merchant, us int64, d Agg) (late, ok bool) {
	k := Key{Merchant: merchant, Minute: MinuteOfMicros(us)}
	a := w.pending[k]
	if !a.Add(d) {
		return false, false
	}
	w.pending[k] = a
	w.events++
	return k.Minute <= w.lastClosed, true
}

// PendingEvents is the number of events added since the last Drain.
func (w *Window) PendingEvents() int { return w.events }

// Drain returns the pending deltas sorted by merchant then minute (a stable
// order keeps the sink's row locks in one order) and forgets them.
func (w *Window) Drain() []Delta {
	out := make([]Delta, 0, len(w.pending))
	for k, a := range w.pending {
		out = append(out, Delta{Key: k, Agg: a})
	}
	slices.SortFunc(out, func(a, b Delta) int {
		return cmp.Or(cmp.Compare(a.Merchant, b.Merchant), cmp.Compare(a.Minute, b.Minute))
	})
	clear(w.pending)
	w.events = 0
	return out
}

// ClosableThrough is the newest minute that is closed once the source has
// progressed to us (Unix microseconds): the last M with End(M)+grace <= us.
func (w *Window) ClosableThrough(us int64) Minute {
	return MinuteOfMicros(us-w.graceUS) - 1
}

// Advance records that every change committed up to us has been applied and
// closes the minutes that this completes. It returns the closed range
// [first, last]; ok is false when no minute closed. Progress never moves the
// closing backwards.
func (w *Window) Advance(us int64) (first, last Minute, ok bool) {
	target := w.ClosableThrough(us)
	if target <= w.lastClosed {
		return 0, 0, false
	}
	first = w.lastClosed + 1
	w.lastClosed = target
	return first, target, true
}

// Calendar places a minute in the business time zone's hours and days, for
// the sink's rollups.
type Calendar struct {
	loc *time.Location
}

// NewCalendar returns a calendar for the business time zone.
func NewCalendar(loc *time.Location) Calendar { return Calendar{loc: loc} }

// Location is the business time zone.
func (c Calendar) Location() *time.Location { return c.loc }

// Hour returns the start of the business-time-zone hour holding m (as an
// instant; UTC and Asia/Seoul hours coincide, India's do not).
func (c Calendar) Hour(m Minute) time.Time {
	t := m.Start().In(c.loc)
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, c.loc)
}

// DayStart returns the first minute of the business day holding m: its
// midnight in the business time zone (or the first minute after it, where
// a clock change skips midnight).
func (c Calendar) DayStart(m Minute) Minute {
	t := m.Start().In(c.loc)
	return MinuteOf(time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, c.loc))
}

// Day returns the business day holding m as a date at 00:00 UTC (the sink
// stores it as a DATE, which has no zone).
func (c Calendar) Day(m Minute) time.Time {
	t := m.Start().In(c.loc)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
