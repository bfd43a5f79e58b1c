package sim

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
)

// Payment is a row of payments (status 'approved').
type Payment struct {
	ID, MerchantID, Amount int64
	ApprovedAt             time.Time
}

// Cancel is a row of payment_cancels. Amount is the canceled amount: the
// whole payment or, for a partial cancel, part of it.
type Cancel struct {
	ID, PaymentID, MerchantID, Amount int64
	CanceledAt                        time.Time
}

// ID layout: id = minute × IDsPerMinute + index, where minute counts
// minutes since the Unix epoch, so ids are unique, deterministic and grow
// with time (2026 gives ids around 3·10^14, far below 2^63). The index
// ranges keep the independent streams of one minute apart:
const (
	IDsPerMinute = 10_000_000
	// Normal traffic: index = position of the payment within its minute.
	maxPerMinute = 4_000_000
	// Scenario extras (promotion, flash sale, volatile, tiny): 4,000,000 +
	// scenario × 10,000 + j.
	extraBase       = 4_000_000
	extraPerScen    = 10_000
	maxScenarios    = 100
	fillerBase      = 5_000_000 // live filler: fillerBase + ms-in-minute × fillerPerMs + k
	fillerPerMs     = 80
	maxPaymentsDay  = 1_000_000_000
	minuteSeconds   = 60
	microsPerMinute = 60_000_000
)

// A normal cancel arrives a whole number of days plus a short delay after
// its payment. The short part is log-normal (median 20 minutes, σ 1.3:
// seven in eight within an hour and a half, a tail of hours) and runs on
// the business clock (see activity), not the wall clock; the day part is 0 for 72% of
// cancels and up to 6 days for the rest ("changed my mind the next day",
// returns). Whole days keep a cancel at its payment's time of day, and the
// business clock stretches a short delay over the night, so cancels follow
// the diurnal curve exactly: a normal merchant's 1-hour cancel rate equals
// its 7-day rate in expectation at every hour, night included. That
// matters because cancel_rate_spike compares exactly those two rates; with
// wall-clock delays the evening's cancels spill into the quiet night and
// the platform's night-time rate ran 1.6× its daily average, enough for
// most of the ten busiest merchants to "spike" every night. The realistic
// profile brings a share of such wall-clock delays back on purpose
// (delayedShare): real traffic does that, and the rules' evidence has to
// cope with it.
const (
	cancelShortMedian = 20 * time.Minute
	cancelShortSigma  = 1.3
	cancelShortMin    = 30 * time.Second
	cancelShortMax    = 20 * time.Hour
	partialShare      = 0.3 // share of cancels that are partial
	partialMin        = 0.1 // a partial cancel takes 10%–90% of the payment
	partialMax        = 0.9
	// MaxCancelDelay bounds canceled_at − approved_at: at most 6 days plus
	// a short part under one day (20 business hours, or the realistic
	// profile's wall-clock delay of at most 16 hours), or a scenario's
	// delays, which normalise and batchTime keep within it.
	MaxCancelDelay = 7 * 24 * time.Hour
	// Surge cancels come fast: median 3 minutes, at most 30.
	surgeMedian = 3 * time.Minute
	surgeSigma  = 0.7
	surgeMax    = 30 * time.Minute
	// A bust-out's flood arrives within floodSpread after its start.
	floodSpread = 30 * time.Minute
)

// cancelDays[k] is the probability that a cancel comes k whole days late.
var cancelDays = [7]float64{0.72, 0.12, 0.06, 0.04, 0.025, 0.02, 0.015}

// Options configure a Generator.
type Options struct {
	Seed uint64
	// Population defaults to NewPopulation(Seed, DefaultMerchants).
	Population *Population
	// PaymentsPerDay defaults to DefaultPaymentsPerDay.
	PaymentsPerDay int
	// Location is the business time zone of the diurnal curve and of the
	// rules' days; nil means Asia/Seoul.
	Location  *time.Location
	Scenarios []Scenario
	// HistoryFrom is the first instant the source database holds traffic
	// for (LoadHistory's from). Ground truth evaluates exactly the rows from
	// there on, as the engine will. Zero: HistoryStart(now, DefaultHistoryDays).
	HistoryFrom time.Time
	// Rules are the thresholds the ground truth evaluates; zero fields take
	// the SPEC defaults.
	Rules RuleParams
	// Profile is the traffic profile: ProfileDefault ("") or
	// ProfileRealistic (see doc.go).
	Profile string
}

// Generator produces the traffic of a population deterministically.
// It is safe for concurrent use and behaves as immutable: its only
// mutable part is a cache of the realistic profile's day tables, which
// are a pure function of the seed, the population and the day.
type Generator struct {
	seed      uint64
	pop       *Population
	ppd       int
	loc       *time.Location
	scens     []scenario
	role      []int16 // merchant index → scenario index, or −1
	hist      time.Time
	rules     RuleParams
	extras    []int // scenarios that add payments (promotion, flash sale, tiny, volatile)
	realistic bool
	days      *dayCache // shared by plain(): the tables do not depend on scenarios
}

// NewGenerator validates o and builds a Generator.
func NewGenerator(o Options) (*Generator, error) {
	g := &Generator{seed: o.Seed, pop: o.Population, ppd: o.PaymentsPerDay, loc: o.Location, hist: o.HistoryFrom,
		realistic: o.Profile == ProfileRealistic, days: newDayCache()}
	if err := ValidProfile(o.Profile); err != nil {
		return nil, err
	}
	if g.pop == nil {
		g.pop = NewPopulation(o.Seed, DefaultMerchants)
	}
	if g.ppd == 0 {
		g.ppd = DefaultPaymentsPerDay
	}
	if g.ppd < 0 || g.ppd > maxPaymentsDay {
		return nil, fmt.Errorf("payments per day %d out of range 1..%d", g.ppd, maxPaymentsDay)
	}
	if g.loc == nil {
		loc, err := time.LoadLocation("Asia/Seoul")
		if err != nil {
			return nil, fmt.Errorf("loading the default business time zone: %w", err)
		}
		g.loc = loc
	}
	rules, err := o.Rules.withDefaults()
	if err != nil {
		return nil, err
	}
	g.rules = rules
	if len(o.Scenarios) > maxScenarios {
		return nil, fmt.Errorf("%d scenarios: at most %d", len(o.Scenarios), maxScenarios)
	}
	g.role = slices.Repeat([]int16{-1}, g.pop.Len())
	for i, s := range o.Scenarios {
		sc, err := s.normalise()
		if err != nil {
			return nil, fmt.Errorf("scenario %d (%s, merchant %d): %w", i, s.Kind, s.Merchant, err)
		}
		m := g.pop.Merchant(s.Merchant)
		if m == nil {
			return nil, fmt.Errorf("scenario %d (%s): no merchant %d", i, s.Kind, s.Merchant)
		}
		if prev := g.role[m.ID-1]; prev >= 0 {
			return nil, fmt.Errorf("scenario %d (%s): merchant %d already has scenario %d (%s)", i, s.Kind, s.Merchant, prev, g.scens[prev].Kind)
		}
		g.role[m.ID-1] = int16(i)
		sc.day = civilDay(sc.Start, g.loc)
		g.scens = append(g.scens, sc)
		if sc.addsPayments() {
			g.extras = append(g.extras, i)
		}
	}
	return g, nil
}

// clock is Unix minute m's business day (see civilDay) and minute of day.
func (g *Generator) clock(m int64) (day int64, minuteOfDay int) {
	t := time.Unix(m*minuteSeconds, 0).In(g.loc)
	y, mo, d := t.Date()
	return daysSinceEpoch(y, mo, d), t.Hour()*60 + t.Minute()
}

// minuteRate is the expected number of normal payments in Unix minute m
// (the curve, times the day's volume in the realistic profile), with the
// minute's business day and that day's table (nil outside the realistic
// profile).
func (g *Generator) minuteRate(m int64) (lambda float64, day int64, dt *dayTable) {
	day, mod := g.clock(m)
	lambda = PaymentsPerMinute(g.ppd, mod)
	if g.realistic {
		dt = g.day(day)
		lambda *= dt.volume
	}
	return lambda, day, dt
}

// ExpectedPayments is the expected number of normal payments in [from, to)
// (the sum of the curve; scenarios aside).
func (g *Generator) ExpectedPayments(from, to time.Time) float64 {
	var n float64
	for m := unixMinute(from); minuteStart(m).Before(to); m++ {
		lambda, _, _ := g.minuteRate(m)
		n += lambda * overlap(m, from, to)
	}
	return n
}

// overlap is the share of minute m inside [from, to).
func overlap(m int64, from, to time.Time) float64 {
	lo, hi := minuteStart(m), minuteStart(m+1)
	if from.After(lo) {
		lo = from
	}
	if to.Before(hi) {
		hi = to
	}
	if !hi.After(lo) {
		return 0
	}
	return float64(hi.Sub(lo)) / float64(time.Minute)
}

func unixMinute(t time.Time) int64 {
	s := t.Unix()
	if s < 0 && s%minuteSeconds != 0 {
		return s/minuteSeconds - 1
	}
	return s / minuteSeconds
}

func minuteStart(m int64) time.Time { return time.Unix(m*minuteSeconds, 0).UTC() }

// row is one payment and its cancel, if any.
type row struct {
	p    Payment
	c    Cancel
	hasC bool
}

// scratch is one goroutine's reusable buffers, and the day of the minute
// being generated.
type scratch struct {
	mr      *minuteRand
	xr      *minuteRand
	spacing []float64
	rows    []row
	day     *dayTable // nil outside the realistic profile
	dayNum  int64     // business day (civilDay)
}

func newScratch() *scratch { return &scratch{mr: newMinuteRand(), xr: newMinuteRand()} }

// minute generates Unix minute m into s.rows, in time order.
func (g *Generator) minute(m int64, s *scratch) {
	s.rows = s.rows[:0]
	start := minuteStart(m)
	r := s.mr.seed(g.seed, saltMinute, uint64(m))
	lambda, day, dt := g.minuteRate(m)
	s.day, s.dayNum = dt, day
	sampler := &g.pop.sampler
	if dt != nil {
		sampler = &dt.sampler
	}
	n := min(poisson(r, lambda), maxPerMinute)
	// Sorted arrival offsets from normalised exponential spacings: the
	// order statistics of n uniforms in O(n), no sort needed.
	s.spacing = slices.Grow(s.spacing[:0], n+1)[:n+1]
	var total float64
	for i := range s.spacing {
		total += r.ExpFloat64()
		s.spacing[i] = total
	}
	scale := microsPerMinute / total
	for i := range n {
		mi := sampler.sample(r.Uint64())
		z := r.NormFloat64()
		mer := &g.pop.merchants[mi]
		p := Payment{
			ID:         m*IDsPerMinute + int64(i),
			MerchantID: mer.ID,
			Amount:     round100(math.Exp(mer.AmountMu + mer.AmountSigma*z)),
			ApprovedAt: start.Add(time.Duration(s.spacing[i]*scale) * time.Microsecond),
		}
		if sc := g.role[mi]; sc >= 0 {
			g.scenarioRow(&g.scens[sc], p, mer, s)
			continue
		}
		c, ok := g.cancel(p, cancelRate(mer.CancelRate, s.day, mi))
		s.rows = append(s.rows, row{p: p, c: c, hasC: ok})
	}
	if len(g.extras) > 0 {
		before := len(s.rows)
		for _, i := range g.extras {
			g.extraRows(m, i, s)
		}
		if len(s.rows) > before {
			slices.SortFunc(s.rows, func(a, b row) int {
				return cmp.Or(a.p.ApprovedAt.Compare(b.p.ApprovedAt), cmp.Compare(a.p.ID, b.p.ID))
			})
		}
	}
}

// cancel decides, from the payment's own random stream, whether it gets a
// cancel at the normal rate and delay.
func (g *Generator) cancel(p Payment, rate float64) (Cancel, bool) {
	pr := newPRNG(g.seed, saltCancel, uint64(p.ID))
	if pr.float() >= rate {
		return Cancel{}, false
	}
	u := pr.float()
	days := len(cancelDays) - 1
	for k, q := range cancelDays {
		if u < q {
			days = k
			break
		}
		u -= q
	}
	short := logNormalDuration(&pr, cancelShortMedian, cancelShortSigma, cancelShortMin, cancelShortMax)
	var at time.Time
	if g.realistic && pr.float() < delayedShare {
		at = p.ApprovedAt.Add(logNormalDuration(&pr, delayedMedian, delayedSigma, delayedMin, delayedMax))
	} else {
		// At the lunch peak a business minute is 33 wall-clock seconds; the
		// floor keeps "at least 30 seconds later" true on the wall clock too.
		at = g.afterActivity(p.ApprovedAt, short)
		if floor := p.ApprovedAt.Add(cancelShortMin); !at.After(floor) {
			at = floor
		}
	}
	if days > 0 {
		l := at.In(g.loc)
		at = time.Date(l.Year(), l.Month(), l.Day()+days, l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), g.loc)
	}
	return g.cancelRow(p, &pr, at), true
}

// fastCancel is a surge cancel: a higher rate, minutes after the payment.
func (g *Generator) fastCancel(p Payment, rate float64) (Cancel, bool) {
	pr := newPRNG(g.seed, saltCancel, uint64(p.ID))
	if pr.float() >= rate {
		return Cancel{}, false
	}
	pr.float() // keep the stream aligned with cancel's day draw
	d := logNormalDuration(&pr, surgeMedian, surgeSigma, cancelShortMin, surgeMax)
	return g.cancelRow(p, &pr, p.ApprovedAt.Add(d)), true
}

// cancelRow fills in the cancel's amount: full, or partial for partialShare.
func (g *Generator) cancelRow(p Payment, pr *prng, at time.Time) Cancel {
	amount := p.Amount
	if pr.float() < partialShare {
		f := partialMin + (partialMax-partialMin)*pr.float()
		if a := round100(float64(p.Amount) * f); a < p.Amount {
			amount = a
		}
	}
	return Cancel{ID: p.ID, PaymentID: p.ID, MerchantID: p.MerchantID, Amount: amount, CanceledAt: at.UTC().Truncate(time.Microsecond)}
}

func logNormalDuration(pr *prng, median time.Duration, sigma float64, lo, hi time.Duration) time.Duration {
	d := time.Duration(float64(median) * math.Exp(sigma*pr.norm()))
	return min(max(d, lo), hi).Truncate(time.Microsecond)
}

// Generate produces every payment with approved_at in [from, to), in time
// order, and right after each payment its cancel, if it has one. A cancel
// belongs to its payment's minute, so canceled_at may be at or after to;
// callers decide what to do with future cancels. emitCancel may be nil.
// The output depends only on the generator and the range, and the rows of
// a minute are the same whatever range contains them.
func (g *Generator) Generate(from, to time.Time, emit func(Payment) error, emitCancel func(Cancel) error) error {
	s := newScratch()
	for m := unixMinute(from); minuteStart(m).Before(to); m++ {
		g.minute(m, s)
		for i := range s.rows {
			rw := &s.rows[i]
			if rw.p.ApprovedAt.Before(from) || !rw.p.ApprovedAt.Before(to) {
				continue
			}
			if emit != nil {
				if err := emit(rw.p); err != nil {
					return err
				}
			}
			if rw.hasC && emitCancel != nil {
				if err := emitCancel(rw.c); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// parallel runs fn over the chunks on workers goroutines (GOMAXPROCS when
// workers <= 0). fn gets its worker number for per-worker state. It stops
// at the first error.
func parallel(ctx context.Context, chunks []span, workers int, fn func(ctx context.Context, worker int, sp span) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, max(len(chunks), 1))
	next := make(chan span)
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		defer close(next)
		for _, c := range chunks {
			select {
			case next <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for w := range workers {
		eg.Go(func() error {
			for sp := range next {
				if err := fn(ctx, w, sp); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return eg.Wait()
}

// span is a half-open time range.
type span struct{ from, to time.Time }

// hourSpans cuts [from, to) into spans of at most size, on multiples of size
// since the epoch, so work splits evenly across workers.
func hourSpans(from, to time.Time, size time.Duration) []span {
	var out []span
	for lo := from; lo.Before(to); {
		hi := lo.Truncate(size).Add(size)
		if hi.After(to) {
			hi = to
		}
		out = append(out, span{lo, hi})
		lo = hi
	}
	return out
}
