package api

import (
	"slices"
	"time"

	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
	"github.com/riskwatch/riskwatch/internal/window"
)

// minuteSums are prefix sums of approvals and cancels over the minutes
// [lo, lo+len-1), for O(1) window sums.
type minuteSums struct {
	lo   window.Minute
	a, c []int64 // a[i] = approvals in [lo, lo+i)
}

func newMinuteSums(lo, hi window.Minute, points []dashboard.Point) minuteSums {
	n := int(hi - lo)
	s := minuteSums{lo: lo, a: make([]int64, n+1), c: make([]int64, n+1)}
	da, dc := make([]int64, n), make([]int64, n)
	for _, p := range points {
		i := int(window.MinuteOf(p.At) - lo)
		if i >= 0 && i < n {
			da[i] += p.Approvals
			dc[i] += p.Cancels
		}
	}
	for i := 0; i < n; i++ {
		s.a[i+1] = s.a[i] + da[i]
		s.c[i+1] = s.c[i] + dc[i]
	}
	return s
}

// sum returns approvals and cancels over [from, to), clipped to the range.
func (s minuteSums) sum(from, to window.Minute) (a, c int64) {
	n := window.Minute(len(s.a) - 1)
	i := min(max(from-s.lo, 0), n)
	j := min(max(to-s.lo, 0), n)
	if j <= i {
		return 0, 0
	}
	return s.a[j] - s.a[i], s.c[j] - s.c[i]
}

// ratePoint is SPEC §5 at one minute, for drawing, with the same hours of
// the day's rate the evidence weighs it against (SPEC §7a; nil with too
// little history).
type ratePoint struct {
	RateH, Effective, AlertLine, SameHour *float64
	Source                                string
}

// hourBlocks are the business hours over a range of minutes, so that a
// window's sums by hour of the day cost one step per hour.
type hourBlocks struct {
	start []window.Minute // ascending; block k is [start[k], start[k+1])
	hour  []int
}

func newHourBlocks(lo, hi window.Minute, loc *time.Location) hourBlocks {
	var b hourBlocks
	for m := lo; m < hi; {
		t := m.Start().In(loc)
		b.start, b.hour = append(b.start, m), append(b.hour, t.Hour())
		// The zone's next hour (Truncate would cut UTC hours, which are
		// half past in Kolkata).
		next := window.MinuteOf(time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, loc))
		if next <= m { // never, but a zone oddity must not loop
			next = m + 1
		}
		m = next
	}
	b.start = append(b.start, hi)
	return b
}

// byHour sums s over [from, to) by business hour of the day.
func (b hourBlocks) byHour(s minuteSums, from, to window.Minute) (out [24][2]int64) {
	k, _ := slices.BinarySearch(b.start, from)
	if k > 0 && (k == len(b.start) || b.start[k] > from) {
		k--
	}
	for ; k < len(b.hour) && b.start[k] < to; k++ {
		a, c := s.sum(max(b.start[k], from), min(b.start[k+1], to))
		out[b.hour[k]][0] += a
		out[b.hour[k]][1] += c
	}
	return out
}

// cancelLines evaluates SPEC §5 for the merchant at each minute of at, from
// the merchant's and the platform's minute prefix sums: the rule's own
// function on the rule's own windows (H = M−59…M, B = the 7 days before),
// so the chart shows what the engine decided. A minute after lastClosed
// gets no values; B is whatever of it is stored.
func cancelLines(p rules.CancelRateParams, loc *time.Location, merchant, platform minuteSums, at []window.Minute, lastClosed window.Minute) []ratePoint {
	out := make([]ratePoint, len(at))
	mult := p.Multiplier.Float64()
	blocks := newHourBlocks(merchant.lo, merchant.lo+window.Minute(len(merchant.a)-1), loc)
	for i, m := range at {
		if m > lastClosed {
			continue
		}
		hFrom := m - rules.HourMinutes + 1
		in := rules.CancelInput{}
		in.AH, in.CH = merchant.sum(hFrom, m+1)
		in.AB, in.CB = merchant.sum(hFrom-rules.BaselineMinutes, hFrom)
		in.PlatformAB, in.PlatformCB = platform.sum(hFrom-rules.BaselineMinutes, hFrom)
		r := rules.EvalCancelRate(p, in)
		eff := r.Effective
		line := mult * eff
		out[i] = ratePoint{RateH: r.RateH, Effective: &eff, AlertLine: &line, Source: r.BaselineSource}
		hod := blocks.byHour(merchant, hFrom-rules.BaselineMinutes, hFrom)
		lt := m.Start().In(loc)
		if same, ok := rules.SameHourRate(p, func(h int) (int64, int64) { return hod[h][0], hod[h][1] },
			hFrom.Start().In(loc).Hour(), lt.Hour(), lt.Minute()); ok {
			out[i].SameHour = &same
		}
	}
	return out
}

// volumeCurve is SPEC §6 across one business day, per minute of the day.
type volumeCurve struct {
	DailyAvg  float64
	Large     bool
	Today     []*int64  // cumulative approved amount; nil after lastClosed
	Expected  []float64 // mean cumulative amount of the 7 days before
	AlertLine []float64 // (1 − drop_ratio) × expected
	Starts    []time.Time
}

// volumeCurves computes the day's curves. sum7 is the approved amount of
// the seven days before (the daily rollup, as the rule reads it); minutes
// are the merchant's minutes of those seven days and of the day itself.
// The minute of day is the wall-clock hour×60+minute, as in the rule.
func volumeCurves(p rules.VolumeDropParams, loc *time.Location, day time.Time, sum7 int64, minutes []dashboard.Point, lastClosed window.Minute) volumeCurve {
	start := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, loc)
	end := time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, loc)
	n := int(end.Sub(start) / time.Minute)
	var week [rules.MinutesPerDay]int64
	today := make([]int64, n)
	for _, pt := range minutes {
		switch {
		case pt.At.Before(start):
			lt := pt.At.In(loc)
			week[min(lt.Hour()*60+lt.Minute(), rules.MinutesPerDay-1)] += pt.ApprovedAmount
		case pt.At.Before(end):
			today[int(pt.At.Sub(start)/time.Minute)] += pt.ApprovedAmount
		}
	}
	c := volumeCurve{
		DailyAvg: float64(sum7) / 7, Large: sum7 >= 7*p.LargeDailyAmount,
		Today: make([]*int64, n), Expected: make([]float64, n), AlertLine: make([]float64, n), Starts: make([]time.Time, n),
	}
	keep := 1 - p.DropRatio.Float64()
	var cumWeek, cumToday int64
	lastMod := -1
	for i := 0; i < n; i++ {
		t := start.Add(time.Duration(i) * time.Minute)
		c.Starts[i] = t
		lt := t.In(loc)
		mod := min(lt.Hour()*60+lt.Minute(), rules.MinutesPerDay-1)
		// A repeated wall-clock hour (DST ending) adds the week's minutes once.
		for k := lastMod + 1; k <= mod; k++ {
			cumWeek += week[k]
		}
		lastMod = max(lastMod, mod)
		c.Expected[i] = float64(cumWeek) / 7
		c.AlertLine[i] = keep * c.Expected[i]
		cumToday += today[i]
		if window.MinuteOf(t) <= lastClosed {
			v := cumToday
			c.Today[i] = &v
		}
	}
	return c
}
