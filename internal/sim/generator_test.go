package sim

import (
	"cmp"
	"math"
	"slices"
	"testing"
	"time"
)

// smallGen is 2,000 merchants at 200,000 payments a day: cheap, yet busy
// enough for statistics.
func smallGen(t testing.TB, sc ...Scenario) *Generator {
	return newGen(t, Options{Seed: testSeed, Population: NewPopulation(testSeed, 2000), PaymentsPerDay: 200_000, Scenarios: sc})
}

func TestGenerateDeterministicAndSplittable(t *testing.T) {
	g := smallGen(t)
	loc := g.Location()
	from := time.Date(2026, 11, 20, 11, 17, 30, 0, loc) // mid-minute on purpose
	to := from.Add(3*time.Hour + 123*time.Second)
	ps1, cs1 := collect(t, g, from, to)
	ps2, cs2 := collect(t, smallGen(t), from, to)
	if !slices.Equal(ps1, ps2) || !slices.Equal(cs1, cs2) {
		t.Fatal("same seed and range gave different rows")
	}
	// The same range cut at odd points, generated separately.
	var ps3 []Payment
	var cs3 []Cancel
	cuts := []time.Time{from, from.Add(7 * time.Second), from.Add(61 * time.Minute), from.Add(61*time.Minute + 1), to}
	for i := 1; i < len(cuts); i++ {
		p, c := collect(t, g, cuts[i-1], cuts[i])
		ps3 = append(ps3, p...)
		cs3 = append(cs3, c...)
	}
	if !slices.Equal(ps1, ps3) || !slices.Equal(cs1, cs3) {
		t.Fatalf("pieces (%d, %d rows) differ from the whole (%d, %d)", len(ps3), len(cs3), len(ps1), len(cs1))
	}
	if len(ps1) < 20_000 {
		t.Fatalf("only %d payments", len(ps1))
	}
	// Another seed differs.
	other, _ := collect(t, newGen(t, Options{Seed: testSeed + 1, Population: g.Population(), PaymentsPerDay: 200_000}), from, to)
	if slices.Equal(ps1[:100], other[:100]) {
		t.Error("another seed gives the same rows")
	}
}

func TestGeneratedRows(t *testing.T) {
	g := smallGen(t)
	loc := g.Location()
	from := time.Date(2026, 11, 20, 0, 0, 0, 0, loc)
	ps, cs := collect(t, g, from, from.AddDate(0, 0, 1))
	ids := map[int64]Payment{}
	var prev Payment
	for i, p := range ps {
		if _, dup := ids[p.ID]; dup {
			t.Fatalf("duplicate id %d", p.ID)
		}
		ids[p.ID] = p
		if p.Amount < 100 || p.Amount%100 != 0 || p.Amount > maxAmount {
			t.Fatalf("amount %d", p.Amount)
		}
		if i > 0 && (p.ApprovedAt.Before(prev.ApprovedAt) || p.ID <= prev.ID) {
			t.Fatalf("not in time and id order: %+v after %+v", p, prev)
		}
		if g.Population().Merchant(p.MerchantID) == nil {
			t.Fatalf("unknown merchant %d", p.MerchantID)
		}
		if got := unixMinute(p.ApprovedAt); p.ID/IDsPerMinute != got {
			t.Fatalf("id %d is not in minute %d", p.ID, got)
		}
		prev = p
	}
	partial := 0
	var delays []time.Duration
	for _, c := range cs {
		p, ok := ids[c.PaymentID]
		if !ok || c.MerchantID != p.MerchantID || c.ID != p.ID {
			t.Fatalf("cancel %+v does not match a payment", c)
		}
		d := c.CanceledAt.Sub(p.ApprovedAt)
		if d < cancelShortMin-time.Microsecond || d >= MaxCancelDelay {
			t.Fatalf("cancel delay %s", d)
		}
		delays = append(delays, d)
		if c.Amount < 100 || c.Amount%100 != 0 || c.Amount > p.Amount {
			t.Fatalf("cancel amount %d of %d", c.Amount, p.Amount)
		}
		if c.Amount < p.Amount {
			partial++
		}
	}
	slices.Sort(delays)
	share := float64(partial) / float64(len(cs))
	rate := float64(len(cs)) / float64(len(ps))
	t.Logf("%d payments, %d cancels (%.2f%%), %.0f%% partial, delay median %s, p90 %s, p99 %s",
		len(ps), len(cs), 100*rate, 100*share, delays[len(delays)/2], delays[len(delays)*9/10], delays[len(delays)*99/100])
	if share < 0.25 || share > 0.33 {
		t.Errorf("partial share %.3f, want about 0.30 (a few tiny payments cannot be partial)", share)
	}
	if med := delays[len(delays)/2]; med < 10*time.Minute || med > 3*time.Hour {
		t.Errorf("median cancel delay %s: want minutes to hours", med)
	}
	if p90 := delays[len(delays)*9/10]; p90 < 24*time.Hour {
		t.Errorf("90th percentile delay %s: want a tail of days", p90)
	}
}

// TestCancelsFollowTheCurve: at every hour of the day the platform's cancel
// rate (cancels arriving / payments approved) stays near its daily average
// — what keeps cancel_rate_spike quiet for normal merchants at night.
func TestCancelsFollowTheCurve(t *testing.T) {
	g := newGen(t, Options{Seed: testSeed, Population: NewPopulation(testSeed, 5000), PaymentsPerDay: 1_000_000})
	loc := g.Location()
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, loc)
	var appr, canc [24]float64
	err := g.Generate(day.AddDate(0, 0, -7), day.AddDate(0, 0, 1), func(p Payment) error {
		if !p.ApprovedAt.Before(day) {
			appr[p.ApprovedAt.In(loc).Hour()]++
		}
		return nil
	}, func(c Cancel) error {
		if !c.CanceledAt.Before(day) && c.CanceledAt.Before(day.AddDate(0, 0, 1)) {
			canc[c.CanceledAt.In(loc).Hour()]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ta, tc float64
	for h := range 24 {
		ta += appr[h]
		tc += canc[h]
	}
	for h := range 24 {
		ratio := (canc[h] / appr[h]) / (tc / ta)
		// ~400 cancels an hour at night: 4σ is about 0.2.
		if ratio < 0.75 || ratio > 1.25 {
			t.Errorf("hour %02d: cancel rate %.2f× the daily rate", h, ratio)
		}
	}
}

// TestScenariosTouchOnlyTheirMerchants: other merchants' rows are the same
// with and without scenarios.
func TestScenariosTouchOnlyTheirMerchants(t *testing.T) {
	plain := smallGen(t)
	loc := plain.Location()
	now := time.Date(2026, 11, 20, 14, 0, 0, 0, loc)
	pop := plain.Population()
	ids := pop.Ranked()
	sc := []Scenario{
		{Kind: KindSilent, Merchant: ids[0], Start: now},
		{Kind: KindPromotion, Merchant: ids[1], Start: now},
		{Kind: KindCancelSurge, Merchant: ids[2], Start: now},
		{Kind: KindBustOut, Merchant: ids[3], Start: now.Add(30 * time.Minute)},
		{Kind: KindTiny, Merchant: pop.Tiny(), Start: now.Add(time.Minute)},
	}
	with := smallGen(t, sc...)
	involved := map[int64]bool{}
	for _, s := range sc {
		involved[s.Merchant] = true
	}
	filter := func(ps []Payment, cs []Cancel) ([]Payment, []Cancel) {
		ps = slices.DeleteFunc(slices.Clone(ps), func(p Payment) bool { return involved[p.MerchantID] })
		cs = slices.DeleteFunc(slices.Clone(cs), func(c Cancel) bool { return involved[c.MerchantID] })
		return ps, cs
	}
	pa, ca := filter(collect(t, plain, now.Add(-time.Hour), now.Add(time.Hour)))
	pb, cb := filter(collect(t, with, now.Add(-time.Hour), now.Add(time.Hour)))
	if !slices.Equal(pa, pb) || !slices.Equal(ca, cb) {
		t.Fatal("scenarios changed other merchants' rows")
	}
}

func TestNewGeneratorRejects(t *testing.T) {
	pop := NewPopulation(1, 100)
	now := time.Now()
	for name, o := range map[string]Options{
		"unknown kind":         {Scenarios: []Scenario{{Kind: "meteor", Merchant: 1, Start: now}}},
		"no merchant":          {Scenarios: []Scenario{{Kind: KindSilent, Merchant: 101, Start: now}}},
		"twice":                {Scenarios: []Scenario{{Kind: KindSilent, Merchant: 1, Start: now}, {Kind: KindPromotion, Merchant: 1, Start: now}}},
		"no start":             {Scenarios: []Scenario{{Kind: KindSilent, Merchant: 1}}},
		"share above 1":        {Scenarios: []Scenario{{Kind: KindVolumeDrop, Merchant: 1, Start: now, Factor: 1.5}}},
		"batch too often":      {Scenarios: []Scenario{{Kind: KindBatchRefunds, Merchant: 1, Duration: 30 * time.Second}}},
		"flash sale below 1×":  {Scenarios: []Scenario{{Kind: KindFlashSale, Merchant: 1, Start: now, Factor: 0.5}}},
		"volatile beyond 10×":  {Scenarios: []Scenario{{Kind: KindVolatileLarge, Merchant: 1, Start: now, Factor: 11}}},
		"volatile without day": {Scenarios: []Scenario{{Kind: KindVolatileLarge, Merchant: 1}}},
		"unknown profile":      {Profile: "chaotic"},
		"negative ppd":         {PaymentsPerDay: -1},
		"negative rules":       {Rules: RuleParams{DropRatio: -1}},
	} {
		o.Population = pop
		if _, err := NewGenerator(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPoisson(t *testing.T) {
	mr := newMinuteRand()
	for _, lambda := range []float64{0.5, 7, 29.9, 30, 400, 3000} {
		r := mr.seed(1, 2, uint64(lambda*10))
		const n = 20_000
		var sum, sq float64
		for range n {
			k := float64(poisson(r, lambda))
			sum += k
			sq += k * k
		}
		mean := sum / n
		v := sq/n - mean*mean
		if math.Abs(mean-lambda) > 5*math.Sqrt(lambda/n) || math.Abs(v/lambda-1) > 0.06 {
			t.Errorf("Poisson(%v): mean %v variance %v", lambda, mean, v)
		}
	}
}

// BenchmarkGenerate measures generation at the default scale, minute by
// minute through the busy hours, in each profile (the realistic one's day
// tables are built once and cached, as in a history load).
func BenchmarkGenerate(b *testing.B) {
	for _, profile := range []string{ProfileDefault, ProfileRealistic} {
		b.Run("profile="+cmp.Or(profile, "default"), func(b *testing.B) {
			g := newGen(b, Options{Seed: testSeed, Profile: profile})
			from := time.Date(2026, 11, 20, 12, 0, 0, 0, seoul(b))
			g.ExpectedPayments(from, from.Add(1000*time.Minute)) // builds the day tables
			var n int64
			b.ResetTimer()
			for i := range b.N {
				at := from.Add(time.Duration(i%1000) * time.Minute)
				if err := g.Generate(at, at.Add(time.Minute), func(Payment) error { n++; return nil }, func(Cancel) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "payments/s")
		})
	}
}
