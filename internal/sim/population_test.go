package sim

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestPopulationShape asserts SPEC §1's skew for the test seed: the top 1%
// carry at least half of the payments, 50–100 merchants are expected above
// 1,000,000,000 KRW a day at 3M payments a day, weights sum to 1.
func TestPopulationShape(t *testing.T) {
	p := NewPopulation(testSeed, 0)
	if p.Len() != DefaultMerchants {
		t.Fatalf("%d merchants, want %d", p.Len(), DefaultMerchants)
	}
	var sum float64
	for _, m := range p.Merchants() {
		sum += m.Weight
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("weights sum to %v", sum)
	}
	top := p.TopShare(0.01)
	large := p.Large(LargeDailyAmount, DefaultPaymentsPerDay)
	t.Logf("top-1%% share %.3f, large merchants %d, biggest %.0f payments/day", top, len(large),
		p.ExpectedDailyPayments(p.Ranked()[0], DefaultPaymentsPerDay))
	if top < 0.5 {
		t.Errorf("top-1%% share %.3f, want >= 0.50", top)
	}
	if len(large) < 50 || len(large) > 100 {
		t.Errorf("%d large merchants, want 50..100", len(large))
	}
	for i := 1; i < len(large); i++ {
		if p.ExpectedDailyAmount(large[i-1], 1) < p.ExpectedDailyAmount(large[i], 1) {
			t.Fatalf("Large not sorted at %d", i)
		}
	}
	tiny := p.Tiny()
	if n := p.ExpectedDailyPayments(tiny, DefaultPaymentsPerDay); n > 3 {
		t.Errorf("tiny merchant expects %.1f payments a day", n)
	}
}

func TestPopulationNamesAndDeterminism(t *testing.T) {
	p := NewPopulation(testSeed, 5000)
	q := NewPopulation(testSeed, 5000)
	seen := map[string]bool{}
	for i, m := range p.Merchants() {
		if m.ID != int64(i+1) {
			t.Fatalf("merchant %d has id %d", i, m.ID)
		}
		if seen[m.Name] {
			t.Fatalf("duplicate name %q", m.Name)
		}
		seen[m.Name] = true
		if !strings.Contains(m.Name, "#") || m.Trade == "" {
			t.Fatalf("odd merchant %+v", m)
		}
		if q.Merchants()[i] != m {
			t.Fatalf("population not deterministic at %d: %+v vs %+v", i, m, q.Merchants()[i])
		}
		if m.CancelRate < minCancel || m.CancelRate > maxCancel || m.AmountSigma <= 0 {
			t.Fatalf("merchant out of range: %+v", m)
		}
	}
	if p.Merchant(0) != nil || p.Merchant(5001) != nil || p.Merchant(1).ID != 1 {
		t.Error("Merchant(id) bounds")
	}
	if NewPopulation(testSeed+1, 5000).Merchants()[0] == p.Merchants()[0] {
		t.Error("another seed gives the same first merchant")
	}
	t.Logf("e.g. %s, %s", p.Merchant(p.Ranked()[0]).Name, p.Merchant(p.Tiny()).Name)
}

// TestSampleMatchesWeights checks the alias sampler against the weights
// for the heaviest merchants (where counts are large enough to compare).
func TestSampleMatchesWeights(t *testing.T) {
	p := NewPopulation(testSeed, 0)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 2_000_000
	counts := map[int64]int{}
	for range n {
		counts[p.Sample(r).ID]++
	}
	for _, id := range p.Ranked()[:20] {
		want := p.Merchant(id).Weight * n
		got := float64(counts[id])
		if math.Abs(got-want) > 5*math.Sqrt(want) {
			t.Errorf("merchant %d: %v draws, want %.0f ± %.0f", id, got, want, 5*math.Sqrt(want))
		}
	}
}

// TestDailyTotal: a generated day at the default volume is 3,000,000 ± 2%.
func TestDailyTotal(t *testing.T) {
	g := newGen(t, Options{Seed: testSeed})
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, seoul(t))
	var n int64
	if err := g.Generate(day, day.AddDate(0, 0, 1), func(Payment) error { n++; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("payments in a day: %d", n)
	if math.Abs(float64(n)-DefaultPaymentsPerDay) > 0.02*DefaultPaymentsPerDay {
		t.Errorf("%d payments in a day, want 3,000,000 ± 2%%", n)
	}
	if e := g.ExpectedPayments(day, day.AddDate(0, 0, 1)); math.Abs(e-DefaultPaymentsPerDay) > 1 {
		t.Errorf("expected payments %v", e)
	}
}
