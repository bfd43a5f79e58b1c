package sim

import (
	"math"
	"slices"
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
	flash, volatile := ids[4], ids[6]
	// Batch refunds at the merchant with the most cancels a day.
	var batch int64
	for _, id := range ids[7:100] {
		if batch == 0 || pop.ExpectedDailyPayments(id, ppd)*pop.Merchant(id).CancelRate > pop.ExpectedDailyPayments(batch, ppd)*pop.Merchant(batch).CancelRate {
			batch = id
		}
	}
	sc := []Scenario{
		{Kind: KindFlashSale, Merchant: flash, Start: now},
		{Kind: KindBatchRefunds, Merchant: batch, Factor: 1.5},
		{Kind: KindVolatileLarge, Merchant: volatile, Start: now},
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
	// boosted: factor × the merchant's sales in [a, b), at its usual
	// cancel rate.
	boosted := func(t *testing.T, m int64, a, b time.Time, factor float64) {
		base, got := win(m, a, b)
		rate := pop.Merchant(m).CancelRate
		t.Logf("%d payments vs %d, %d canceled", got.payments, base.payments, got.cancelsOfThem)
		if !within(float64(got.payments), factor*float64(base.payments), 4) {
			t.Errorf("%d payments, want %g × %d", got.payments, factor, base.payments)
		}
		if !within(float64(got.cancelsOfThem), rate*float64(got.payments), 4) {
			t.Errorf("%d canceled, want the usual rate %.4f of %d", got.cancelsOfThem, rate, got.payments)
		}
	}
	t.Run("promotion", func(t *testing.T) { boosted(t, promo, now, to, 2) })
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
	t.Run("flash_sale", func(t *testing.T) {
		boosted(t, flash, now, now.Add(time.Hour), 8)
		// Before and after the hour, sales as usual.
		for _, w := range [][2]time.Time{{now.Add(-2 * time.Hour), now}, {now.Add(time.Hour), to}} {
			if b, a := win(flash, w[0], w[1]); a.payments != b.payments {
				t.Errorf("flash sale outside its hour %v: %d payments vs %d", w, a.payments, b.payments)
			}
		}
	})
	t.Run("batch_refunds", func(t *testing.T) {
		daily := pop.ExpectedDailyPayments(batch, ppd) * pop.Merchant(batch).CancelRate * 1.5
		// The smallest batch (18:00) takes the cancels due from 14:00 on:
		// the curve's share of those hours.
		smallest := daily * (DiurnalCumulative(18*60) - DiurnalCumulative(14*60))
		if smallest < 30 {
			t.Fatalf("the test population's best batch merchant expects %.0f cancels in its smallest batch", smallest)
		}
		perMinute := map[int64]int{} // Unix minute → cancels
		ps := map[int64]Payment{}
		for _, p := range p1 {
			if p.MerchantID == batch {
				ps[p.ID] = p
			}
		}
		for _, c := range c1 {
			if c.MerchantID != batch {
				continue
			}
			l := c.CanceledAt.In(loc)
			tod := time.Duration(l.Hour())*time.Hour + time.Duration(l.Minute())*time.Minute + time.Duration(l.Second())*time.Second
			slot := tod.Truncate(time.Hour)
			if (slot != 10*time.Hour && slot != 14*time.Hour && slot != 18*time.Hour) || tod-slot >= batchSpread {
				t.Fatalf("cancel at %s, not in a batch minute", l.Format(time.DateTime))
			}
			if d := c.CanceledAt.Sub(ps[c.PaymentID].ApprovedAt); d <= 0 || d >= MaxCancelDelay {
				t.Fatalf("batched cancel %s after its payment", d)
			}
			perMinute[unixMinute(c.CanceledAt)]++
		}
		// Every batch of the days whose cancels the window covers (from
		// the payments of the 24 hours before them on) has dozens.
		for _, m := range []time.Time{
			time.Date(2026, 11, 19, 10, 0, 0, 0, loc), time.Date(2026, 11, 19, 14, 0, 0, 0, loc), time.Date(2026, 11, 19, 18, 0, 0, 0, loc),
			time.Date(2026, 11, 20, 10, 0, 0, 0, loc), time.Date(2026, 11, 20, 14, 0, 0, 0, loc),
		} {
			if n := perMinute[unixMinute(m)]; n < 20 {
				t.Errorf("batch at %s: %d cancels, want ≥ 20 (%.0f a day expected)", m.Format(time.DateTime), n, daily)
			}
		}
		t.Logf("batch refunds: %d batch minutes (%.0f cancels a day expected)", len(perMinute), daily)
	})
	t.Run("volatile_large", func(t *testing.T) {
		sv := &with.scens[slices.IndexFunc(with.scens, func(s scenario) bool { return s.Kind == KindVolatileLarge })]
		for _, d := range []int{-1, 0} {
			day := time.Date(2026, 11, 20+d, 0, 0, 0, 0, loc)
			end := day.AddDate(0, 0, 1)
			if to.Before(end) {
				end = to
			}
			base, got := win(volatile, day, end)
			x := with.volatileRatio(sv, civilDay(day, loc))
			want := x * float64(base.payments)
			t.Logf("volatile: %s ×%.3f: %d payments vs %d", day.Format(time.DateOnly), x, got.payments, base.payments)
			if d == 0 && x != 0.45 {
				t.Errorf("the scored day's factor is %v, want 0.45", x)
			}
			if !within(float64(got.payments), want, 4) {
				t.Errorf("volatile merchant on %s: %d payments, want %.3f × %d", day.Format(time.DateOnly), got.payments, x, base.payments)
			}
		}
		// Its day factors over three years: log-normal, σ 0.4, mean 1.
		var logs []float64
		for d := sv.day - 1100; d < sv.day; d++ {
			logs = append(logs, math.Log(with.volatileRatio(sv, d)))
		}
		m, sd := meanSD(logs)
		n := float64(len(logs))
		if math.Abs(m+volatileSigma*volatileSigma/2) > 5*volatileSigma/math.Sqrt(n) || math.Abs(sd-volatileSigma) > 5*volatileSigma/math.Sqrt(2*n) {
			t.Errorf("volatile day factors: log mean %.3f sd %.3f, want %.3f and %.1f", m, sd, -volatileSigma*volatileSigma/2, volatileSigma)
		}
	})
	t.Run("tiny", func(t *testing.T) {
		_, got := win(pop.Tiny(), from, to)
		if got.payments != 1 || got.cancelsOfThem != 1 || got.cancelsArrived != 1 {
			t.Errorf("tiny: %+v, want exactly 1 payment and 1 cancel", got)
		}
	})
}
