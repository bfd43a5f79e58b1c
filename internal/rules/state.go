package rules

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/riskwatch/riskwatch/internal/window"
)

// Window lengths in minutes. H is the hour ending with the evaluated minute M
// (M−59…M); B is the 7 days immediately before it (M−10139…M−60). Recent is
// the three hours ending with M, whose approvals explain the cancels of a
// sale that just ended.
const (
	HourMinutes     = 60
	BaselineMinutes = 7 * 24 * 60
	RecentMinutes   = 3 * HourMinutes
	// MaxExposureMinutes bounds the exposure window: its minutes must lie
	// in H and B, which the state holds.
	MaxExposureMinutes = BaselineMinutes
)

// LeavingMinute is the minute that leaves B when m closes. B(m−1) ends with
// m−61 and B(m) with m−60, so the minute that falls off the old end is
// m − 60 − 10080. The caller reads that minute's stored aggregates (all
// merchants) from the sink and passes them to Close; keeping 7 days of
// minutes in memory for 100,000 merchants would cost gigabytes.
func LeavingMinute(m window.Minute) window.Minute {
	return m - HourMinutes - BaselineMinutes
}

// MerchantSums is one merchant's approvals and cancels over a window.
type MerchantSums struct{ Merchant, Approvals, Cancels int64 }

// HourOfDaySums is one merchant's approvals and cancels over B in one hour
// of the business day (0…23).
type HourOfDaySums struct {
	Merchant           int64
	Hour               int
	Approvals, Cancels int64
}

// MerchantAmount is one merchant's approved amount over a window.
type MerchantAmount struct{ Merchant, Amount int64 }

// Snapshot is what State is rebuilt from at start (or at the start of a
// backtest).
type Snapshot struct {
	LastClosed window.Minute
	// Recent: every stored minute aggregate with minute in
	// [LastClosed-179, LastClosed] (the recent three hours, H last) and
	// every one with minute > LastClosed (open minutes, not yet closed).
	// Deltas of other minutes are ignored: they are accounted for by
	// Baseline, or have left every window.
	Recent []window.Delta
	// Baseline: per-merchant approvals and cancels summed over
	// B(LastClosed) = [LastClosed-10139, LastClosed-60].
	Baseline []MerchantSums
	// HourOfDay: the same sums over B by hour of the business day.
	HourOfDay []HourOfDaySums
	// Today: per-merchant sums over the minutes of LastClosed's business
	// day before H, [DayStart(LastClosed), LastClosed-60] (part of B).
	Today []MerchantSums
	// ExposureMinutes is the exposure window's length (0: none), and
	// Exposure each merchant's approved amount over its minutes ending
	// with LastClosed, [LastClosed-ExposureMinutes+1, LastClosed].
	ExposureMinutes int
	Exposure        []MerchantAmount
	// Volume, when set, is the business day of LastClosed+1 with its large
	// merchants' curves and today's amounts through LastClosed (a resume
	// from an image); otherwise the first close loads the day.
	Volume *VolumeDay
}

// merchant holds one merchant's window sums. It lives in State.slab and is
// found through State.index; neither holds a pointer, so the garbage
// collector never scans 100,000 merchants.
type merchant struct {
	id             int64
	hA, hC, bA, bC int64
	live           bool // false for a free slot
	// listed: the id is in State.listed or State.fresh (it may also be there
	// while unset, after an eviction; merging deduplicates).
	listed bool
}

func (m *merchant) activeH() bool { return m.hA > 0 || m.hC > 0 }
func (m *merchant) empty() bool   { return m.hA == 0 && m.hC == 0 && m.bA == 0 && m.bC == 0 }

// slot names a merchant and where it was in the slab. The slot may have been
// freed or reused since; resolve checks.
type slot struct {
	id  int64
	idx int32
}

// bucket is an open minute's aggregates per merchant, kept until it
// closes; then it is packed (closedMinute) for the recent hours.
type bucket = map[int64]window.Agg

// State is the windowed state of both rules. It is not safe for concurrent
// use; the pipeline owns it from one goroutine.
//
// Every update is incremental: a minute closing costs the merchants active in
// that minute, the minute leaving H and the minute leaving B, never a rescan.
// Sums are integers, so the order in which deltas arrive does not change any
// result.
type State struct {
	cal  window.Calendar
	last window.Minute

	index map[int64]int32
	slab  []merchant
	free  []int32

	open   map[window.Minute]bucket
	spare  []bucket // emptied buckets, reused so a steady state allocates no maps
	closed map[window.Minute]*closedMinute

	platA, platC int64 // B sums over all merchants
	// platform, when set, replaces platA/platC: a worker's state holds
	// only its own merchants, and the platform-wide baseline comes from
	// every worker's totals in the sink.
	platform *[2]int64

	// listed holds the merchants active in H at the last refresh, ascending,
	// with their slab slots so that evaluating them needs no map lookup.
	listed []slot
	fresh  []slot // merchants that became active in H since
	merged []slot // scratch for refreshListed

	vol *volumeDay

	// todayFrom is the first minute of LastClosed's business day.
	todayFrom window.Minute

	// ext holds what the evidence needs beside the rule's sums, at the same
	// index as slab: kept apart so the rule's loop over every merchant
	// stays on small records.
	ext         []merchantExt
	expoMinutes window.Minute
	prio        PriorityParams
}

// merchantExt is one merchant's figures for the evidence and the money.
type merchantExt struct {
	hCAmt int64 // canceled amount in H
	hC2   int64 // Σ over H's minutes of the minute's cancels squared (batches)
	pA    int64 // approvals in the two hours before H
	// tA, tC: approvals and cancels of the business day before H
	// (State.todayFrom through H's start): today's own level.
	tA, tC int64
	expo   int64 // approved amount in the exposure window
	// hod: approvals and cancels over B by hour of the business day. Seven
	// days of one hour of one merchant stay far below 2^31.
	hod [24][2]int32
}

// NewState rebuilds the state from a snapshot. cal places minutes in business
// days for volume_drop; a zero Calendar means UTC.
func NewState(snap Snapshot, cal window.Calendar) *State {
	if cal.Location() == nil {
		cal = window.NewCalendar(time.UTC)
	}
	s := &State{
		cal:         cal,
		last:        snap.LastClosed,
		index:       make(map[int64]int32, len(snap.Baseline)),
		slab:        make([]merchant, 0, len(snap.Baseline)),
		ext:         make([]merchantExt, 0, len(snap.Baseline)),
		open:        make(map[window.Minute]bucket, 4),
		closed:      make(map[window.Minute]*closedMinute, RecentMinutes+8),
		expoMinutes: window.Minute(min(max(snap.ExposureMinutes, 0), MaxExposureMinutes)),
		prio:        DefaultPriorityParams(),
		todayFrom:   cal.DayStart(snap.LastClosed),
	}
	for _, b := range snap.Baseline {
		s.addB(b.Merchant, b.Approvals, b.Cancels, false)
	}
	for _, h := range snap.HourOfDay {
		if i, ok := s.index[h.Merchant]; ok && h.Hour >= 0 && h.Hour < 24 {
			s.ext[i].addHour(h.Hour, h.Approvals, h.Cancels)
		}
	}
	for _, t := range snap.Today {
		if i, ok := s.index[t.Merchant]; ok {
			s.ext[i].tA += t.Approvals
			s.ext[i].tC += t.Cancels
		}
	}
	for _, d := range snap.Recent {
		if d.Agg.IsZero() || d.Minute <= s.last-RecentMinutes {
			continue
		}
		if d.Minute > s.last {
			s.bucketAdd(d.Minute, d.Merchant, d.Agg)
			continue
		}
		before := s.closedAdd(d.Minute, d.Merchant, d.Agg)
		switch {
		case d.Minute > s.last-HourMinutes:
			s.addH(d.Merchant, d.Approvals, d.Cancels)
			if i, ok := s.index[d.Merchant]; ok {
				s.ext[i].addHCancels(before, d.Cancels, d.CanceledAmount)
			}
		default: // before H: in Baseline already
			if i, ok := s.index[d.Merchant]; ok {
				s.ext[i].pA += d.Approvals
			}
		}
	}
	for _, c := range s.closed {
		c.compact()
	}
	// After H: a merchant new within the hour has nothing in B, and its
	// money at stake would otherwise be dropped with no one to hold it.
	if s.expoMinutes > 0 {
		for _, e := range snap.Exposure {
			if i, ok := s.index[e.Merchant]; ok {
				s.ext[i].expo = satAdd(s.ext[i].expo, e.Amount)
			}
		}
	}
	if v := snap.Volume; v != nil && v.Day.Equal(cal.Day(s.last+1)) {
		s.SetVolumeDay(*v)
	}
	return s
}

// Calendar is the business calendar the state was built with.
func (s *State) Calendar() window.Calendar { return s.cal }

// SetPriorityParams sets how evidence and money rank firing alerts
// (DefaultPriorityParams until set).
func (s *State) SetPriorityParams(p PriorityParams) { s.prio = p }

// ExposureLeavingMinute is the minute that leaves the exposure window when
// m closes (0 when there is no exposure window); Close takes the sink's
// rows of it with those of LeavingMinute(m).
func (s *State) ExposureLeavingMinute(m window.Minute) (window.Minute, bool) {
	if s.expoMinutes <= 0 {
		return 0, false
	}
	return m - s.expoMinutes, true
}

// hourOfDay is the business time zone's hour of m's start.
func (s *State) hourOfDay(m window.Minute) int {
	return m.Start().In(s.cal.Location()).Hour()
}

// addHCancels adds cancels (amount KRW) to a minute of H that held before
// of the merchant's cancels.
func (e *merchantExt) addHCancels(before, cancels, amount int64) {
	e.hCAmt = satAdd(e.hCAmt, amount)
	after := before + cancels
	e.hC2 += after*after - before*before
}

func (e *merchantExt) addHour(h int, approvals, cancels int64) {
	e.hod[h][0] = sat32(int64(e.hod[h][0]) + approvals)
	e.hod[h][1] = sat32(int64(e.hod[h][1]) + cancels)
}

func sat32(v int64) int32 { return int32(min(max(v, math.MinInt32), math.MaxInt32)) }

// LastClosed is the newest closed minute; evaluations are at this minute.
func (s *State) LastClosed() window.Minute { return s.last }

// Add applies a delta of any minute. Open minutes (> LastClosed) are held
// until they close. A closed minute inside H updates H (a late event), inside
// B updates B, older is ignored for cancel_rate_spike (it has left both
// windows). A closed minute also updates volume_drop: today's running amount,
// or the 7-day curve if it is in D−7…D−1.
//
// Deltas given to Add must be the ones the sink stores, because Close later
// subtracts the sink's copy of a minute leaving B.
func (s *State) Add(d window.Delta) {
	if d.Agg.IsZero() {
		return
	}
	m := d.Minute
	switch {
	case m > s.last:
		s.bucketAdd(m, d.Merchant, d.Agg)
		return // counted for volume_drop when it closes
	case m > s.last-HourMinutes:
		before := s.closedAdd(m, d.Merchant, d.Agg)
		s.addH(d.Merchant, d.Approvals, d.Cancels)
		if i, ok := s.index[d.Merchant]; ok {
			s.ext[i].addHCancels(before, d.Cancels, d.CanceledAmount)
		}
	case m > s.last-HourMinutes-BaselineMinutes:
		if m > s.last-RecentMinutes {
			// It leaves the recent hours later, late share included.
			s.closedAdd(m, d.Merchant, d.Agg)
		}
		// The hour and the recent sum first: adding to B cannot evict.
		s.addB(d.Merchant, d.Approvals, d.Cancels, false)
		if i, ok := s.index[d.Merchant]; ok {
			e := &s.ext[i]
			e.addHour(s.hourOfDay(m), d.Approvals, d.Cancels)
			if m > s.last-RecentMinutes {
				e.pA += d.Approvals
			}
			if m >= s.todayFrom {
				e.tA += d.Approvals
				e.tC += d.Cancels
			}
		}
	}
	if s.expoMinutes > 0 && m > s.last-s.expoMinutes {
		if i, ok := s.index[d.Merchant]; ok {
			s.ext[i].expo = satAdd(s.ext[i].expo, d.ApprovedAmount)
		}
	}
	s.volumeLate(m, d.Merchant, d.ApprovedAmount)
}

// Close closes m, which must be LastClosed()+1: the held aggregates of m
// enter H, minute m−60 moves from H into B, and leaving (the stored
// aggregates of LeavingMinute(m), all merchants) is subtracted from B.
// Merchants whose sums all return to zero are forgotten.
//
// leaving must hold exactly what entered B for that minute: the snapshot's
// share plus every delta of it given to Add. The sink's rows, read once
// everything given to Add is flushed, are that; a row read before a delta
// was flushed would leave the delta in B for good.
//
// If a volume day is set (SetVolumeDay) it must be m's business day; call
// NeedsVolumeDay first. Nothing changes when Close returns an error.
func (s *State) Close(m window.Minute, leaving []window.Delta) error {
	if m != s.last+1 {
		return fmt.Errorf("rules: close %s: the next minute to close is %s", m, s.last+1)
	}
	lm := LeavingMinute(m)
	le, expo := s.ExposureLeavingMinute(m)
	for _, d := range leaving {
		if d.Minute != lm && (!expo || d.Minute != le) {
			return fmt.Errorf("rules: close %s: leaving delta of merchant %d is for %s, want %s", m, d.Merchant, d.Minute, lm)
		}
	}
	v := s.vol
	if v != nil && (m < v.start || m >= v.end) {
		return fmt.Errorf("rules: close %s: the volume day is %s, not the minute's business day %s (call SetVolumeDay)",
			m, v.day.Format(time.DateOnly), s.cal.Day(m).Format(time.DateOnly))
	}

	if ds := s.cal.DayStart(m); ds != s.todayFrom {
		// A new business day: today's level starts again from nothing.
		s.todayFrom = ds
		for i := range s.ext {
			s.ext[i].tA, s.ext[i].tC = 0, 0
		}
	}
	open := s.open[m]
	for id, a := range open {
		s.addH(id, a.Approvals, a.Cancels)
		if i, ok := s.index[id]; ok {
			e := &s.ext[i]
			e.hCAmt = satAdd(e.hCAmt, a.CanceledAmount)
			e.hC2 += a.Cancels * a.Cancels
			if expo {
				e.expo = satAdd(e.expo, a.ApprovedAmount)
			}
		}
		if v != nil && a.ApprovedAmount != 0 {
			if c := v.curves[id]; c != nil {
				c.today = satAdd(c.today, a.ApprovedAmount)
			}
		}
	}
	if open != nil {
		delete(s.open, m)
		s.closed[m] = packMinute(open)
		clear(open)
		s.spare = append(s.spare, open)
	}
	if c, ok := s.closed[m-HourMinutes]; ok {
		// Approvals and cancels move apart: every step is a sum, and a
		// merchant keeps approvals in B after its approvals moved, so
		// neither move can forget it.
		h := s.hourOfDay(m - HourMinutes)
		today := m-HourMinutes >= s.todayFrom
		c.eachApprovals(func(id, n int64) {
			s.addB(id, n, 0, true)
			if i, ok := s.index[id]; ok {
				e := &s.ext[i]
				e.pA += n
				e.addHour(h, n, 0)
				if today {
					e.tA += n
				}
			}
		})
		for id, x := range c.cancels {
			s.addB(id, 0, x.n, true)
			if i, ok := s.index[id]; ok {
				e := &s.ext[i]
				e.hCAmt -= x.amount
				e.hC2 -= x.n * x.n
				e.addHour(h, 0, x.n)
				if today {
					e.tC += x.n
				}
			}
		}
	}
	if c, ok := s.closed[m-RecentMinutes]; ok {
		c.eachApprovals(func(id, n int64) {
			if i, ok := s.index[id]; ok {
				s.ext[i].pA -= n
			}
		})
		delete(s.closed, m-RecentMinutes)
	}
	hl := s.hourOfDay(lm)
	for _, d := range leaving {
		i, ok := s.index[d.Merchant]
		switch {
		case d.Minute == lm:
			// Out of the hour first: leaving B may forget the merchant.
			if ok {
				s.ext[i].addHour(hl, -d.Approvals, -d.Cancels)
			}
			s.addB(d.Merchant, -d.Approvals, -d.Cancels, false)
		case ok:
			s.ext[i].expo = satAdd(s.ext[i].expo, -d.ApprovedAmount)
		}
	}
	s.last = m
	return nil
}

// CancelEval is one merchant's cancel_rate_spike evaluation.
type CancelEval struct {
	Merchant int64
	CancelResult
}

// EachCancelEval evaluates SPEC §5 at LastClosed() for every merchant with
// at least one approval or cancel in H, plus every merchant in also
// (merchants with an open alert; duplicates and unknown merchants are
// fine), in ascending merchant order, and calls f with each evaluation.
// The evaluation and the floats it points to are reused for the next one,
// so f copies what it keeps (Ranker does). At a peak every merchant is
// active in H, and a slice of 100,000 evaluations of 230 bytes, allocated,
// zeroed and dropped at every close, was half of the close's CPU, which
// the stream waits for.
func (s *State) EachCancelEval(p CancelRateParams, also []int64, f func(*CancelEval)) {
	s.refreshListed()
	extra := sortedUnique(also)
	pa, pc := s.PlatformBaseline()
	var e CancelEval
	var rate, ratio float64
	eval := func(id int64, i int32) {
		in := CancelInput{PlatformAB: pa, PlatformCB: pc}
		if i >= 0 {
			m := &s.slab[i]
			in.AH, in.CH, in.AB, in.CB = m.hA, m.hC, m.bA, m.bC
		}
		e = CancelEval{Merchant: id}
		evalCancel(p, in, &e.CancelResult, &rate, &ratio)
		if i >= 0 {
			s.cancelEvidence(p, id, i, &e.CancelResult)
		}
		f(&e)
	}
	listed := s.listed
	for len(listed) > 0 || len(extra) > 0 {
		switch {
		case len(extra) == 0 || (len(listed) > 0 && listed[0].id < extra[0]):
			eval(listed[0].id, listed[0].idx) // refreshed just now: the slot is current
			listed = listed[1:]
		case len(listed) == 0 || extra[0] < listed[0].id:
			i, ok := s.index[extra[0]]
			if !ok {
				i = -1
			}
			eval(extra[0], i)
			extra = extra[1:]
		default:
			eval(listed[0].id, listed[0].idx)
			listed, extra = listed[1:], extra[1:]
		}
	}
}

// cancelEvidence fills r's money and, for an hour that can fire (at least
// min_cancels cancels), its batch factor and expected counts, and for one
// that fires its evidence and priority (CancelEvidence).
func (s *State) cancelEvidence(p CancelRateParams, id int64, i int32, r *CancelResult) {
	e := &s.ext[i]
	ev := &r.CancelEvidence
	ev.CanceledAmount, ev.Exposure = e.hCAmt, e.expo
	if r.CH < max(p.MinCancels, 1) {
		return
	}
	// Cancels that came in batches are fewer independent events.
	ev.Batch = batchFactor(e.hC2, r.CH)
	denom := func(approvals float64) float64 { return max(approvals, float64(p.MinApprovals)) }
	ev.ExpectedHour = r.Effective * denom(float64(r.AH))
	lt := s.last.Start().In(s.cal.Location())
	hod := func(h int) (int64, int64) { return int64(e.hod[h][0]), int64(e.hod[h][1]) }
	h1 := s.hourOfDay(s.last - HourMinutes + 1)
	ev.ExpectedSameHour = ev.ExpectedHour
	if rate, ok := SameHourRate(p, hod, h1, lt.Hour(), lt.Minute()); ok {
		ev.ExpectedSameHour = rate * denom(float64(r.AH))
	}
	ev.ExpectedRecent = r.Effective * denom(float64(e.pA+r.AH)/3)
	ev.ExpectedUsual = UsualCancels(hod, h1, lt.Hour())
	var today Today
	if hFrom := s.last - HourMinutes + 1; hFrom > s.todayFrom {
		ft := hFrom.Start().In(s.cal.Location())
		today = Today{Cancels: e.tC, ExpectedRate: r.Effective * float64(e.tA), ExpectedUsual: TodayUsualCancels(hod, ft.Hour(), ft.Minute())}
	}
	ev.judge(s.prio, r.CH, r.Fires, math.Pow(ev.Batch, s.prio.CancelBatchWeight), today)
}

// PlatformBaseline returns the platform-wide approvals and cancels over B.
func (s *State) PlatformBaseline() (approvals, cancels int64) {
	if s.platform != nil {
		return s.platform[0], s.platform[1]
	}
	return s.platA, s.platC
}

// SetPlatformBaseline makes the platform-wide sums over B those given, for
// a state that holds only some merchants; they hold until set again.
func (s *State) SetPlatformBaseline(approvals, cancels int64) {
	s.platform = &[2]int64{approvals, cancels}
}

// Merchants is the number of merchants the state holds sums for.
func (s *State) Merchants() int { return len(s.index) }

// refreshListed brings listed up to date: newly active merchants are sorted
// and merged in, merchants no longer active in H are dropped. This costs
// O(active + new·log new) per evaluation instead of sorting all active
// merchants every minute.
func (s *State) refreshListed() {
	slices.SortFunc(s.fresh, func(a, b slot) int { return cmp.Compare(a.id, b.id) })
	out := s.merged[:0]
	a, b := s.listed, s.fresh
	for len(a) > 0 || len(b) > 0 {
		var e slot
		switch {
		case len(b) == 0 || (len(a) > 0 && a[0].id < b[0].id):
			e, a = a[0], a[1:]
		case len(a) == 0 || b[0].id < a[0].id:
			e, b = b[0], b[1:]
		default:
			e, a, b = a[0], a[1:], b[1:]
		}
		if n := len(out); n > 0 && out[n-1].id == e.id {
			continue // fresh may repeat an id after an eviction
		}
		i, ok := s.resolve(e)
		if !ok {
			continue
		}
		if m := &s.slab[i]; m.activeH() {
			m.listed = true
			out = append(out, slot{id: e.id, idx: i})
		} else {
			m.listed = false
		}
	}
	s.merged, s.listed = s.listed[:0], out
	s.fresh = s.fresh[:0]
}

// resolve returns the current slab index of e's merchant. The remembered
// slot is right unless the merchant was evicted in between (then its slot is
// free or holds another merchant), which only costs a map lookup.
func (s *State) resolve(e slot) (int32, bool) {
	if m := &s.slab[e.idx]; m.live && m.id == e.id {
		return e.idx, true
	}
	i, ok := s.index[e.id]
	return i, ok
}

// sortedUnique returns ids ascending without duplicates, leaving ids as is.
func sortedUnique(ids []int64) []int64 {
	if len(ids) == 0 {
		return nil
	}
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// mergeSorted returns the ascending union of the sorted, duplicate-free a
// and b.
func mergeSorted(a, b []int64) []int64 {
	if len(b) == 0 {
		return a
	}
	out := make([]int64, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || (len(a) > 0 && a[0] < b[0]):
			out, a = append(out, a[0]), a[1:]
		case len(a) == 0 || b[0] < a[0]:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	return out
}

// closedAdd adds a delta to closed minute m (in the recent hours) and
// returns the merchant's cancels in m before it.
func (s *State) closedAdd(m window.Minute, id int64, a window.Agg) int64 {
	c := s.closed[m]
	if c == nil {
		c = &closedMinute{}
		s.closed[m] = c
	}
	return c.add(id, a)
}

func (s *State) bucketAdd(m window.Minute, id int64, a window.Agg) {
	b, ok := s.open[m]
	if !ok {
		if n := len(s.spare); n > 0 {
			b, s.spare = s.spare[n-1], s.spare[:n-1]
		} else {
			b = make(bucket)
		}
		s.open[m] = b
	}
	cur := b[id]
	cur.Add(a)
	b[id] = cur
}

// touch returns the slab index of merchant id, creating it if needed. The
// index stays valid until the merchant is evicted; a pointer into the slab
// does not survive the next touch.
func (s *State) touch(id int64) int32 {
	if i, ok := s.index[id]; ok {
		return i
	}
	var i int32
	if n := len(s.free); n > 0 {
		i, s.free = s.free[n-1], s.free[:n-1]
		s.slab[i] = merchant{id: id, live: true}
		s.ext[i] = merchantExt{}
	} else {
		i = int32(len(s.slab))
		s.slab = append(s.slab, merchant{id: id, live: true})
		s.ext = append(s.ext, merchantExt{})
	}
	s.index[id] = i
	return i
}

// evictIfEmpty forgets a merchant with nothing in H or B, so memory follows
// the merchants active in the last 7 days, not every merchant ever seen.
func (s *State) evictIfEmpty(i int32) {
	m := &s.slab[i]
	if !m.empty() {
		return
	}
	delete(s.index, m.id)
	*m = merchant{}
	s.ext[i] = merchantExt{}
	s.free = append(s.free, i)
}

func (s *State) addH(id, approvals, cancels int64) {
	if approvals == 0 && cancels == 0 {
		return
	}
	i := s.touch(id)
	m := &s.slab[i]
	m.hA += approvals
	m.hC += cancels
	if !m.listed && m.activeH() {
		m.listed = true
		s.fresh = append(s.fresh, slot{id: id, idx: i})
	}
	s.evictIfEmpty(i)
}

// addB adds to merchant id's B sums, taking them out of H when fromH (a
// minute moving from H into B).
func (s *State) addB(id, approvals, cancels int64, fromH bool) {
	if approvals == 0 && cancels == 0 {
		return
	}
	s.platA += approvals
	s.platC += cancels
	i := s.touch(id)
	m := &s.slab[i]
	if fromH {
		m.hA -= approvals
		m.hC -= cancels
	}
	m.bA += approvals
	m.bC += cancels
	s.evictIfEmpty(i)
}

// MerchantWeek is what the state holds of one merchant over B and the
// exposure window: a Snapshot's Baseline, HourOfDay, Today and Exposure
// rows of that merchant, together.
type MerchantWeek struct {
	Merchant, Approvals, Cancels int64
	// Exposure is the approved amount over the exposure window.
	Exposure  int64
	HourOfDay [24][2]int32
	// TodayApprovals, TodayCancels are a Snapshot's Today row.
	TodayApprovals, TodayCancels int64
}

// Weeks yields every merchant the state holds, in no order. After a flush
// of everything added and a close, this is what a Snapshot read from the
// sink at LastClosed would hold (Recent aside), so a restart can resume
// from it instead of reading the week again.
func (s *State) Weeks(yield func(*MerchantWeek) bool) {
	var w MerchantWeek
	for i := range s.slab {
		m := &s.slab[i]
		if !m.live {
			continue
		}
		e := &s.ext[i]
		w = MerchantWeek{Merchant: m.id, Approvals: m.bA, Cancels: m.bC, Exposure: e.expo, HourOfDay: e.hod,
			TodayApprovals: e.tA, TodayCancels: e.tC}
		if !yield(&w) {
			return
		}
	}
}
