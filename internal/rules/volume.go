package rules

import (
	"math"
	"slices"
	"time"

	"github.com/riskwatch/riskwatch/internal/window"
)

// MinutesPerDay is the number of wall-clock minutes of a day, the length of
// a Curve.
const MinutesPerDay = 1440

// QuartersPerDay is the resolution of each day's own curve (the spread of
// the same-time amounts between days): fifteen minutes, so that seven days
// of 1,000 large merchants stay a few megabytes.
const QuartersPerDay = MinutesPerDay / 15

// Curve is one merchant's last-7-days history for day D: Sum7 is the approved
// amount over D−7…D−1; PerMinute7[i] is the sum over those 7 days of the
// approved amount in the wall-clock minute-of-day i (0..1439) of the business
// time zone.
type Curve struct {
	Sum7       int64
	PerMinute7 [MinutesPerDay]int64
	// PerDay[k][q] is the approved amount of day D−7+k in the quarter hour
	// q (0…95) of the business day.
	PerDay [7][QuartersPerDay]int64
}

// VolumeDay is what volume_drop needs for one business day. The set of large
// merchants and their curves depend only on D−7…D−1, so the caller loads them
// from the sink once a day.
type VolumeDay struct {
	Day    time.Time        // window.Calendar.Day form: the business date at 00:00 UTC
	Curves map[int64]*Curve // large merchants only (the caller filters with Sum7 >= 7*LargeDailyAmount)
	// Today: approved amount per curve merchant from 00:00 of Day through
	// LastClosed (for restarts mid-day; empty at midnight). Open minutes are
	// excluded: State counts them when they close.
	Today map[int64]int64
}

// volumeDay is the loaded day, with minute bounds precomputed so that
// classifying a minute is two integer comparisons.
type volumeDay struct {
	day        time.Time
	start, end window.Minute // [00:00 of D, 00:00 of D+1)
	curves     map[int64]*curveState
	ids        []int64 // ascending
}

type curveState struct {
	sum7  int64
	today int64
	// prefix[t] = Σ PerMinute7[0:t], so the same-time expectation at any t is
	// one read. A late delta for a past day rewrites the tail (at most 1440
	// adds), which is rare next to the once-a-minute reads.
	prefix [MinutesPerDay + 1]int64
	// dayPrefix[k][q] = Σ PerDay[k][0:q].
	dayPrefix [7][QuartersPerDay + 1]int64
}

// NeedsVolumeDay reports which business day Close(m) evaluates volume_drop
// for and whether the state lacks it (first use, or m starts a new day). If
// needed, the caller loads that VolumeDay and calls SetVolumeDay before
// Close(m).
func (s *State) NeedsVolumeDay(m window.Minute) (day time.Time, needed bool) {
	day = s.cal.Day(m)
	return day, s.vol == nil || !s.vol.day.Equal(day)
}

// SetVolumeDay installs the curves and today's running amounts for a day,
// replacing the previous day's. v is copied; the caller may reuse it.
func (s *State) SetVolumeDay(v VolumeDay) {
	loc := s.cal.Location()
	y, mo, d := v.Day.Date()
	_, start := CurveWeek(s.cal, v.Day)
	vd := &volumeDay{
		day:    time.Date(y, mo, d, 0, 0, 0, 0, time.UTC),
		start:  start,
		end:    window.MinuteOf(time.Date(y, mo, d+1, 0, 0, 0, 0, loc)),
		curves: make(map[int64]*curveState, len(v.Curves)),
		ids:    make([]int64, 0, len(v.Curves)),
	}
	for id, c := range v.Curves {
		if c == nil {
			continue
		}
		cs := &curveState{sum7: c.Sum7, today: v.Today[id]}
		for i, a := range c.PerMinute7 {
			cs.prefix[i+1] = satAdd(cs.prefix[i], a)
		}
		for k := range c.PerDay {
			for q, a := range c.PerDay[k] {
				cs.dayPrefix[k][q+1] = satAdd(cs.dayPrefix[k][q], a)
			}
		}
		vd.curves[id] = cs
		vd.ids = append(vd.ids, id)
	}
	slices.Sort(vd.ids)
	s.vol = vd
}

// CurveWeek is the minutes [from, to) of the 7 business days before day (a
// window.Calendar.Day), over which its curves are summed: to is the day's
// first minute.
func CurveWeek(cal window.Calendar, day time.Time) (from, to window.Minute) {
	y, mo, d := day.Date()
	loc := cal.Location()
	return window.MinuteOf(time.Date(y, mo, d-7, 0, 0, 0, 0, loc)), window.MinuteOf(time.Date(y, mo, d, 0, 0, 0, 0, loc))
}

// VolumeEval is one merchant's volume_drop evaluation.
type VolumeEval struct {
	Merchant int64
	VolumeResult
}

// VolumeEvals evaluates SPEC §6 at LastClosed() for every merchant of the
// day's curves plus also (merchants with an open alert), in ascending order.
// A merchant without a curve evaluates as not large and not firing (its
// values are zero). If no volume day is set, or LastClosed() is not in it,
// every merchant is without a curve.
func (s *State) VolumeEvals(p VolumeDropParams, also []int64) []VolumeEval {
	v := s.vol
	if v != nil && (s.last < v.start || s.last >= v.end) {
		v = nil
	}
	ids := sortedUnique(also)
	t := 0
	if v != nil {
		ids = mergeSorted(v.ids, ids)
		t = s.minuteOfDay(s.last) + 1
	}
	out := make([]VolumeEval, len(ids))
	drops := make([]float64, len(ids))
	for k, id := range ids {
		out[k].Merchant = id
		var c *curveState
		if v != nil {
			c = v.curves[id]
		}
		if c == nil {
			evalVolume(p, VolumeInput{}, &out[k].VolumeResult, &drops[k])
			out[k].Large, out[k].Fires = false, false
			continue
		}
		r := &out[k].VolumeResult
		evalVolume(p, VolumeInput{Sum7: c.sum7, Prefix7: c.prefix[t], Today: c.today}, r, &drops[k])
		if i, ok := s.index[id]; ok {
			r.Exposure = s.ext[i].expo
		}
		if r.Fires {
			r.Spread = max(c.spread(t), s.prio.VolumeMinSpread)
			if r.Expected > 0 {
				r.Evidence = volumeSurprise(float64(r.Today)/r.Expected, r.Spread)
			}
			r.Priority = volumePriority(s.prio, r.Fires, &r.VolumeEvidence)
		}
	}
	return out
}

// spread is the coefficient of variation of the seven days' amounts from
// 00:00 to minute-of-day t (within a quarter hour, its amount pro rata).
func (c *curveState) spread(t int) float64 {
	q, part := t/15, float64(t%15)/15
	var x [7]float64
	for k := range c.dayPrefix {
		d := &c.dayPrefix[k]
		x[k] = float64(d[q])
		if q < QuartersPerDay {
			x[k] += part * float64(d[q+1]-d[q])
		}
	}
	return sevenDaySpread(&x)
}

// sevenDaySpread is the coefficient of variation of seven days' amounts
// (0 when they are all zero).
func sevenDaySpread(x *[7]float64) float64 {
	var mean float64
	for _, v := range x {
		mean += v / 7
	}
	if mean <= 0 {
		return 0
	}
	var ss float64
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	return math.Sqrt(ss/6) / mean
}

// volumeLate applies a closed minute's approved amount that arrived after
// the minute closed (or after the day was loaded).
func (s *State) volumeLate(m window.Minute, id, amount int64) {
	v := s.vol
	if v == nil || amount == 0 {
		return
	}
	c := v.curves[id]
	if c == nil {
		return
	}
	switch k := curveDay(s.cal, v.day, m); {
	case k == 7:
		c.today = satAdd(c.today, amount)
	case k >= 0:
		c.sum7 = satAdd(c.sum7, amount)
		mod := s.minuteOfDay(m)
		for i := mod + 1; i <= MinutesPerDay; i++ {
			c.prefix[i] = satAdd(c.prefix[i], amount)
		}
		for q := mod/15 + 1; q <= QuartersPerDay; q++ {
			c.dayPrefix[k][q] = satAdd(c.dayPrefix[k][q], amount)
		}
	}
}

// curveDay is which of the 8 business days a volume day spans minute m is
// in: 0…6 for the 7 days before day (a window.Calendar.Day) whose curves it
// holds, 7 for day itself, −1 for any other.
func curveDay(cal window.Calendar, day time.Time, m window.Minute) int {
	k := int(cal.Day(m).Sub(day.AddDate(0, 0, -7)) / (24 * time.Hour))
	if k < 0 || k > 7 {
		return -1
	}
	return k
}

// minuteOfDay is the wall-clock minute of the day of m's start in the
// business time zone, hour*60+minute. On a DST change day the clock skips or
// repeats an hour, so a day has 1380 or 1500 minutes; the curve still uses
// wall-clock indexes 0..1439 (a repeated hour adds into the same slots, a
// skipped one stays empty), which is as close to "the same time of day" as
// the definition allows. Asia/Seoul has no DST.
func (s *State) minuteOfDay(m window.Minute) int { return minuteOfDay(s.cal, m) }

func minuteOfDay(cal window.Calendar, m window.Minute) int {
	t := m.Start().In(cal.Location())
	return min(max(t.Hour()*60+t.Minute(), 0), MinutesPerDay-1)
}

// Volume returns the loaded day's curves and today's amounts as they stand
// (late deltas included), in the form SetVolumeDay takes, so that a restart
// can install them instead of reading a week of minutes. It reports false
// when no day is loaded or a sum has saturated (the per-minute amounts then
// cannot be recovered from the running sums).
func (s *State) Volume() (VolumeDay, bool) {
	v := s.vol
	if v == nil {
		return VolumeDay{}, false
	}
	out := VolumeDay{Day: v.day, Curves: make(map[int64]*Curve, len(v.curves)), Today: map[int64]int64{}}
	for id, c := range v.curves {
		if c.sum7 == math.MaxInt64 || c.today == math.MaxInt64 || c.prefix[MinutesPerDay] == math.MaxInt64 {
			return VolumeDay{}, false
		}
		cv := &Curve{Sum7: c.sum7}
		for i := range cv.PerMinute7 {
			cv.PerMinute7[i] = c.prefix[i+1] - c.prefix[i]
		}
		for k := range cv.PerDay {
			if c.dayPrefix[k][QuartersPerDay] == math.MaxInt64 {
				return VolumeDay{}, false
			}
			for q := range cv.PerDay[k] {
				cv.PerDay[k][q] = c.dayPrefix[k][q+1] - c.dayPrefix[k][q]
			}
		}
		out.Curves[id] = cv
		if c.today != 0 {
			out.Today[id] = c.today
		}
	}
	return out, true
}

// Add adds an approved amount of merchant's closed minute m to the day the
// way the live state takes a late delta: into today's running amount when
// m is in the day, into the merchant's curve when m is in the 7 days
// before it. A merchant without a curve stays without one: the day's
// large merchants are fixed when it is loaded.
func (v *VolumeDay) Add(cal window.Calendar, m window.Minute, merchant, amount int64) {
	c := v.Curves[merchant]
	if c == nil || amount == 0 {
		return
	}
	switch k := curveDay(cal, v.Day, m); {
	case k == 7:
		v.Today[merchant] = satAdd(v.Today[merchant], amount)
	case k >= 0:
		c.Sum7 = satAdd(c.Sum7, amount)
		c.addMinute(cal, k, m, amount)
	}
}

// AddCurve adds an approved amount of merchant's minute m to its per-minute
// and per-day curves when m is in the 7 days before the day, and leaves
// Sum7 alone: a reader of the week's stored minutes takes Sum7 from the
// day totals it chose the large merchants by.
func (v *VolumeDay) AddCurve(cal window.Calendar, m window.Minute, merchant, amount int64) {
	c := v.Curves[merchant]
	if c == nil || amount == 0 {
		return
	}
	if k := curveDay(cal, v.Day, m); k >= 0 && k < 7 {
		c.addMinute(cal, k, m, amount)
	}
}

func (c *Curve) addMinute(cal window.Calendar, k int, m window.Minute, amount int64) {
	mod := minuteOfDay(cal, m)
	c.PerMinute7[mod] = satAdd(c.PerMinute7[mod], amount)
	c.PerDay[k][mod/15] = satAdd(c.PerDay[k][mod/15], amount)
}

// satAdd adds amounts without wrapping: the sink never stores a sum past
// int64, but seven days of them (or a day's prefix) can add up past it, and
// a saturated sum still compares as the huge amount it is.
func satAdd(a, b int64) int64 {
	s, _ := window.SatAdd(a, b)
	return s
}
