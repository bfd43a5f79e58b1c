package sim

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// Scenario kinds. The first four are incidents the rules exist for; the
// other six are controls: never an incident, though the literal rules may
// fire on some of them (batch refunds, a flash sale's later cancels, a
// volatile merchant's bad day) — which is what priorities are for.
const (
	// KindCancelSurge: from Start for Duration (default 2 h) the merchant's
	// payments are canceled with Factor (default 5) × its base probability,
	// and those cancels arrive within minutes (median 3, at most 30).
	KindCancelSurge = "cancel_surge"
	// KindBustOut: sales stop at Start, and a Factor share (default 0.6) of
	// the payments of the Duration before Start (default 24 h) that were
	// not canceled yet are canceled in full within 30 minutes after Start.
	KindBustOut = "bust_out"
	// KindVolumeDrop: from Start (for Duration; 0 = for good) a Factor share
	// (default 0.8) of the merchant's payments disappears.
	KindVolumeDrop = "volume_drop"
	// KindSilent: from Start (for Duration; 0 = for good) no payments at all.
	KindSilent = "silent"
	// KindTiny: the merchant has no traffic except exactly one payment at
	// Start and its full cancel Duration (default 5 min) later.
	KindTiny = "tiny"
	// KindPromotion: from Start (for Duration; 0 = for good) Factor
	// (default 2) × the merchant's usual sales, cancels at its usual rate.
	KindPromotion = "promotion"
	// KindSteadyHighCancel: the merchant's cancel probability is Factor
	// (default 0.08) from Start (zero = all along, history included), so
	// its 7-day rate is as high as its hourly one.
	KindSteadyHighCancel = "steady_high_cancel"
	// KindBatchRefunds: the merchant processes refunds in batches. Its
	// cancels (Factor, default 1, × its usual probability) are held and
	// released together at batch minutes: every Duration (default 4 h)
	// from 10:00 to 18:00 of the business day (10:00, 14:00 and 18:00 by
	// default; the 10:00 batch takes the night's), from Start (zero = all
	// along, history included). A busy merchant's batch is dozens of
	// cancels in one minute, every day.
	KindBatchRefunds = "batch_refunds"
	// KindFlashSale: for Duration (default 1 h) from Start, Factor (default
	// 8) × the merchant's usual sales, cancels at its usual rate. The
	// sale's cancels arrive later as usual, so for hours afterwards its
	// hourly cancel rate runs above its 7-day rate.
	KindFlashSale = "flash_sale"
	// KindVolatileLarge: the merchant's daily volume swings with a
	// log-normal day factor of σ 0.4 (volatileSigma) instead of the usual
	// (history included), and on Start's business day its volume is
	// Factor (default 0.45) × its usual: a literal drop of more than half
	// that its own history shows to be within its range.
	KindVolatileLarge = "volatile_large"
)

// incidentKinds are the kinds that are real incidents; every other kind is
// a control.
var incidentKinds = []string{KindCancelSurge, KindBustOut, KindVolumeDrop, KindSilent}

// Incident reports whether a scenario kind is a real incident (true) or a
// control (false).
func Incident(kind string) bool { return slices.Contains(incidentKinds, kind) }

// Scenario is an incident or a control injected on top of normal traffic.
// Duration and Factor mean what the Kind's doc says; zero takes the default.
type Scenario struct {
	Kind     string        `json:"kind"`
	Merchant int64         `json:"merchant"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	Factor   float64       `json:"factor"`
	// Note explains a start time that could not be placed as wished, e.g.
	// a volume scenario early in the day when the rule cannot judge yet.
	Note string `json:"note,omitempty"`
	// Size labels the merchant's size class when ScoredDayScenarios chose
	// it (small, medium, busy, large); informational.
	Size string `json:"size,omitempty"`
}

// scenario is a normalised Scenario with its active window.
type scenario struct {
	Scenario
	end time.Time // zero: open-ended
	day int64     // volatile_large: Start's business day (civilDay)
}

func (s Scenario) normalise() (scenario, error) {
	sc := scenario{Scenario: s}
	def := func(d time.Duration, f float64) {
		if sc.Duration == 0 {
			sc.Duration = d
		}
		if sc.Factor == 0 {
			sc.Factor = f
		}
	}
	switch s.Kind {
	case KindCancelSurge:
		def(2*time.Hour, 5)
	case KindBustOut:
		def(24*time.Hour, 0.6)
	case KindVolumeDrop:
		def(0, 0.8)
	case KindSilent:
		def(0, 1)
	case KindTiny:
		def(5*time.Minute, 1)
	case KindPromotion:
		def(0, 2)
	case KindSteadyHighCancel:
		def(0, 0.08)
	case KindBatchRefunds:
		def(4*time.Hour, 1)
	case KindFlashSale:
		def(time.Hour, 8)
	case KindVolatileLarge:
		def(0, 0.45)
	default:
		return sc, fmt.Errorf("unknown scenario kind %q", s.Kind)
	}
	if sc.Duration < 0 {
		return sc, fmt.Errorf("negative duration %s", sc.Duration)
	}
	// PendingCancels looks back MaxCancelDelay for cancels still to come.
	if (s.Kind == KindTiny || s.Kind == KindBustOut) && sc.Duration > MaxCancelDelay-floodSpread {
		return sc, fmt.Errorf("duration %s: at most %s", sc.Duration, MaxCancelDelay-floodSpread)
	}
	if sc.Start.IsZero() && s.Kind != KindSteadyHighCancel && s.Kind != KindBatchRefunds {
		return sc, fmt.Errorf("a %s scenario needs a start time", s.Kind)
	}
	if s.Kind == KindBatchRefunds && sc.Duration < time.Minute {
		return sc, fmt.Errorf("batch interval %s: at least a minute", sc.Duration)
	}
	switch s.Kind {
	case KindBustOut, KindVolumeDrop, KindSteadyHighCancel:
		if !(sc.Factor > 0 && sc.Factor <= 1) {
			return sc, fmt.Errorf("factor %v: must be a share in (0, 1]", sc.Factor)
		}
	case KindCancelSurge, KindBatchRefunds:
		if !(sc.Factor > 0) || math.IsInf(sc.Factor, 0) {
			return sc, fmt.Errorf("factor %v: must be positive", sc.Factor)
		}
	case KindPromotion, KindFlashSale:
		if !(sc.Factor >= 1) || sc.Factor > extraPerScen/10 {
			return sc, fmt.Errorf("factor %v: must be in [1, %d]", sc.Factor, extraPerScen/10)
		}
	case KindVolatileLarge:
		if !(sc.Factor > 0) || sc.Factor > maxVolatileFactor {
			return sc, fmt.Errorf("factor %v: must be in (0, %d]", sc.Factor, maxVolatileFactor)
		}
	}
	// For the bust-out, Duration looks back, for batch refunds it is the
	// interval between batches; the tiny control and a volatile merchant
	// have no window. The others run forward.
	switch s.Kind {
	case KindBustOut, KindTiny, KindBatchRefunds, KindVolatileLarge:
	default:
		if sc.Duration > 0 {
			sc.end = sc.Start.Add(sc.Duration)
		}
	}
	return sc, nil
}

// maxVolatileFactor bounds a volatile merchant's scored-day factor.
const maxVolatileFactor = 10

// addsPayments reports whether the scenario creates payments of its own
// (extraRows).
func (sc *scenario) addsPayments() bool {
	switch sc.Kind {
	case KindPromotion, KindFlashSale, KindTiny, KindVolatileLarge:
		return true
	}
	return false
}

// Scenarios returns the scenarios with their defaults filled in.
func (g *Generator) Scenarios() []Scenario {
	out := make([]Scenario, len(g.scens))
	for i, s := range g.scens {
		out[i] = s.Scenario
	}
	return out
}

// active reports whether t falls in the scenario's window.
func (sc *scenario) active(t time.Time) bool {
	if !sc.Start.IsZero() && t.Before(sc.Start) {
		return false
	}
	return sc.end.IsZero() || t.Before(sc.end)
}

// scenarioRow applies a scenario to one normal payment of its merchant. The
// decisions use the payment's own random streams, so that every other
// merchant's rows are identical with and without scenarios.
func (g *Generator) scenarioRow(sc *scenario, p Payment, mer *Merchant, s *scratch) {
	t := p.ApprovedAt
	mi := int32(mer.ID - 1)
	base := cancelRate(mer.CancelRate, s.day, mi) // the merchant's usual rate today
	var c Cancel
	var ok bool
	switch sc.Kind {
	case KindSilent:
		if sc.active(t) {
			return
		}
		c, ok = g.cancel(p, base)
	case KindVolumeDrop:
		if sc.active(t) {
			pr := newPRNG(g.seed, saltDrop, uint64(p.ID))
			if pr.float() < sc.Factor {
				return
			}
		}
		c, ok = g.cancel(p, base)
	case KindTiny:
		return
	case KindBustOut:
		if !t.Before(sc.Start) {
			return
		}
		c, ok = g.cancel(p, base)
		if !t.Before(sc.Start.Add(-sc.Duration)) && (!ok || !c.CanceledAt.Before(sc.Start)) {
			pr := newPRNG(g.seed, saltFlood, uint64(p.ID))
			if pr.float() < sc.Factor {
				at := sc.Start.Add(time.Duration(pr.float() * float64(floodSpread))).UTC().Truncate(time.Microsecond)
				c = Cancel{ID: p.ID, PaymentID: p.ID, MerchantID: p.MerchantID, Amount: p.Amount, CanceledAt: at}
				ok = true
			}
		}
	case KindCancelSurge:
		if sc.active(t) {
			c, ok = g.fastCancel(p, min(1, base*sc.Factor))
		} else {
			c, ok = g.cancel(p, base)
		}
	case KindSteadyHighCancel:
		rate := base
		if sc.active(t) {
			rate = cancelRate(sc.Factor, s.day, mi)
		}
		c, ok = g.cancel(p, rate)
	case KindBatchRefunds:
		c, ok = g.cancel(p, min(1, base*sc.Factor))
		if ok && sc.active(c.CanceledAt) {
			c.CanceledAt = g.batchTime(sc, p, c.CanceledAt)
		}
	case KindVolatileLarge:
		// Thinned to the volatile day's volume when that is below the
		// usual; extraRows adds sales when it is above.
		if x := g.volatileRatio(sc, s.dayNum); x < 1 {
			if pr := newPRNG(g.seed, saltVolatileCut, uint64(p.ID)); pr.float() >= x {
				return
			}
		}
		c, ok = g.cancel(p, base)
	default: // promotion, flash sale: the normal payments stay as they are
		c, ok = g.cancel(p, base)
	}
	s.rows = append(s.rows, row{p: p, c: c, hasC: ok})
}

// Batch minutes of batch_refunds: every Duration from batchFirst to
// batchLast of the business day. A batch's cancels are spread over its
// first batchSpread, within the one minute.
const (
	batchFirst  = 10 * time.Hour
	batchLast   = 18 * time.Hour
	batchSpread = 40 * time.Second
)

// batchTime is when a batch-refunding merchant releases the cancel that
// would come at natural: the first batch at or after it, or the last one
// before it where waiting would take the cancel beyond MaxCancelDelay.
func (g *Generator) batchTime(sc *scenario, p Payment, natural time.Time) time.Time {
	l := natural.In(g.loc)
	y, mo, d := l.Date()
	var prev, next time.Time
	for k := -1; k <= 1 && next.IsZero(); k++ {
		midnight := time.Date(y, mo, d+k, 0, 0, 0, 0, g.loc)
		for off := batchFirst; off <= batchLast; off += sc.Duration {
			bt := midnight.Add(off)
			if bt.Before(natural) {
				prev = bt
				continue
			}
			next = bt
			break
		}
	}
	at := next
	if !at.Add(batchSpread).Before(p.ApprovedAt.Add(MaxCancelDelay)) {
		at = prev // at most 16 hours before natural, so after the payment
	}
	pr := newPRNG(g.seed, saltBatch, uint64(p.ID))
	return at.Add(time.Duration(pr.float() * float64(batchSpread))).UTC().Truncate(time.Microsecond)
}

// volatileRatio is a volatile merchant's volume on business day day
// relative to what it would have been without the scenario.
func (g *Generator) volatileRatio(sc *scenario, day int64) float64 {
	f := sc.Factor
	if day != sc.day {
		f = logNormalFactor(g.seed, saltVolatile, dayKey(sc.Merchant, day), volatileSigma)
	}
	return g.weekdayFactor(day) * f / g.volumeFactor(sc.Merchant, day)
}

// extraRows adds the payments a scenario creates in minute m: a promotion's
// or flash sale's additional sales, a volatile merchant's on a day above
// its usual, a tiny merchant's single payment.
func (g *Generator) extraRows(m int64, i int, s *scratch) {
	sc := &g.scens[i]
	mer := g.pop.Merchant(sc.Merchant)
	lo, hi := minuteStart(m), minuteStart(m+1)
	switch sc.Kind {
	case KindTiny:
		if sc.Start.Before(lo) || !sc.Start.Before(hi) {
			return
		}
		id := m*IDsPerMinute + extraBase + int64(i)*extraPerScen
		p := Payment{ID: id, MerchantID: mer.ID, Amount: round100(mer.MedianAmount()), ApprovedAt: sc.Start.UTC().Truncate(time.Microsecond)}
		c := Cancel{ID: p.ID, PaymentID: p.ID, MerchantID: p.MerchantID, Amount: p.Amount, CanceledAt: p.ApprovedAt.Add(sc.Duration)}
		s.rows = append(s.rows, row{p: p, c: c, hasC: true})
	case KindPromotion, KindFlashSale:
		if sc.Start.After(lo) {
			lo = sc.Start
		}
		if !sc.end.IsZero() && sc.end.Before(hi) {
			hi = sc.end
		}
		g.extraSales(m, i, lo, hi, sc.Factor-1, s)
	case KindVolatileLarge:
		if x := g.volatileRatio(sc, s.dayNum); x > 1 {
			g.extraSales(m, i, lo, hi, x-1, s)
		}
	}
}

// extraSales adds scenario i's merchant's sales in [lo, hi) within minute
// m at extra × its usual rate, with cancels at its usual rate.
func (g *Generator) extraSales(m int64, i int, lo, hi time.Time, extra float64, s *scratch) {
	if !hi.After(lo) {
		return
	}
	mer := g.pop.Merchant(g.scens[i].Merchant)
	width := hi.Sub(lo)
	_, mod := g.clock(m)
	lambda := PaymentsPerMinute(g.ppd, mod) * mer.Weight * extra * float64(width) / float64(time.Minute)
	if g.realistic {
		lambda *= g.volumeFactor(mer.ID, s.dayNum)
	}
	rate := cancelRate(mer.CancelRate, s.day, int32(mer.ID-1))
	base := m*IDsPerMinute + extraBase + int64(i)*extraPerScen
	r := s.xr.seed(g.seed, saltExtra, uint64(m)*maxScenarios+uint64(i))
	n := min(poisson(r, lambda), extraPerScen)
	for j := range n {
		at := lo.Add(time.Duration(r.Float64() * float64(width))).UTC().Truncate(time.Microsecond)
		p := Payment{ID: base + int64(j), MerchantID: mer.ID, Amount: round100(math.Exp(mer.AmountMu + mer.AmountSigma*r.NormFloat64())), ApprovedAt: at}
		c, ok := g.cancel(p, rate)
		s.rows = append(s.rows, row{p: p, c: c, hasC: ok})
	}
}

// Lead times of DefaultScenarios: when, after now, each incident is meant
// to become true. They are staggered so a demo shows one incident every
// few minutes, and leave a margin for the randomness of the data (the
// exact minute is in the ground truth).
const (
	leadTiny      = 1 * time.Minute
	leadBustOut   = 2 * time.Minute  // fires in its first minute
	leadSilent    = 5 * time.Minute  // target of the placement
	leadDrop      = 8 * time.Minute  // idem
	surgeHeadway  = -5 * time.Minute // a surge needs ~12–15 min to double the hourly rate
	promotionLead = -30 * time.Minute
)

// DefaultScenarios picks one merchant per scenario kind, deterministically
// from the population's ranks, and start times relative to now such that
// each incident becomes true during a live run starting at now:
//
//   - bust_out starts 2 minutes after now and fires at once (its flood);
//   - silent and volume_drop start earlier today, at the time computed
//     from the diurnal curve such that today ≤ 50% of the same-time
//     expectation is reached about 5 and 8 minutes after now. The actual
//     amounts scatter around the curve, which moves that moment by up to
//     half an hour either way: Generator.DefaultScenarios places them on
//     the generated data instead, to the minute. Before about 01:43 (while
//     the expectation is below 5% of a daily average) the rule cannot
//     judge yet: the drop then starts at midnight and fires as soon as the
//     rule judges; when the target would fall after midnight it starts a
//     minute after now and can fire only the next day. Note says so;
//   - cancel_surge started 5 minutes before now: a ×5 cancel rate doubles
//     the hourly rate after 12–15 minutes, so it fires about 5–12 minutes
//     after now (measured over several times of day);
//   - controls: tiny 1 minute after now, promotion since 30 minutes before
//     now, steady_high_cancel all along.
//
// Merchants are chosen by expected volume at DefaultPaymentsPerDay:
// volume scenarios use merchants expected at ≥ 2 × the large threshold
// with ≥ 5,000 payments a day, the surge a busy merchant with a high base
// rate (a clear signal within minutes), the bust-out a small shop (100–300
// payments a day), the steady high-cancel control the busiest merchant (so
// that Poisson noise on an 8% rate cannot double it in any hour, night
// included), the promotion the busy merchant with the lowest cancel rate
// (see below). Generator.DefaultScenarios is the better choice when a
// generator is at hand.
func DefaultScenarios(pop *Population, now time.Time, loc *time.Location) []Scenario {
	if loc == nil {
		var err error
		if loc, err = time.LoadLocation("Asia/Seoul"); err != nil {
			loc = time.UTC
		}
	}
	ppd := DefaultPaymentsPerDay
	now = now.Truncate(time.Minute)
	used := map[int64]bool{}
	pick := func(ok func(id int64) bool) int64 {
		for _, id := range pop.ranked {
			if !used[id] && ok(id) {
				used[id] = true
				return id
			}
		}
		return 0
	}
	daily := func(id int64) float64 { return pop.ExpectedDailyPayments(id, ppd) }
	large := func(id int64) bool { return pop.ExpectedDailyAmount(id, ppd) >= 2*LargeDailyAmount }

	steady := pick(func(id int64) bool { return daily(id) >= 20_000 })
	silent := pick(func(id int64) bool { return large(id) && daily(id) >= 5_000 })
	drop := pick(func(id int64) bool { return large(id) && daily(id) >= 5_000 })
	// Controls must stay quiet around the clock, and at night even a busy
	// merchant's hourly cancels are few enough for Poisson noise to double
	// them now and then (cancel_rate_spike's min_cancels of 5 is reached
	// by chance when 1–10 cancels an hour are expected). So the promotion
	// goes to the busy merchant with the lowest cancel rate, far below the
	// rule's baseline floor (0.2%): noise then has to reach 5 cancels, or
	// twice the floor's count, where a fraction of that is expected.
	promo := lowestCancel(pop, func(id int64) bool { return !used[id] && daily(id) >= 5_000 })
	used[promo] = true
	// The busiest merchants between 10,000 and 40,000 payments a day, the
	// highest base cancel rate among them.
	var cands []int64
	for _, id := range pop.ranked {
		if !used[id] && daily(id) >= 10_000 && daily(id) <= 40_000 {
			cands = append(cands, id)
		}
	}
	slices.SortStableFunc(cands, func(a, b int64) int {
		return -cmpFloat(pop.Merchant(a).CancelRate, pop.Merchant(b).CancelRate, a, b)
	})
	var surge int64
	if len(cands) > 0 {
		surge = cands[0]
		used[surge] = true
	}
	// A small shop: quiet enough never to spike by chance (well under one
	// cancel an hour), big enough for its flood (60% of a day's sales) to
	// be dozens of cancels.
	bust := pick(func(id int64) bool {
		return daily(id) >= 100 && daily(id) <= 300 && pop.Merchant(id).CancelRate <= 0.01
	})
	tiny := pop.Tiny()
	used[tiny] = true

	var out []Scenario
	add := func(s Scenario) {
		if s.Merchant != 0 {
			out = append(out, s)
		}
	}
	add(Scenario{Kind: KindBustOut, Merchant: bust, Start: now.Add(leadBustOut)})
	add(volumeScenario(KindSilent, silent, 1, now, now.Add(leadSilent), loc))
	add(volumeScenario(KindVolumeDrop, drop, 0.8, now, now.Add(leadDrop), loc))
	add(Scenario{Kind: KindCancelSurge, Merchant: surge, Start: now.Add(surgeHeadway), Duration: 2 * time.Hour, Factor: 5})
	add(Scenario{Kind: KindTiny, Merchant: tiny, Start: now.Add(leadTiny), Duration: 5 * time.Minute})
	add(Scenario{Kind: KindPromotion, Merchant: promo, Start: now.Add(promotionLead), Factor: 2})
	add(Scenario{Kind: KindSteadyHighCancel, Merchant: steady, Factor: 0.08})
	return out
}

// volumeScenario places the start of a drop that keeps a share 1−f of
// sales such that, by the expected curve, volume_drop (default thresholds)
// becomes true in the minute containing target. Today's amount at time t
// is cum(S) + (1−f)·(cum(t)−cum(S)); it is at most half the expectation
// cum(t) when cum(S) ≤ (f−½)/f · cum(t), so S is the latest minute meeting
// that. The drop must start on the same business day as target, and the
// rule needs expected ≥ 5% of a daily average.
func volumeScenario(kind string, id int64, f float64, now, target time.Time, loc *time.Location) Scenario {
	s := Scenario{Kind: kind, Merchant: id, Factor: f}
	const dropRatio, minFraction = 0.5, 0.05
	lt := target.In(loc)
	ln := now.In(loc)
	tm := lt.Hour()*60 + lt.Minute()
	cumT := DiurnalCumulative(tm + 1)
	judged := firstJudged(minFraction)
	switch {
	case f <= dropRatio:
		s.Start = now.Add(time.Minute)
		s.Note = fmt.Sprintf("a drop of %.0f%% never takes sales below %.0f%% of the expectation: the rule should not fire", 100*f, 100*(1-dropRatio))
	case ln.YearDay() != lt.YearDay() || ln.Year() != lt.Year():
		s.Start = now.Add(time.Minute)
		s.Note = fmt.Sprintf("too close to midnight: starts at %s and can fire only tomorrow from about %02d:%02d, once the expectation reaches %.0f%% of a daily average",
			s.Start.In(loc).Format("15:04"), judged/60, judged%60, 100*minFraction)
	case cumT < minFraction:
		s.Start = time.Date(ln.Year(), ln.Month(), ln.Day(), 0, 0, 0, 0, loc)
		s.Note = fmt.Sprintf("early in the day: starts at midnight, but the rule cannot judge before about %02d:%02d (expectation below %.0f%% of a daily average), so it fires then",
			judged/60, judged%60, 100*minFraction)
	default:
		limit := (f - dropRatio) / f * cumT
		sm := 0
		for sm+1 <= tm && DiurnalCumulative(sm+1) <= limit {
			sm++
		}
		s.Start = time.Date(lt.Year(), lt.Month(), lt.Day(), sm/60, sm%60, 0, 0, loc)
	}
	return s
}

// lowestCancel is the merchant with the lowest base cancel rate among
// those ok accepts (the busiest on ties), or 0.
func lowestCancel(pop *Population, ok func(id int64) bool) int64 {
	var best int64
	for _, id := range pop.ranked {
		if ok(id) && (best == 0 || pop.Merchant(id).CancelRate < pop.Merchant(best).CancelRate) {
			best = id
		}
	}
	return best
}

// firstJudged is the first minute of the day M at whose end the expected
// share of a day reaches fraction.
func firstJudged(fraction float64) int {
	m := 0
	for m < MinutesPerDay-1 && DiurnalCumulative(m+1) < fraction {
		m++
	}
	return m
}

// DefaultScenarios is the package-level DefaultScenarios for this
// generator's population and time zone, with the volume scenarios placed
// on the generator's own data rather than the expected curve: each start
// is the latest minute at which the drop makes volume_drop (with the
// generator's Rules) first hold in the minute of its target (5 and 8
// minutes after now), not earlier than now. That needs the merchants' last
// 8 days, generated in about a second at full scale. The generator's own
// scenarios are ignored; build the generator for the run with the result.
func (g *Generator) DefaultScenarios(now time.Time) []Scenario {
	sc := DefaultScenarios(g.pop, now, g.loc)
	now = now.Truncate(time.Minute)
	targets := map[int64]time.Time{}
	for _, s := range sc {
		switch {
		case s.Note != "":
		case s.Kind == KindSilent:
			targets[s.Merchant] = now.Add(leadSilent)
		case s.Kind == KindVolumeDrop:
			targets[s.Merchant] = now.Add(leadDrop)
		}
	}
	if len(targets) == 0 {
		return sc
	}
	latest := now.Add(max(leadSilent, leadDrop) + time.Minute)
	from := HistoryStart(latest, DefaultHistoryDays, g.loc)
	rows, err := g.plain().merchantPayments(context.Background(), targets, from, latest)
	if err != nil {
		panic(fmt.Sprintf("sim: generating without a context cannot fail: %v", err))
	}
	for i := range sc {
		if t, ok := targets[sc[i].Merchant]; ok {
			g.placeVolume(&sc[i], rows[sc[i].Merchant], now, t)
		}
	}
	return sc
}

// plain is g without scenarios.
func (g *Generator) plain() *Generator {
	p := *g
	p.scens, p.extras = nil, nil
	p.role = slices.Repeat([]int16{-1}, len(g.role))
	return &p
}

// merchantPayments generates [from, to) and keeps the payments of the
// given merchants, in time order.
func (g *Generator) merchantPayments(ctx context.Context, ids map[int64]time.Time, from, to time.Time) (map[int64][]Payment, error) {
	chunks := hourSpans(from, to, historyChunk)
	parts := make([][]Payment, len(chunks))
	err := parallel(ctx, chunks, 0, func(ctx context.Context, _ int, sp span) error {
		i, _ := slices.BinarySearchFunc(chunks, sp.from, func(c span, t time.Time) int { return c.from.Compare(t) })
		return g.Generate(sp.from, sp.to, func(p Payment) error {
			if _, ok := ids[p.MerchantID]; ok {
				parts[i] = append(parts[i], p)
			}
			return nil
		}, nil)
	})
	if err != nil {
		return nil, err
	}
	out := map[int64][]Payment{}
	for _, part := range parts {
		for _, p := range part {
			out[p.MerchantID] = append(out[p.MerchantID], p)
		}
	}
	return out, nil
}

// placeVolume sets s.Start to the latest minute S of target's business day
// such that, with the drop from S, SPEC §6 holds at some minute in
// [now, target] and at none in [S, now): the incident becomes true during
// the live run, at (or just before) target.
func (g *Generator) placeVolume(s *Scenario, ps []Payment, now, target time.Time) {
	loc := g.loc
	lt := target.In(loc)
	y, mo, d := lt.Date()
	var dayStart [8]time.Time // dayStart[k] = 00:00 of D−k
	for k := range dayStart {
		dayStart[k] = time.Date(y, mo, d-k, 0, 0, 0, 0, loc)
	}
	day := dayStart[0]
	tm := int(target.Truncate(time.Minute).Sub(day) / time.Minute)
	nowIdx := int(now.Sub(day) / time.Minute)
	var all, kept, curve [MinutesPerDay + 1]int64 // prefix sums after the loop
	var sum7 int64
	for _, p := range ps {
		if !p.ApprovedAt.Before(day) {
			i := int(p.ApprovedAt.Sub(day) / time.Minute)
			if i >= MinutesPerDay {
				continue
			}
			all[i+1] += p.Amount
			if pr := newPRNG(g.seed, saltDrop, uint64(p.ID)); pr.float() >= s.Factor {
				kept[i+1] += p.Amount
			}
			continue
		}
		for k := 1; k < len(dayStart); k++ {
			if !p.ApprovedAt.Before(dayStart[k]) && p.ApprovedAt.Before(dayStart[k-1]) {
				i := min(int(p.ApprovedAt.Sub(dayStart[k])/time.Minute), MinutesPerDay-1)
				curve[i+1] += p.Amount
				sum7 += p.Amount
				break
			}
		}
	}
	for i := 1; i <= MinutesPerDay; i++ {
		all[i] += all[i-1]
		kept[i] += kept[i-1]
		curve[i] += curve[i-1]
	}
	if _, large := volumeFires(g.rules, sum7, 0, 0); !large {
		s.Note = fmt.Sprintf("not large on the generated data (%d KRW over 7 days): volume_drop cannot fire; start from the expected curve", sum7)
		return
	}
	// fires(S, M): the condition at minute M with the drop from minute S.
	fires := func(S, M int) bool {
		today := all[S] + kept[M+1] - kept[S]
		f, _ := volumeFires(g.rules, sum7, curve[M+1], today)
		return f
	}
	firesIn := func(S, lo, hi int) bool {
		for M := max(S, lo); M <= hi; M++ {
			if fires(S, M) {
				return true
			}
		}
		return false
	}
	for S := tm; S >= 0; S-- {
		if !firesIn(S, nowIdx, tm) {
			continue
		}
		// The latest start that fires by target. If noise makes it fire
		// before now already, one minute later fires after target instead.
		if firesIn(S, S, nowIdx-1) && S < tm {
			S++
		}
		s.Start = time.Date(y, mo, d, S/60, S%60, 0, 0, loc)
		return
	}
	s.Note = "no start time today makes volume_drop hold by the target on the generated data; start from the expected curve"
}
