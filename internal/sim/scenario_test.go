package sim

import (
	"math"
	"testing"
	"time"
)

// count is what one merchant did in a window.
type count struct {
	payments, cancelsOfThem, amount int64 // payments approved in the window, how many of them got a cancel
	cancelsArrived                  int64 // cancels with canceled_at in the window
}

func countFor(ps []Payment, cs []Cancel, merchant int64, from, to time.Time) count {
	var c count
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	paid := map[int64]bool{}
	for _, p := range ps {
		if p.MerchantID == merchant && in(p.ApprovedAt) {
			c.payments++
			c.amount += p.Amount
			paid[p.ID] = true
		}
	}
	for _, x := range cs {
		if x.MerchantID != merchant {
			continue
		}
		if paid[x.PaymentID] {
			c.cancelsOfThem++
		}
		if in(x.CanceledAt) {
			c.cancelsArrived++
		}
	}
	return c
}

// within reports |got − want| ≤ k standard deviations of a binomial/Poisson
// count with mean want.
func within(got, want float64, k float64) bool {
	return math.Abs(got-want) <= k*math.Sqrt(max(want, 1))
}

func TestScenarioEffects(t *testing.T) {
	pop := NewPopulation(testSeed, 2000)
	const ppd = 1_000_000
	loc := seoul(t)
	now := time.Date(2026, 11, 20, 14, 0, 0, 0, loc)
	ids := pop.Ranked()
	surge, silent, drop, promo, steady, bust := ids[5], ids[0], ids[1], ids[2], ids[3], ids[60]
	sc := []Scenario{
		{Kind: KindCancelSurge, Merchant: surge, Start: now},
		{Kind: KindSilent, Merchant: silent, Start: now},
		{Kind: KindVolumeDrop, Merchant: drop, Start: now},
		{Kind: KindPromotion, Merchant: promo, Start: now},
		{Kind: KindSteadyHighCancel, Merchant: steady},
		{Kind: KindBustOut, Merchant: bust, Start: now},
		{Kind: KindTiny, Merchant: pop.Tiny(), Start: now.Add(time.Minute)},
	}
	plain := newGen(t, Options{Seed: testSeed, Population: pop, PaymentsPerDay: ppd})
	with := newGen(t, Options{Seed: testSeed, Population: pop, PaymentsPerDay: ppd, Scenarios: sc})
	from, to := now.Add(-48*time.Hour), now.Add(3*time.Hour)
	p0, c0 := collect(t, plain, from, to)
	p1, c1 := collect(t, with, from, to)
	win := func(m int64, a, b time.Time) (count, count) {
		return countFor(p0, c0, m, a, b), countFor(p1, c1, m, a, b)
	}

	t.Run("cancel_surge", func(t *testing.T) {
		base, got := win(surge, now, now.Add(2*time.Hour))
		rate := pop.Merchant(surge).CancelRate
		if got.payments != base.payments {
			t.Errorf("a surge changed sales: %d vs %d", got.payments, base.payments)
		}
		want := 5 * rate * float64(got.payments)
		t.Logf("surge: %d payments, %d canceled (%.0f expected at ×5; %d without the surge)", got.payments, got.cancelsOfThem, want, base.cancelsOfThem)
		if !within(float64(got.cancelsOfThem), want, 4) || !within(float64(base.cancelsOfThem), rate*float64(base.payments), 4) {
			t.Error("cancel count is not 5× the base rate")
		}
		// They arrive within minutes: nearly all inside the window + 30 min.
		late := countFor(p1, c1, surge, now, now.Add(2*time.Hour+surgeMax))
		if late.cancelsArrived < got.cancelsOfThem {
			t.Errorf("%d of %d surge cancels arrived within 30 minutes", late.cancelsArrived, got.cancelsOfThem)
		}
	})
	t.Run("silent", func(t *testing.T) {
		before, _ := win(silent, now.Add(-time.Hour), now)
		_, got := win(silent, now, to)
		_, kept := win(silent, now.Add(-time.Hour), now)
		if got.payments != 0 || kept != before {
			t.Errorf("silent merchant: %d payments after start; before the start %+v vs %+v", got.payments, kept, before)
		}
	})
	t.Run("volume_drop", func(t *testing.T) {
		base, got := win(drop, now, to)
		if !within(float64(got.payments), 0.2*float64(base.payments), 4) {
			t.Errorf("volume drop: %d of %d payments left, want 20%%", got.payments, base.payments)
		}
	})
	t.Run("promotion", func(t *testing.T) {
		base, got := win(promo, now, to)
		rate := pop.Merchant(promo).CancelRate
		t.Logf("promotion: %d payments vs %d, %d canceled", got.payments, base.payments, got.cancelsOfThem)
		if !within(float64(got.payments), 2*float64(base.payments), 4) {
			t.Errorf("promotion: %d payments, want 2 × %d", got.payments, base.payments)
		}
		if !within(float64(got.cancelsOfThem), rate*float64(got.payments), 4) {
			t.Errorf("promotion cancels %d, want the usual rate %.4f of %d", got.cancelsOfThem, rate, got.payments)
		}
	})
	t.Run("steady_high_cancel", func(t *testing.T) {
		_, got := win(steady, from, now)
		if !within(float64(got.cancelsOfThem), 0.08*float64(got.payments), 4) {
			t.Errorf("steady: %d of %d canceled, want 8%%", got.cancelsOfThem, got.payments)
		}
	})
	t.Run("bust_out", func(t *testing.T) {
		_, after := win(bust, now, to)
		_, flood := win(bust, now, now.Add(floodSpread))
		_, recent := win(bust, now.Add(-24*time.Hour), now)
		base, _ := win(bust, now, now.Add(floodSpread))
		t.Logf("bust-out: %d recent payments, %d cancels in the 30 minutes after (normally %d)", recent.payments, flood.cancelsArrived, base.cancelsArrived)
		if after.payments != 0 {
			t.Errorf("%d payments after the bust-out", after.payments)
		}
		if !within(float64(flood.cancelsArrived), 0.6*float64(recent.payments), 5) {
			t.Errorf("flood of %d cancels, want about 60%% of %d", flood.cancelsArrived, recent.payments)
		}
	})
	t.Run("tiny", func(t *testing.T) {
		_, got := win(pop.Tiny(), from, to)
		if got.payments != 1 || got.cancelsOfThem != 1 || got.cancelsArrived != 1 {
			t.Errorf("tiny: %+v, want exactly 1 payment and 1 cancel", got)
		}
	})
}
