package sim

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// scoredGen is a generator at a given scale with the large threshold
// scaled as `sim history` scales it.
func scoredGen(t testing.TB, seed uint64, merchants, ppd int, profile string, sc ...Scenario) *Generator {
	t.Helper()
	return newGen(t, Options{Seed: seed, Population: NewPopulation(seed, merchants), PaymentsPerDay: ppd, Profile: profile, Scenarios: sc,
		Rules: RuleParams{LargeDailyAmount: LargeDailyAmount * int64(ppd) / DefaultPaymentsPerDay}})
}

// TestScoredDayScenariosMix checks the composition of the scored day at
// full scale and at the reduced scales the tests and the quick benchmark
// use: the counts per kind, size and factor, merchants of the right size
// and never twice, start times within the day, and determinism.
func TestScoredDayScenariosMix(t *testing.T) {
	for _, c := range []struct {
		seed           uint64
		merchants, ppd int
	}{
		{1, DefaultMerchants, DefaultPaymentsPerDay},
		{testSeed, DefaultMerchants, DefaultPaymentsPerDay},
		{2, 10_000, 300_000},
		{testSeed, 2_000, 20_000},
		{1, 2_000, 20_000}, // the CLI test's
	} {
		t.Run(fmt.Sprintf("seed=%d/merchants=%d", c.seed, c.merchants), func(t *testing.T) {
			g := scoredGen(t, c.seed, c.merchants, c.ppd, ProfileRealistic)
			loc := g.loc
			day := time.Date(2026, 11, 29, 0, 0, 0, 0, loc)
			sc, err := g.ScoredDayScenarios(day.Add(13 * time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			again, err := scoredGen(t, c.seed, c.merchants, c.ppd, ProfileRealistic).ScoredDayScenarios(day)
			if err != nil || !slices.EqualFunc(sc, again, sameScenario) {
				t.Fatalf("not deterministic (or the day's hour mattered): %v", err)
			}
			if _, err := NewGenerator(Options{Seed: c.seed, Population: g.pop, PaymentsPerDay: c.ppd, Location: loc, Scenarios: sc}); err != nil {
				t.Fatalf("the generator rejects the mix: %v", err)
			}
			daily := func(id int64) float64 { return g.pop.ExpectedDailyPayments(id, DefaultPaymentsPerDay) }
			kinds := map[string]int{}
			cells := map[string]int{} // kind/size/factor
			seen := map[int64]bool{}
			var incidents int
			for _, s := range sc {
				kinds[s.Kind]++
				cells[fmt.Sprintf("%s/%s/%g", s.Kind, s.Size, s.Factor)]++
				if seen[s.Merchant] {
					t.Errorf("merchant %d used twice", s.Merchant)
				}
				seen[s.Merchant] = true
				if Incident(s.Kind) {
					incidents++
				}
				// Start times: within the day; volume incidents 02:00–10:00,
				// other incidents and timed controls 09:00–21:00.
				lo, hi := 9*time.Hour, 21*time.Hour
				switch s.Kind {
				case KindVolumeDrop, KindSilent:
					lo, hi = 2*time.Hour, 10*time.Hour
					if got := s.Start.Add(s.Duration); !got.Equal(day.AddDate(0, 0, 1)) {
						t.Errorf("%s ends at %v, want the day's end", s.Kind, got)
					}
				case KindSteadyHighCancel, KindBatchRefunds:
					if !s.Start.IsZero() {
						t.Errorf("%s starts at %v, want all along", s.Kind, s.Start)
					}
					continue
				case KindVolatileLarge:
					lo, hi = 0, time.Minute
				}
				if off := s.Start.Sub(day); off < lo || off >= hi || s.Start.Truncate(time.Minute) != s.Start {
					t.Errorf("%s at %s: start %s outside %s–%s", s.Kind, s.Size, s.Start.In(loc).Format(time.DateTime), lo, hi)
				}
			}
			// Sizes.
			for _, s := range sc {
				d := daily(s.Merchant)
				ok := true
				switch {
				case s.Kind == KindBustOut:
					ok = map[string]sizeClass{"small": sizeSmall, "medium": sizeMediumBust, "large": sizeLargeBust}[s.Size].holds(d)
				case s.Kind == KindCancelSurge:
					ok = map[string]sizeClass{"small": sizeSmall, "medium": sizeMediumSurge, "busy": sizeBusy, "large": sizeLargeSurge}[s.Size].holds(d)
				case s.Kind == KindVolumeDrop || s.Kind == KindSilent || s.Kind == KindVolatileLarge:
					ok = g.pop.ExpectedDailyAmount(s.Merchant, c.ppd) >= 2*float64(g.rules.LargeDailyAmount)
				case s.Kind == KindBatchRefunds:
					ok = d*g.pop.Merchant(s.Merchant).CancelRate >= 60
				case s.Kind == KindTiny:
					ok = g.pop.Merchant(s.Merchant).Rank > g.pop.Len()-scoredControls
				}
				if !ok {
					t.Errorf("%s/%s at merchant %d: %.0f payments a day, %.2e KRW", s.Kind, s.Size, s.Merchant, d, g.pop.ExpectedDailyAmount(s.Merchant, c.ppd))
				}
			}
			want := map[string]int{
				KindBustOut: 12, KindCancelSurge: 16, KindVolumeDrop: 9, KindSilent: 3,
				KindTiny: 5, KindPromotion: 5, KindFlashSale: 5, KindSteadyHighCancel: 5, KindBatchRefunds: 5, KindVolatileLarge: 5,
			}
			for k, n := range want {
				if kinds[k] != n {
					t.Errorf("%d × %s, want %d", kinds[k], k, n)
				}
			}
			if incidents < 40 {
				t.Errorf("%d incidents, want at least 40", incidents)
			}
			for _, size := range []string{"small", "medium", "large"} {
				if n := cells["bust_out/"+size+"/0.6"]; n != 4 {
					t.Errorf("%d %s bust-outs, want 4", n, size)
				}
			}
			for _, size := range []string{"small", "medium", "busy", "large"} {
				for _, f := range scoredSurgeFactors {
					if n := cells[fmt.Sprintf("cancel_surge/%s/%g", size, f)]; n != 1 {
						t.Errorf("%d %s surges ×%g, want 1", n, size, f)
					}
				}
			}
			for _, f := range []float64{0.5, 0.7, 0.9} {
				if n := cells[fmt.Sprintf("volume_drop/large/%g", f)]; n != 3 {
					t.Errorf("%d volume drops of %g, want 3", n, f)
				}
			}
			if c.merchants == DefaultMerchants && c.seed == 1 {
				var b strings.Builder
				for _, s := range sc {
					start := "all along"
					if !s.Start.IsZero() {
						start = s.Start.In(loc).Format("15:04")
					}
					fmt.Fprintf(&b, "\n%-18s %-6s ×%-4g merchant %6d %7.0f/day %.2e KRW/day from %s", s.Kind, s.Size, s.Factor, s.Merchant,
						daily(s.Merchant), g.pop.ExpectedDailyAmount(s.Merchant, c.ppd), start)
				}
				t.Logf("scored day, seed 1, full scale:%s", b.String())
			}
		})
	}
	if _, err := scoredGen(t, 1, 300, 20_000, "").ScoredDayScenarios(time.Now()); err == nil || !strings.Contains(err.Error(), "merchants for") {
		t.Errorf("a population of 300 merchants: %v", err)
	}
}

// sameScenario compares scenarios field by field, times by Equal.
func sameScenario(a, b Scenario) bool {
	return a.Kind == b.Kind && a.Merchant == b.Merchant && a.Start.Equal(b.Start) && a.Duration == b.Duration && a.Factor == b.Factor &&
		a.Note == b.Note && a.Size == b.Size
}

// TestScoredDayTruth generates a scored day at the quick benchmark's
// scale in the realistic profile and checks its ground truth: a row per
// rule and scenario with the scenario's facts, incidents judged from their
// starts (IncidentFrom), every bust-out and silent merchant true within the model's
// bounds, no control an incident, and the new kinds' truth equal to a
// brute-force evaluation of the raw rows.
func TestScoredDayTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 2.4M payments")
	}
	const merchants, ppd = 10_000, 300_000
	base := scoredGen(t, testSeed, merchants, ppd, ProfileRealistic)
	loc := base.loc
	day := time.Date(2026, 11, 29, 0, 0, 0, 0, loc)
	sc, err := base.ScoredDayScenarios(day)
	if err != nil {
		t.Fatal(err)
	}
	g := scoredGen(t, testSeed, merchants, ppd, ProfileRealistic, sc...)
	truth := g.GroundTruth(day, day.AddDate(0, 0, 1))
	byKey := map[string]Truth{}
	for _, tr := range truth {
		byKey[fmt.Sprintf("%d/%s", tr.Merchant, tr.Rule)] = tr
	}
	fired := map[string]int{}
	for _, s := range sc {
		cs, ok := byKey[fmt.Sprintf("%d/%s", s.Merchant, RuleCancelRateSpike)]
		if !ok {
			t.Fatalf("no cancel_rate_spike truth for %s at %d", s.Kind, s.Merchant)
		}
		own := cs
		if s.Kind == KindVolumeDrop || s.Kind == KindSilent || s.Kind == KindVolatileLarge {
			if own, ok = byKey[fmt.Sprintf("%d/%s", s.Merchant, RuleVolumeDrop)]; !ok {
				t.Fatalf("no volume_drop truth for %s at %d", s.Kind, s.Merchant)
			}
		}
		if own.Incident != Incident(s.Kind) || own.Factor != s.Factor || !own.Start.Equal(s.Start) || own.Size != s.Size ||
			own.DailyPayments <= 0 || own.DailyAmount <= 0 || own.ShouldFire != Incident(s.Kind) {
			t.Errorf("truth %+v for scenario %+v", own, s)
		}
		for _, at := range []time.Time{own.From, own.IncidentFrom} {
			if !at.IsZero() && (!at.Before(day.AddDate(0, 0, 1)) || at.Before(day)) {
				t.Errorf("%s at %d: true from %v, outside the scored day", s.Kind, s.Merchant, at)
			}
		}
		inc := own.IncidentFrom
		switch {
		case !own.Incident && !inc.IsZero():
			t.Errorf("control %s at %d has an incident minute %v", s.Kind, s.Merchant, inc)
		case !own.Incident:
			if !own.From.IsZero() {
				fired[s.Kind]++
			}
			continue
		case !inc.IsZero():
			fired[s.Kind]++
			if inc.Before(s.Start.Truncate(time.Minute)) || inc.Before(own.From) || !own.From.Before(s.Start) && !inc.Equal(own.From) {
				t.Errorf("%s at %d: incident from %v, literal from %v, start %v", s.Kind, s.Merchant, inc, own.From, s.Start)
			}
		}
		switch s.Kind {
		case KindBustOut:
			// The flood (60% of the last day's sales, ≥ 18 cancels even at
			// a small merchant at this scale) reaches 5 cancels within its
			// 30 minutes.
			if inc.IsZero() || inc.Sub(s.Start) > floodSpread {
				t.Errorf("bust-out at %d (%s) from %v, want within 30 minutes of %v", s.Merchant, s.Size, inc, s.Start)
			}
		case KindSilent, KindVolumeDrop:
			// Silent or keeping 10% from before 10:00: by the curve today is
			// at most 20% + 10% × 80% of the day, far below half of it,
			// whatever the day factors.
			if (s.Kind == KindSilent || s.Factor == 0.9) && inc.IsZero() {
				t.Errorf("%s ×%g at %d never true", s.Kind, s.Factor, s.Merchant)
			}
		}
	}
	t.Logf("conditions true on the scored day (incidents: from their start), by kind: %v", fired)

	// Brute force for one batch-refund merchant's cancel spike and one
	// volatile merchant's volume drop.
	pick := func(kind string) Scenario {
		i := slices.IndexFunc(sc, func(s Scenario) bool { return s.Kind == kind })
		return sc[i]
	}
	batch, volatile := pick(KindBatchRefunds), pick(KindVolatileLarge)
	until := day.AddDate(0, 0, 1)
	ps, cs := merchantRows(t, g, day.AddDate(0, 0, -7), until, batch.Merchant, volatile.Merchant)
	bp, bc, vp := ps[batch.Merchant], cs[batch.Merchant], ps[volatile.Merchant]
	if got, want := bruteCancelSpike(bp, bc, day, until), byKey[fmt.Sprintf("%d/%s", batch.Merchant, RuleCancelRateSpike)].From; !got.Equal(want) {
		t.Errorf("batch refunds at %d: ground truth from %v, brute force %v", batch.Merchant, want, got)
	}
	if got, want := bruteVolumeDrop(vp, day, until, loc, g.rules.LargeDailyAmount), byKey[fmt.Sprintf("%d/%s", volatile.Merchant, RuleVolumeDrop)].From; !got.Equal(want) {
		t.Errorf("volatile merchant %d: ground truth from %v, brute force %v", volatile.Merchant, want, got)
	}
}

// TestScoredDayFullScale writes the full-scale scored day's ground truth
// (100,000 merchants, 3,000,000 payments a day, realistic) and logs what
// became true. It runs only with RISKWATCH_SIM_SCORED_SEED=N.
func TestScoredDayFullScale(t *testing.T) {
	v := os.Getenv("RISKWATCH_SIM_SCORED_SEED")
	if v == "" {
		t.Skip("set RISKWATCH_SIM_SCORED_SEED to generate the full-scale scored day")
	}
	var seed uint64
	if _, err := fmt.Sscan(v, &seed); err != nil {
		t.Fatal(err)
	}
	base := scoredGen(t, seed, DefaultMerchants, DefaultPaymentsPerDay, ProfileRealistic)
	day := time.Date(2026, 11, 29, 0, 0, 0, 0, base.loc)
	sc, err := base.ScoredDayScenarios(day)
	if err != nil {
		t.Fatal(err)
	}
	g := scoredGen(t, seed, DefaultMerchants, DefaultPaymentsPerDay, ProfileRealistic, sc...)
	start := time.Now()
	truth := g.GroundTruth(day, day.AddDate(0, 0, 1))
	t.Logf("ground truth of the scored day in %s", time.Since(start).Round(time.Millisecond))
	var b strings.Builder
	clock := func(at time.Time) string {
		if at.IsZero() {
			return "never"
		}
		return at.In(g.loc).Format("15:04")
	}
	for _, tr := range truth {
		start := "all along"
		if !tr.Start.IsZero() {
			start = clock(tr.Start)
		}
		fmt.Fprintf(&b, "\n%-18s %-6s ×%-4g %-17s %7.0f/day start %-9s should_fire=%-5v from %-5s incident from %s",
			tr.Scenario, tr.Size, tr.Factor, tr.Rule, tr.DailyPayments, start, tr.ShouldFire, clock(tr.From), clock(tr.IncidentFrom))
	}
	t.Log(b.String())
}
