package rules

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/riskwatch/riskwatch/internal/window"
)

// fakeSink is the sink as the pipeline sees it: every stored minute
// aggregate, open minutes included. It doubles as the brute-force oracle:
// the expected evaluations are recomputed from all rows each time, with no
// incremental state, so they share nothing with State but the pure rule
// functions (tested on their own).
type fakeSink struct {
	cal  window.Calendar
	rows map[window.Key]window.Agg
	// place caches each minute's business day and wall-clock minute of day:
	// the oracle asks for them once per row per evaluation.
	place map[window.Minute]dayPlace
}

type dayPlace struct {
	day time.Time
	mod int // hour*60+minute in the business zone
}

func newFakeSink(cal window.Calendar) *fakeSink {
	return &fakeSink{cal: cal, rows: make(map[window.Key]window.Agg), place: make(map[window.Minute]dayPlace)}
}

func (f *fakeSink) add(d window.Delta) {
	a := f.rows[d.Key]
	a.Add(d.Agg)
	f.rows[d.Key] = a
}

func (f *fakeSink) placeOf(m window.Minute) dayPlace {
	p, ok := f.place[m]
	if !ok {
		t := m.Start().In(f.cal.Location())
		p = dayPlace{day: time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), mod: t.Hour()*60 + t.Minute()}
		f.place[m] = p
	}
	return p
}

// minute returns the stored aggregates of minute m, as the pipeline reads
// LeavingMinute(m) before Close.
func (f *fakeSink) minute(m window.Minute) []window.Delta {
	var out []window.Delta
	for k, a := range f.rows {
		if k.Minute == m {
			out = append(out, window.Delta{Key: k, Agg: a})
		}
	}
	slices.SortFunc(out, func(a, b window.Delta) int { return cmp.Compare(a.Merchant, b.Merchant) })
	return out
}

// snapshot is what the pipeline reads at start: H and open minutes as rows,
// B as per-merchant sums.
func (f *fakeSink) snapshot(lc window.Minute, exposureMinutes int) Snapshot {
	s := Snapshot{LastClosed: lc, ExposureMinutes: exposureMinutes}
	base := map[int64]*MerchantSums{}
	hod := map[[2]int64]*HourOfDaySums{}
	today := map[int64]*MerchantSums{}
	expo := map[int64]int64{}
	add := func(sums map[int64]*MerchantSums, id int64, a window.Agg) {
		b := sums[id]
		if b == nil {
			b = &MerchantSums{Merchant: id}
			sums[id] = b
		}
		b.Approvals += a.Approvals
		b.Cancels += a.Cancels
	}
	for k, a := range f.rows {
		if k.Minute <= lc && k.Minute > lc-window.Minute(exposureMinutes) {
			expo[k.Merchant] += a.ApprovedAmount
		}
		switch {
		case k.Minute >= lc-179:
			s.Recent = append(s.Recent, window.Delta{Key: k, Agg: a})
		}
		if k.Minute < lc-59 && k.Minute >= lc-10139 {
			add(base, k.Merchant, a)
			hk := [2]int64{k.Merchant, int64(f.placeOf(k.Minute).mod / 60)}
			h := hod[hk]
			if h == nil {
				h = &HourOfDaySums{Merchant: k.Merchant, Hour: int(hk[1])}
				hod[hk] = h
			}
			h.Approvals += a.Approvals
			h.Cancels += a.Cancels
			if f.placeOf(k.Minute).day.Equal(f.placeOf(lc).day) {
				add(today, k.Merchant, a)
			}
		}
	}
	for _, b := range base {
		s.Baseline = append(s.Baseline, *b)
	}
	for _, t := range today {
		s.Today = append(s.Today, *t)
	}
	for _, h := range hod {
		s.HourOfDay = append(s.HourOfDay, *h)
	}
	for id, a := range expo {
		s.Exposure = append(s.Exposure, MerchantAmount{Merchant: id, Amount: a})
	}
	return s
}

// daysBefore is how many business days day lies before d (1 = yesterday).
func daysBefore(d, day time.Time) int { return int(d.Sub(day) / (24 * time.Hour)) }

// volumeDay is what the pipeline loads for day d with lastClosed closed:
// curves of merchants with Sum7 >= 7·large, and their amounts today.
func (f *fakeSink) volumeDay(d time.Time, lastClosed window.Minute, large int64) VolumeDay {
	curves := map[int64]*Curve{}
	today := map[int64]int64{}
	for k, a := range f.rows {
		p := f.placeOf(k.Minute)
		switch n := daysBefore(d, p.day); {
		case n >= 1 && n <= 7:
			c := curves[k.Merchant]
			if c == nil {
				c = new(Curve)
				curves[k.Merchant] = c
			}
			c.Sum7 += a.ApprovedAmount
			c.PerMinute7[p.mod] += a.ApprovedAmount
			c.PerDay[7-n][p.mod/15] += a.ApprovedAmount
		case n == 0 && k.Minute <= lastClosed:
			today[k.Merchant] += a.ApprovedAmount
		}
	}
	for id, c := range curves {
		if c.Sum7 < 7*large {
			delete(curves, id)
		}
	}
	for id := range today {
		if curves[id] == nil {
			delete(today, id)
		}
	}
	return VolumeDay{Day: d, Curves: curves, Today: today}
}

// oracleExtra is what the evidence needs beside the rule's sums, from rows.
type oracleExtra struct {
	hCAmt, pA, expo int64
	sum, sq         int64 // Σc and Σc² over H's minutes
	tA, tC          int64 // approvals and cancels of m's business day before H
	hod             [24][2]int64
}

// cancelEvals recomputes SPEC §5 at m from every row, and the evidence,
// money and priority of each evaluation (exposure window of expoMinutes).
func (f *fakeSink) cancelEvals(p CancelRateParams, prio PriorityParams, expoMinutes int, m window.Minute, also []int64) []CancelEval {
	in := map[int64]*CancelInput{}
	ext := map[int64]*oracleExtra{}
	var platA, platC int64
	get := func(id int64) (*CancelInput, *oracleExtra) {
		x := in[id]
		if x == nil {
			x = new(CancelInput)
			in[id] = x
			ext[id] = new(oracleExtra)
		}
		return x, ext[id]
	}
	for k, a := range f.rows {
		if k.Minute <= m && k.Minute > m-window.Minute(expoMinutes) {
			_, e := get(k.Merchant)
			e.expo += a.ApprovedAmount
		}
		switch {
		case k.Minute > m:
		case k.Minute >= m-59:
			x, e := get(k.Merchant)
			x.AH += a.Approvals
			x.CH += a.Cancels
			e.hCAmt += a.CanceledAmount
			e.sum += a.Cancels
			e.sq += a.Cancels * a.Cancels
		case k.Minute >= m-10139:
			x, e := get(k.Merchant)
			x.AB += a.Approvals
			x.CB += a.Cancels
			platA += a.Approvals
			platC += a.Cancels
			h := f.placeOf(k.Minute).mod / 60
			e.hod[h][0] += a.Approvals
			e.hod[h][1] += a.Cancels
			if k.Minute >= m-179 {
				e.pA += a.Approvals
			}
			if f.placeOf(k.Minute).day.Equal(f.placeOf(m).day) {
				e.tA += a.Approvals
				e.tC += a.Cancels
			}
		}
	}
	var ids []int64
	for id, x := range in {
		if x.AH > 0 || x.CH > 0 {
			ids = append(ids, id)
		}
	}
	ids = append(ids, also...)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make([]CancelEval, 0, len(ids))
	for _, id := range ids {
		x := CancelInput{}
		if in[id] != nil {
			x = *in[id]
		}
		x.PlatformAB, x.PlatformCB = platA, platC
		r := EvalCancelRate(p, x)
		if e := ext[id]; e != nil {
			f.cancelEvidence(p, prio, m, e, &r)
		}
		out = append(out, CancelEval{Merchant: id, CancelResult: r})
	}
	return out
}

// cancelEvidence is the evidence as docs/design.md defines it, from the
// oracle's sums.
func (f *fakeSink) cancelEvidence(p CancelRateParams, prio PriorityParams, m window.Minute, e *oracleExtra, r *CancelResult) {
	ev := &r.CancelEvidence
	ev.CanceledAmount, ev.Exposure = e.hCAmt, e.expo
	if r.CH < max(p.MinCancels, 1) {
		return
	}
	// The index of dispersion of the 60 minutes' counts: with mean Σc/60,
	// variance/mean = (Σc²/60 − (Σc/60)²)/(Σc/60).
	ev.Batch = 1
	if e.sum > 0 {
		ev.Batch = max(1, float64(e.sq)/float64(e.sum)-float64(e.sum)/60)
	}
	denom := func(a float64) float64 { return max(a, float64(p.MinApprovals)) }
	ev.ExpectedHour = r.Effective * denom(float64(r.AH))
	pm := f.placeOf(m)
	hod := func(h int) (int64, int64) { return e.hod[h][0], e.hod[h][1] }
	h1 := f.placeOf(m-59).mod / 60
	ev.ExpectedSameHour = ev.ExpectedHour
	if rate, ok := SameHourRate(p, hod, h1, pm.mod/60, pm.mod%60); ok {
		ev.ExpectedSameHour = rate * denom(float64(r.AH))
	}
	ev.ExpectedRecent = r.Effective * denom(float64(e.pA+r.AH)/3)
	// The larger of the two clock hours' cancels per day over B.
	ev.ExpectedUsual = float64(max(e.hod[h1][1], e.hod[pm.mod/60][1])) / 7
	ev.bw, ev.cv2 = math.Pow(ev.Batch, prio.CancelBatchWeight), prio.CancelDispersion
	// Today's level: the gamma prior of the day level (shape = rate =
	// 1/dispersion) updated with today's cancels before H, counted in
	// the hour's batches and weighted; its mean at least 1.
	ev.TodayRate, ev.TodayUsual, ev.TodayCancels = 1, 1, e.tC
	if hf := f.placeOf(m - 59); hf.day.Equal(pm.day) && hf.mod > 0 && prio.CancelDispersion > 1e-9 {
		usualT := TodayUsualCancels(hod, hf.mod/60, hf.mod%60)
		k, w := 1/prio.CancelDispersion, prio.CancelTodayWeight/ev.bw
		ev.TodayRate = max(1, (k+w*float64(e.tC))/(k+w*r.Effective*float64(e.tA)))
		ev.TodayUsual = max(1, (k+w*float64(e.tC))/(k+w*usualT))
		ev.cv2 = 1 / (k + w*float64(e.tC))
	} else if prio.CancelDispersion > 1e-9 {
		ev.cv2 = prio.CancelDispersion
	}
	if r.Fires {
		// The least of the four tails, each taken in full.
		_, _, _, _, ev.Evidence = ev.Tails(r.CH)
		ev.Priority = cancelPriority(prio, true, ev)
	}
}

// activeMerchants counts merchants with any approval or cancel in H or B at
// m: what State must still hold after evicting the rest.
func (f *fakeSink) activeMerchants(m window.Minute) int {
	sums := map[int64][2]int64{}
	for k, a := range f.rows {
		if k.Minute <= m && k.Minute >= m-10139 {
			s := sums[k.Merchant]
			s[0] += a.Approvals
			s[1] += a.Cancels
			sums[k.Merchant] = s
		}
	}
	n := 0
	for _, s := range sums {
		if s != [2]int64{} {
			n++
		}
	}
	return n
}

// volumeEvals recomputes SPEC §6 at m from every row for the merchants the
// day's curves were loaded for (the large set is fixed per day).
func (f *fakeSink) volumeEvals(p VolumeDropParams, prio PriorityParams, expoMinutes int, m window.Minute, curveSet map[int64]bool, also []int64) []VolumeEval {
	pm := f.placeOf(m)
	t := pm.mod + 1
	in := map[int64]*VolumeInput{}
	// days[id][k][q]: day D−7+k's amount in quarter hour q
	days := map[int64]*[7][QuartersPerDay]int64{}
	expo := map[int64]int64{}
	for id := range curveSet {
		in[id] = new(VolumeInput)
		days[id] = new([7][QuartersPerDay]int64)
	}
	for k, a := range f.rows {
		x := in[k.Merchant]
		if x == nil || k.Minute > m {
			continue
		}
		if k.Minute > m-window.Minute(expoMinutes) {
			expo[k.Merchant] += a.ApprovedAmount
		}
		p := f.placeOf(k.Minute)
		switch n := daysBefore(pm.day, p.day); {
		case n >= 1 && n <= 7:
			x.Sum7 += a.ApprovedAmount
			if p.mod < t {
				x.Prefix7 += a.ApprovedAmount
			}
			days[k.Merchant][7-n][p.mod/15] += a.ApprovedAmount
		case n == 0:
			x.Today += a.ApprovedAmount
		}
	}
	var ids []int64
	for id := range in {
		ids = append(ids, id)
	}
	ids = append(ids, also...)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make([]VolumeEval, 0, len(ids))
	for _, id := range ids {
		if in[id] == nil {
			r := EvalVolumeDrop(p, VolumeInput{})
			r.Large, r.Fires = false, false
			out = append(out, VolumeEval{Merchant: id, VolumeResult: r})
			continue
		}
		r := EvalVolumeDrop(p, *in[id])
		r.Exposure = expo[id]
		if r.Fires {
			// Each day's amount up to t, the quarter t falls in pro rata.
			var x [7]float64
			q, part := t/15, float64(t%15)/15
			for k, d := range days[id] {
				var before int64
				for _, v := range d[:q] {
					before += v
				}
				x[k] = float64(before)
				if q < QuartersPerDay {
					x[k] += part * float64(d[q])
				}
			}
			r.Spread = max(sevenDaySpread(&x), prio.VolumeMinSpread)
			if r.Expected > 0 {
				r.Evidence = volumeSurprise(float64(r.Today)/r.Expected, r.Spread)
			}
			r.Priority = volumePriority(prio, r.Fires, &r.VolumeEvidence)
		}
		out = append(out, VolumeEval{Merchant: id, VolumeResult: r})
	}
	return out
}
