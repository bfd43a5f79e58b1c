package aggregates

import (
	"cmp"
	"slices"
	"time"

	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/window"
)

// loadedRules sums, while a first snapshot's minutes and rollups stream
// past the loader, what RulesSnapshot would read back from the loaded
// tables at the checkpoint's last closed minute: the rows of the same
// reads (the rollup's whole hours, the windows' edge minutes, the recent
// minutes), taken as they are written instead of queried after the
// commit (measured on MariaDB at full scale: that read was 5-7 s of the
// first start, the rows' sums here well under one).
type loadedRules struct {
	lastClosed window.Minute
	expo       int
	week       *weekSums
	// hours is the rollup's whole hours either window needs, [lo, hi) in
	// Unix seconds; bEdges and eEdges the windows' minutes outside them,
	// in Unix microseconds (eEdges empty without an exposure window).
	hours  [2]int64
	bEdges [2][2]int64
	eEdges [2][2]int64
	recent []window.Delta
}

// SumRules asks the loader to sum the rules state at the checkpoint's
// last closed minute, for an exposure window of exposureMinutes (0: none),
// as the rows are loaded; LoadedRules hands it over after the commit.
func (l *Loader) SumRules(exposureMinutes int) {
	s, last := l.s, l.cp.LastClosed
	hFrom := last - rules.HourMinutes + 1
	b := s.span(hFrom-rules.BaselineMinutes, hFrom)
	var e *span
	if exposureMinutes > 0 {
		e = s.span(last-window.Minute(exposureMinutes)+1, last+1)
	}
	lr := &loadedRules{lastClosed: last, expo: exposureMinutes,
		week: newWeekSums(b, e, s.cal.Location(), s.cal.DayStart(last).Start().UnixMicro())}
	lo, hi := hourRange(b, e)
	lr.hours = [2]int64{lo.Unix(), hi.Unix()}
	us := func(edges [2][2]time.Time) [2][2]int64 {
		var out [2][2]int64
		for i, r := range edges {
			out[i] = [2]int64{r[0].UnixMicro(), r[1].UnixMicro()}
		}
		return out
	}
	lr.bEdges = us(b.edges())
	if e != nil {
		lr.eEdges = us(e.edges())
	}
	l.rules = lr
}

// LoadedRules is the rules state SumRules asked for, once Bootstrap has
// committed. ok is false when it was not asked for, or when rows were
// added after the load (left-out rows, rare), which the sums did not see.
func (l *Loader) LoadedRules() (snap rules.Snapshot, ok bool) {
	lr := l.rules
	if lr == nil {
		return snap, false
	}
	snap = rules.Snapshot{LastClosed: lr.lastClosed, ExposureMinutes: lr.expo}
	slices.SortFunc(lr.recent, func(a, b window.Delta) int {
		return cmp.Or(cmp.Compare(a.Minute, b.Minute), cmp.Compare(a.Merchant, b.Merchant))
	})
	snap.Recent = lr.recent
	lr.week.fill(&snap)
	return snap, true
}

// minute takes a minute row as loaded.
func (lr *loadedRules) minute(merchant int64, m window.Minute, a window.Agg) {
	if m > lr.lastClosed-rules.RecentMinutes {
		lr.recent = append(lr.recent, window.Delta{Key: window.Key{Merchant: merchant, Minute: m}, Agg: a})
	}
	us := m.Start().UnixMicro()
	for _, r := range lr.bEdges {
		if us >= r[0] && us < r[1] {
			lr.week.add(1, merchant, us, a.Approvals, a.Cancels, a.ApprovedAmount)
		}
	}
	for _, r := range lr.eEdges {
		if us >= r[0] && us < r[1] {
			lr.week.add(2, merchant, us, a.Approvals, a.Cancels, a.ApprovedAmount)
		}
	}
}

// hour takes an hourly rollup row as loaded (hour in Unix seconds).
func (lr *loadedRules) hour(merchant, hour int64, a window.Agg) {
	if hour >= lr.hours[0] && hour < lr.hours[1] {
		lr.week.add(0, merchant, hour*1_000_000, a.Approvals, a.Cancels, a.ApprovedAmount)
	}
}
