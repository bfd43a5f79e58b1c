package sim

import (
	"math"
	"sort"
	"time"
)

// MinutesPerDay is the length of a business day in minutes (Asia/Seoul has
// no daylight saving; a zone with DST still gets 1440 curve points, and
// the 23- and 25-hour days simply skip or repeat an hour of it).
const MinutesPerDay = 1440

// hourly is the relative payment activity at hh:30, hour by hour from
// 00:30: Korean card traffic is busiest at lunch and in the evening, with
// online shopping keeping midnight busy and a trough from 02:00 to 06:00.
// Diurnal interpolates between these points and rescales to mean 1.
var hourly = [24]float64{
	0.85, 0.45, 0.22, 0.15, 0.13, 0.17, 0.28, 0.55, // 00–07
	0.85, 1.00, 1.10, 1.35, 1.75, 1.55, 1.15, 1.05, // 08–15
	1.05, 1.15, 1.35, 1.65, 1.80, 1.75, 1.50, 1.15, // 16–23
}

// diurnal holds the normalised curve and its cumulative sum. It is computed
// once and never written afterwards.
var diurnal, diurnalCum = buildDiurnal()

func buildDiurnal() (curve [MinutesPerDay]float64, cum [MinutesPerDay + 1]float64) {
	var sum float64
	for m := range MinutesPerDay {
		// Position in hours relative to the anchor at 00:30.
		x := float64(m)/60 - 0.5 + 1.0/120 // centre of the minute
		h := math.Floor(x)
		f := x - h
		a := hourly[(int(h)+24)%24]
		b := hourly[(int(h)+25)%24]
		// Cosine interpolation: smooth at the anchors, no overshoot.
		g := (1 - math.Cos(math.Pi*f)) / 2
		curve[m] = a + (b-a)*g
		sum += curve[m]
	}
	mean := sum / MinutesPerDay
	for m := range MinutesPerDay {
		curve[m] /= mean
		cum[m+1] = cum[m] + curve[m]
	}
	for m := range cum {
		cum[m] /= MinutesPerDay
	}
	return curve, cum
}

// Diurnal is the relative payment activity in the minute of the business
// day minuteOfDay (0 = 00:00–00:01), with mean 1 over the day. Out-of-range
// minutes wrap.
func Diurnal(minuteOfDay int) float64 {
	return diurnal[((minuteOfDay%MinutesPerDay)+MinutesPerDay)%MinutesPerDay]
}

// DiurnalCumulative is the expected share of a day's payments made before
// minute minuteOfDay starts (0 at 00:00, 1 at 24:00).
func DiurnalCumulative(minuteOfDay int) float64 {
	return diurnalCum[min(max(minuteOfDay, 0), MinutesPerDay)]
}

// PaymentsPerMinute is the expected number of payments in the given minute
// of the business day at paymentsPerDay a day.
func PaymentsPerMinute(paymentsPerDay, minuteOfDay int) float64 {
	return float64(paymentsPerDay) / MinutesPerDay * Diurnal(minuteOfDay)
}

// The business clock: activity(t) counts minutes weighted by Diurnal, so
// that one business minute holds the same expected number of payments at
// any time of day. A delay measured on it is short at the lunch peak and
// long at 04:00, when a wall-clock hour holds a few business minutes.

// activity is t on the business clock: civil days since the epoch × 1440 +
// the activity-weighted minutes since local midnight.
func (g *Generator) activity(t time.Time) (day int64, within float64) {
	l := t.In(g.loc)
	y, mo, d := l.Date()
	day = daysSinceEpoch(y, mo, d)
	sec := float64(l.Hour()*3600+l.Minute()*60+l.Second()) + float64(l.Nanosecond())/1e9
	m := min(int(sec/60), MinutesPerDay-1)
	within = MinutesPerDay * (diurnalCum[m] + diurnal[m]*(sec/60-float64(m))/MinutesPerDay)
	return day, within
}

// afterActivity is the wall-clock time d after t on the business clock.
func (g *Generator) afterActivity(t time.Time, d time.Duration) time.Time {
	day, within := g.activity(t)
	within += d.Minutes()
	for within >= MinutesPerDay {
		within -= MinutesPerDay
		day++
	}
	// The minute m with cum[m] ≤ within < cum[m+1], then the fraction of it.
	target := within / MinutesPerDay
	m := sort.SearchFloat64s(diurnalCum[:], target)
	if m > 0 && (m == len(diurnalCum) || diurnalCum[m] > target) {
		m--
	}
	m = min(m, MinutesPerDay-1)
	frac := (target - diurnalCum[m]) * MinutesPerDay / diurnal[m]
	frac = min(max(frac, 0), 1)
	y, mo, dd := time.Unix(day*86400, 0).UTC().Date()
	ns := (float64(m) + frac) * float64(time.Minute)
	return time.Date(y, mo, dd, 0, 0, 0, 0, g.loc).Add(time.Duration(ns)).Truncate(time.Microsecond)
}
