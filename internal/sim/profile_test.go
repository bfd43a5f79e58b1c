package sim

import (
	"math"
	"slices"
	"sort"
	"testing"
	"time"
)

// dayCounts is one merchant's business days: payments approved that day
// and how many of them got a cancel.
type dayCounts struct{ payments, canceled []float64 }

// countDays generates days business days from the midnight first and
// counts, per merchant of ids, the payments of each day and how many of
// them are canceled (whenever their cancel comes).
func countDays(t *testing.T, g *Generator, ids []int64, first time.Time, days int) map[int64]*dayCounts {
	t.Helper()
	out := map[int64]*dayCounts{}
	for _, id := range ids {
		out[id] = &dayCounts{payments: make([]float64, days), canceled: make([]float64, days)}
	}
	dayOf := func(at time.Time) int { return int(civilDay(at, g.loc) - civilDay(first, g.loc)) }
	err := g.Generate(first, first.AddDate(0, 0, days), func(p Payment) error {
		if c := out[p.MerchantID]; c != nil {
			c.payments[dayOf(p.ApprovedAt)]++
		}
		return nil
	}, func(c Cancel) error {
		if d := out[c.MerchantID]; d != nil {
			// A cancel has its payment's id, whose minute is its day.
			d.canceled[dayOf(minuteStart(c.PaymentID/IDsPerMinute))]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// realisticGen is a small population whose every merchant is busy enough
// to measure day by day: 20 merchants sharing 20,000 payments a day (300
// to 1,800 each).
func realisticGen(t testing.TB, profile string, sc ...Scenario) *Generator {
	return newGen(t, Options{Seed: testSeed, Population: NewPopulation(testSeed, 20), PaymentsPerDay: 20_000, Profile: profile, Scenarios: sc})
}

// TestRealisticFactors checks the realistic profile's factor functions
// over many merchant-days: log-normal with mean 1 and the documented σ,
// the weekday table, and 1 everywhere in the default profile.
func TestRealisticFactors(t *testing.T) {
	g := realisticGen(t, ProfileRealistic)
	const days, merchants = 700, 100
	var logV, logC []float64
	var byWeekday [7][]float64
	for d := int64(20_000); d < 20_000+days; d++ {
		wd := g.weekdayFactor(d)
		for id := int64(1); id <= merchants; id++ {
			v := g.volumeFactor(id, d)
			logV = append(logV, math.Log(v/wd))
			logC = append(logC, math.Log(logNormalFactor(g.seed, saltDayCancel, dayKey(id, d), cancelSigma)))
			byWeekday[(d+4)%7] = append(byWeekday[(d+4)%7], v)
		}
	}
	n := float64(len(logV))
	for _, c := range []struct {
		name  string
		x     []float64
		sigma float64
	}{{"volume", logV, volumeSigma}, {"cancel", logC, cancelSigma}} {
		m, sd := meanSD(c.x)
		// The mean of n normal draws has sd σ/√n; the sd's estimate σ/√(2n).
		if math.Abs(m+c.sigma*c.sigma/2) > 5*c.sigma/math.Sqrt(n) || math.Abs(sd-c.sigma) > 5*c.sigma/math.Sqrt(2*n) {
			t.Errorf("%s factor: log mean %.4f sd %.4f, want %.4f and %.2f", c.name, m, sd, -c.sigma*c.sigma/2, c.sigma)
		}
	}
	var weekSum float64
	for wd, vs := range byWeekday {
		m, _ := meanSD(vs)
		weekSum += weekday[wd]
		// Factors of mean 1 and CV 0.12: the weekday's mean is off by
		// 0.12/√len at most 5 times that.
		if tol := 5 * 0.121 * weekday[wd] / math.Sqrt(float64(len(vs))); math.Abs(m-weekday[wd]) > tol {
			t.Errorf("%s: mean volume factor %.4f, want %.2f ± %.4f", time.Weekday(wd), m, weekday[wd], tol)
		}
	}
	if math.Abs(weekSum/7-1) > 1e-12 {
		t.Errorf("weekday factors average %v, want 1", weekSum/7)
	}
	if plain := realisticGen(t, ProfileDefault); plain.volumeFactor(3, 20_001) != 1 || plain.weekdayFactor(20_002) != 1 || plain.day(20_001) != nil {
		t.Error("the default profile has day factors")
	}
}

func meanSD(x []float64) (mean, sd float64) {
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	for _, v := range x {
		sd += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(sd / float64(len(x)-1))
}

// TestRealisticDayToDay generates eight weeks of the small population in
// both profiles and measures what the realistic profile is for: the
// spread of a merchant's daily counts (their coefficient of variation,
// weekday divided out, against √(e^σ²−1 + 1/λ)), the weekday effect on
// the platform's daily totals, and the overdispersion of daily cancel
// rates. The default profile, measured the same way, shows none of it.
func TestRealisticDayToDay(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 2.2M payments")
	}
	const days = 56
	loc := seoul(t)
	first := time.Date(2026, 9, 7, 0, 0, 0, 0, loc) // a Monday
	for _, profile := range []string{ProfileRealistic, ProfileDefault} {
		t.Run("profile="+profile, func(t *testing.T) {
			g := realisticGen(t, profile)
			ids := g.pop.ranked
			counts := countDays(t, g, ids, first, days)
			realistic := profile == ProfileRealistic
			sigmaV, sigmaC := volumeSigma, cancelSigma
			if !realistic {
				sigmaV, sigmaC = 0, 0
			}

			// Coefficient of variation of each merchant's daily counts
			// with the weekday divided out, pooled as the mean squared CV
			// (each merchant's expectation is e^σ²−1 + 1/λ).
			var cv2, want float64
			for _, id := range ids {
				lambda := g.pop.ExpectedDailyPayments(id, g.ppd)
				x := make([]float64, days)
				for d := range days {
					x[d] = counts[id].payments[d] / g.weekdayFactor(civilDay(first, loc)+int64(d))
				}
				m, sd := meanSD(x)
				cv2 += sd * sd / (m * m)
				want += math.Expm1(sigmaV*sigmaV) + 1/lambda
			}
			cv2, want = cv2/float64(len(ids)), want/float64(len(ids))
			// A sample variance over 55 degrees of freedom is off by
			// √(2/55) = 19% (sd), with the log-normal's kurtosis a little
			// more; pooled over 20 merchants 4.3%: allow 20%.
			t.Logf("daily counts: CV %.3f, model %.3f", math.Sqrt(cv2), math.Sqrt(want))
			if math.Abs(cv2/want-1) > 0.2 {
				t.Errorf("daily counts' squared CV %.4f, model %.4f", cv2, want)
			}

			// The platform's daily totals by weekday, against the table:
			// 8 days each, their noise the weighted merchants' factors
			// (√Σw² × 0.12, about 3% here) and Poisson.
			var byWeekday [7][]float64
			for d := range days {
				var total float64
				for _, id := range ids {
					total += counts[id].payments[d]
				}
				wd := (civilDay(first, loc) + int64(d) + 4) % 7
				byWeekday[wd] = append(byWeekday[wd], total/float64(g.ppd))
			}
			var w2 float64
			for _, m := range g.pop.merchants {
				w2 += m.Weight * m.Weight
			}
			for wd, xs := range byWeekday {
				m, _ := meanSD(xs)
				exp := 1.0
				if realistic {
					exp = weekday[wd]
				}
				sd := math.Sqrt(w2*math.Expm1(sigmaV*sigmaV)+1/float64(g.ppd)) * exp / math.Sqrt(float64(len(xs)))
				if math.Abs(m-exp) > 5*sd {
					t.Errorf("%s: daily total %.4f of the average, want %.2f ± %.4f", time.Weekday(wd), m, exp, 5*sd)
				}
			}

			// Cancel overdispersion: per merchant and day, the share of the
			// day's payments canceled; its variance beyond the binomial
			// r(1−r)/n, over r², estimates e^σ²−1 of the day factor.
			var excess, weight float64
			for _, id := range ids {
				c := counts[id]
				var tp, tc float64
				for d := range days {
					tp += c.payments[d]
					tc += c.canceled[d]
				}
				r := tc / tp
				var v, binom float64
				for d := range days {
					q := c.canceled[d] / c.payments[d]
					v += (q - r) * (q - r)
					binom += r * (1 - r) / c.payments[d]
				}
				v, binom = v/(days-1), binom/days
				// Weighted by the merchant's cancels a day: the busier
				// ones measure it better.
				excess += tc / days * (v - binom) / (r * r)
				weight += tc / days
			}
			est, model := excess/weight, math.Expm1(sigmaC*sigmaC)
			t.Logf("cancel overdispersion: e^σ²−1 estimated %.3f, model %.3f", est, model)
			// The estimate's noise is dominated by the binomial part of the
			// variance: about 0.03 here. 0.094 (σ 0.3) vs 0 is far apart.
			if math.Abs(est-model) > 0.04 {
				t.Errorf("cancel-rate overdispersion %.3f, want %.3f ± 0.04", est, model)
			}
		})
	}
}

// TestRealisticNightCancels: with a quarter of the cancels delayed by
// hours of wall clock, the platform's cancel rate from 02:00 to 06:00 runs
// well above its daily average, as the model predicts; in the default
// profile it stays at it (TestCancelsFollowTheCurve).
func TestRealisticNightCancels(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 2M payments")
	}
	g := newGen(t, Options{Seed: testSeed, Population: NewPopulation(testSeed, 2000), PaymentsPerDay: 200_000, Profile: ProfileRealistic})
	loc := g.loc
	// Three days measured, after a week of payments whose cancels come.
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, loc)
	end := day.AddDate(0, 0, 3)
	var appr, canc [24]float64
	err := g.Generate(day.AddDate(0, 0, -7), end, func(p Payment) error {
		if !p.ApprovedAt.Before(day) {
			appr[p.ApprovedAt.In(loc).Hour()]++
		}
		return nil
	}, func(c Cancel) error {
		if !c.CanceledAt.Before(day) && c.CanceledAt.Before(end) {
			canc[c.CanceledAt.In(loc).Hour()]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ta, tc, na, nc float64
	for h := range 24 {
		ta += appr[h]
		tc += canc[h]
		if h >= 2 && h < 6 {
			na += appr[h]
			nc += canc[h]
		}
	}
	got := (nc / na) / (tc / ta)
	want := nightCancelRatio(g, 2, 6)
	// About 300 night cancels: Poisson sd 6%; allow 20%.
	t.Logf("night cancel rate %.2f× the day's (%.0f cancels), model %.2f×", got, nc, want)
	if want < 1.3 || math.Abs(got/want-1) > 0.2 {
		t.Errorf("night cancel rate %.2f× the daily rate, model %.2f×", got, want)
	}
}

// nightCancelRatio is the model's cancel rate in hours [lo, hi) relative
// to the day's: cancels arrive by the curve (business clock) but for
// delayedShare of them, which arrive the delay's wall-clock time after
// their payment (whole days of delay keep the time of day).
func nightCancelRatio(g *Generator, lo, hi int) float64 {
	// The delay's distribution as quantiles of the clipped log-normal.
	const q = 400
	delays := make([]float64, q) // minutes
	for i := range q {
		z := normQuantile((float64(i) + 0.5) / q)
		d := delayedMedian.Minutes() * math.Exp(delayedSigma*z)
		delays[i] = min(max(d, delayedMin.Minutes()), delayedMax.Minutes())
	}
	var arrive [MinutesPerDay]float64 // delayed cancels' arrival minute, for payments by the curve
	for m := range MinutesPerDay {
		for _, d := range delays {
			arrive[(m+int(d))%MinutesPerDay] += Diurnal(m) / q
		}
	}
	var curve, delayed float64
	for m := lo * 60; m < hi*60; m++ {
		curve += Diurnal(m)
		delayed += arrive[m]
	}
	return ((1-delayedShare)*curve + delayedShare*delayed) / curve
}

// normQuantile is the standard normal quantile (bisection on erf; tests
// only).
func normQuantile(p float64) float64 {
	lo, hi := -10.0, 10.0
	for range 100 {
		mid := (lo + hi) / 2
		if 0.5*math.Erfc(-mid/math.Sqrt2) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// TestRealisticDeterministic: the same seed gives the same rows, and a
// day's table is the same whichever goroutine builds it first.
func TestRealisticDeterministic(t *testing.T) {
	loc := seoul(t)
	from := time.Date(2026, 11, 20, 23, 30, 0, 0, loc) // across midnight
	to := from.Add(time.Hour)
	a := newGen(t, Options{Seed: testSeed, Population: NewPopulation(testSeed, 2000), PaymentsPerDay: 200_000, Profile: ProfileRealistic})
	b := newGen(t, Options{Seed: testSeed, Population: NewPopulation(testSeed, 2000), PaymentsPerDay: 200_000, Profile: ProfileRealistic})
	pa, ca := collect(t, a, from, to)
	// b builds the second day first.
	pb2, cb2 := collect(t, b, from.Add(30*time.Minute), to)
	pb1, cb1 := collect(t, b, from, from.Add(30*time.Minute))
	if !slices.Equal(pa, append(pb1, pb2...)) || !slices.Equal(ca, append(cb1, cb2...)) {
		t.Fatal("the realistic profile is not deterministic")
	}
	plain, _ := collect(t, newGen(t, Options{Seed: testSeed, Population: NewPopulation(testSeed, 2000), PaymentsPerDay: 200_000}), from, to)
	if slices.Equal(pa, plain) {
		t.Error("the realistic profile gives the default profile's rows")
	}
}

// TestDayCacheEvicts: the cache keeps at most maxCachedDays tables and
// rebuilds an evicted day identically.
func TestDayCacheEvicts(t *testing.T) {
	g := realisticGen(t, ProfileRealistic)
	first := g.day(20_000)
	for d := int64(20_001); d <= 20_000+2*maxCachedDays; d++ {
		g.day(d)
	}
	if n := len(g.days.days); n > maxCachedDays {
		t.Errorf("%d days cached", n)
	}
	again := g.day(20_000)
	if again == first || !slices.Equal(again.cancel, first.cancel) || !slices.Equal(again.sampler.prob, first.sampler.prob) || again.volume != first.volume {
		t.Error("an evicted day came back different (or was not evicted)")
	}
	keys := make([]int64, 0, len(g.days.days))
	for d := range g.days.days {
		keys = append(keys, d)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	t.Logf("cached days %v", keys)
}

// BenchmarkDayTable measures building one realistic day's table at full
// scale (100,000 merchants).
func BenchmarkDayTable(b *testing.B) {
	g := newGen(b, Options{Seed: testSeed, Profile: ProfileRealistic})
	for i := range b.N {
		g.buildDay(20_000 + int64(i))
	}
}
