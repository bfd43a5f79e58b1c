package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"time"
)

// Rule names, as the engine reports them.
const (
	RuleCancelRateSpike = "cancel_rate_spike"
	RuleVolumeDrop      = "volume_drop"
)

// DefaultHistoryDays is how many business days of history the rules need:
// today plus D−7…D−1.
const DefaultHistoryDays = 8

// RuleParams are the rule thresholds (SPEC §5, §6) the ground truth
// evaluates. Zero fields take the SPEC defaults.
type RuleParams struct {
	MinBaselineApprovals int64   // 100
	BaselineFloor        float64 // 0.002
	MinCancels           int64   // 5
	Multiplier           float64 // 2.0
	MinApprovals         int64   // 20
	LargeDailyAmount     int64   // 1,000,000,000 KRW
	MinExpectedFraction  float64 // 0.05
	DropRatio            float64 // 0.5
}

func (r RuleParams) withDefaults() (RuleParams, error) {
	orDefault(&r.MinBaselineApprovals, 100)
	orDefault(&r.BaselineFloor, 0.002)
	orDefault(&r.MinCancels, 5)
	orDefault(&r.Multiplier, 2)
	orDefault(&r.MinApprovals, 20)
	orDefault(&r.LargeDailyAmount, LargeDailyAmount)
	orDefault(&r.MinExpectedFraction, 0.05)
	orDefault(&r.DropRatio, 0.5)
	if r.MinBaselineApprovals < 0 || r.MinCancels < 0 || r.MinApprovals < 0 || r.LargeDailyAmount < 0 ||
		r.BaselineFloor < 0 || r.Multiplier < 0 || r.MinExpectedFraction < 0 || r.DropRatio < 0 || r.DropRatio > 1 {
		return r, fmt.Errorf("rule parameters out of range: %+v", r)
	}
	return r, nil
}

func orDefault[T int64 | float64](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// HistoryStart is 00:00 in loc of the day days−1 days before now's business
// day: the start of a history of `days` business days ending with today.
func HistoryStart(now time.Time, days int, loc *time.Location) time.Time {
	l := now.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day()-(days-1), 0, 0, 0, 0, loc)
}

// Truth is what a scenario should make the engine do, and from when.
type Truth struct {
	Scenario     string `json:"scenario"`
	Merchant     int64  `json:"merchant"`
	MerchantName string `json:"merchant_name"`
	Rule         string `json:"rule"`
	// ShouldFire: the rule should alert for the merchant. For an incident's
	// own rule it is true; for controls false; for a rule an incident sets
	// off as a side effect (a silent merchant's cancels keep arriving while
	// its approvals stop, which doubles its hourly cancel rate) it says
	// whether the SPEC condition holds, and Note says why.
	ShouldFire bool `json:"should_fire"`
	// From is the first minute (its start) in the evaluated range at which
	// the rule's SPEC condition holds on the generated data, computed here
	// independently of internal/rules; zero when it never does.
	From time.Time `json:"from"`
	Note string    `json:"note,omitempty"`
	// IncidentFrom is, for an incident, the first minute at or after its
	// start at which the condition holds: the minute the incident became
	// visible (zero for a control, or when it never does). From is the
	// literal condition's first minute and may be earlier, when noise made
	// it hold before the incident (at night, in the realistic profile,
	// that is common); scoring an incident's detection delay wants this.
	IncidentFrom time.Time `json:"incident_from"`
	// Incident: the scenario is a real incident (true) or a control
	// (false). A control is never an incident, whether or not the literal
	// condition holds on it.
	Incident bool `json:"incident"`
	// Factor, Start (zero: all along) and End (zero: no end, or a kind
	// whose Duration is not a window) of the scenario, defaults filled in.
	Factor float64   `json:"factor"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	// Size is the merchant's size class, when ScoredDayScenarios chose it.
	Size string `json:"size,omitempty"`
	// DailyPayments and DailyAmount (KRW) are the merchant's expected
	// payments and approved amount a day at the generator's volume (the
	// long-run mean; the realistic profile's day factors average 1).
	DailyPayments float64 `json:"daily_payments"`
	DailyAmount   int64   `json:"daily_amount"`
}

// MarshalJSON writes the times as RFC 3339 UTC, or null when zero (a
// condition that never holds, a scenario all along or open-ended).
func (t Truth) MarshalJSON() ([]byte, error) {
	type plain Truth
	str := func(at time.Time) *string {
		if at.IsZero() {
			return nil
		}
		s := at.UTC().Format(time.RFC3339)
		return &s
	}
	return json.Marshal(struct {
		plain
		From         *string `json:"from"`
		IncidentFrom *string `json:"incident_from"`
		Start        *string `json:"start"`
		End          *string `json:"end"`
	}{plain(t), str(t.From), str(t.IncidentFrom), str(t.Start), str(t.End)})
}

// WriteTruth writes the ground truth as an indented JSON array.
func WriteTruth(w io.Writer, ts []Truth) error {
	if ts == nil {
		ts = []Truth{}
	}
	b, err := json.MarshalIndent(ts, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding ground truth: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing ground truth: %w", err)
	}
	return nil
}

// minuteAggs are per-minute sums over [base, base+len).
type minuteAggs struct {
	base int64 // Unix minute of index 0
	// platform-wide
	appr, canc []int64
	// per scenario merchant (scenario index)
	mAppr, mAmt, mCanc [][]int64
}

func newMinuteAggs(base int64, n, merchants int) *minuteAggs {
	a := &minuteAggs{base: base, appr: make([]int64, n), canc: make([]int64, n)}
	for range merchants {
		a.mAppr = append(a.mAppr, make([]int64, n))
		a.mAmt = append(a.mAmt, make([]int64, n))
		a.mCanc = append(a.mCanc, make([]int64, n))
	}
	return a
}

func (a *minuteAggs) add(b *minuteAggs) {
	addTo := func(x, y []int64) {
		for i := range x {
			x[i] += y[i]
		}
	}
	addTo(a.appr, b.appr)
	addTo(a.canc, b.canc)
	for k := range a.mAppr {
		addTo(a.mAppr[k], b.mAppr[k])
		addTo(a.mAmt[k], b.mAmt[k])
		addTo(a.mCanc[k], b.mCanc[k])
	}
}

// aggregate generates [from, until) and sums, per minute of transaction
// time, approvals and cancels platform-wide and per scenario merchant:
// exactly the rows a source loaded from `from` and written live up to
// `until` holds (cancels only with canceled_at < until).
func (g *Generator) aggregate(ctx context.Context, from, until time.Time) (*minuteAggs, error) {
	base := unixMinute(from)
	n := int(unixMinute(until.Add(-time.Nanosecond)) - base + 1)
	workers := max(1, min(2, len(hourSpans(from, until, 6*time.Hour))))
	parts := make([]*minuteAggs, workers)
	for w := range parts {
		parts[w] = newMinuteAggs(base, n, len(g.scens))
	}
	err := parallel(ctx, hourSpans(from, until, 6*time.Hour), workers, func(ctx context.Context, w int, sp span) error {
		a := parts[w]
		return g.Generate(sp.from, sp.to, func(p Payment) error {
			i := unixMinute(p.ApprovedAt) - base
			a.appr[i]++
			if k := g.role[p.MerchantID-1]; k >= 0 {
				a.mAppr[k][i]++
				a.mAmt[k][i] += p.Amount
			}
			return nil
		}, func(c Cancel) error {
			if !c.CanceledAt.Before(until) {
				return nil
			}
			i := unixMinute(c.CanceledAt) - base
			a.canc[i]++
			if k := g.role[c.MerchantID-1]; k >= 0 {
				a.mCanc[k][i]++
			}
			return ctx.Err()
		})
	})
	if err != nil {
		return nil, err
	}
	for _, p := range parts[1:] {
		parts[0].add(p)
	}
	return parts[0], nil
}

// prefix turns per-minute values into prefix sums: s[i] = Σ v[0:i].
func prefix(v []int64) []int64 {
	s := make([]int64, len(v)+1)
	for i, x := range v {
		s[i+1] = s[i] + x
	}
	return s
}

// rangeSum is Σ over minutes [lo, hi) (Unix minutes) of the series whose
// prefix sums are s, starting at base; minutes outside the data count 0.
func rangeSum(s []int64, base, lo, hi int64) int64 {
	clamp := func(m int64) int64 { return min(max(m-base, 0), int64(len(s)-1)) }
	return s[clamp(hi)] - s[clamp(lo)]
}

// series is one merchant's prefix sums plus the platform's.
type series struct {
	base               int64
	appr, amt, canc    []int64
	platAppr, platCanc []int64
}

// ratOf is the exact rational value of a decimal parameter as written
// (0.002 is 2/1000, not the nearest binary fraction).
func ratOf(x float64) *big.Rat {
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(x, 'f', -1, 64))
	if !ok {
		panic("unreachable: formatted float does not parse")
	}
	return r
}

// cancelSpike evaluates SPEC §5 for minute m (Unix minute).
func cancelSpike(rp RuleParams, s *series, m int64) bool {
	hLo, hHi := m-59, m+1
	bLo, bHi := hLo-7*MinutesPerDay, hLo
	aH := rangeSum(s.appr, s.base, hLo, hHi)
	cH := rangeSum(s.canc, s.base, hLo, hHi)
	if cH < rp.MinCancels {
		return false
	}
	aB := rangeSum(s.appr, s.base, bLo, bHi)
	cB := rangeSum(s.canc, s.base, bLo, bHi)
	baseline := new(big.Rat)
	if aB >= rp.MinBaselineApprovals && aB > 0 {
		baseline.SetFrac64(cB, aB)
	} else if pa := rangeSum(s.platAppr, s.base, bLo, bHi); pa > 0 {
		baseline.SetFrac64(rangeSum(s.platCanc, s.base, bLo, bHi), pa)
	}
	eff := baseline
	if floor := ratOf(rp.BaselineFloor); eff.Cmp(floor) < 0 {
		eff = floor
	}
	need := new(big.Rat).Mul(ratOf(rp.Multiplier), eff)
	need.Mul(need, new(big.Rat).SetInt64(max(aH, rp.MinApprovals)))
	return new(big.Rat).SetInt64(cH).Cmp(need) >= 0
}

// volumeDrop evaluates SPEC §6 for minute m (Unix minute) in loc. It also
// reports whether the merchant is large on m's day.
func volumeDrop(rp RuleParams, s *series, m int64, loc *time.Location) (fires, large bool) {
	start := minuteStart(m).In(loc)
	end := minuteStart(m + 1).In(loc)
	y, mo, d := start.Date()
	// t = time of day at end(M); at 23:59 that is 24:00, the whole day.
	hh, mm := end.Hour(), end.Minute()
	if end.Day() != d {
		hh, mm = 24, 0
	}
	var sum7, cum7 int64
	for k := 1; k <= 7; k++ {
		ds := unixMinute(time.Date(y, mo, d-k, 0, 0, 0, 0, loc))
		de := unixMinute(time.Date(y, mo, d-k+1, 0, 0, 0, 0, loc))
		dt := unixMinute(time.Date(y, mo, d-k, hh, mm, 0, 0, loc))
		sum7 += rangeSum(s.amt, s.base, ds, de)
		cum7 += rangeSum(s.amt, s.base, ds, dt)
	}
	today := rangeSum(s.amt, s.base, unixMinute(time.Date(y, mo, d, 0, 0, 0, 0, loc)), m+1)
	return volumeFires(rp, sum7, cum7, today)
}

// volumeFires is SPEC §6's condition on the sums: sum7 over D−7…D−1, cum7
// the same days up to the time of day, today up to end(M).
func volumeFires(rp RuleParams, sum7, cum7, today int64) (fires, large bool) {
	// daily_avg = sum7/7 ≥ large_daily_amount.
	if new(big.Rat).SetInt64(sum7).Cmp(new(big.Rat).SetInt64(7*rp.LargeDailyAmount)) < 0 {
		return false, false
	}
	// expected = cum7/7 ≥ f × daily_avg ⇔ cum7 ≥ f × sum7.
	if new(big.Rat).SetInt64(cum7).Cmp(new(big.Rat).Mul(ratOf(rp.MinExpectedFraction), new(big.Rat).SetInt64(sum7))) < 0 {
		return false, true
	}
	// today ≤ (1 − drop) × cum7/7 ⇔ 7 × today ≤ (1 − drop) × cum7.
	keep := new(big.Rat).Sub(big.NewRat(1, 1), ratOf(rp.DropRatio))
	rhs := new(big.Rat).Mul(keep, new(big.Rat).SetInt64(cum7))
	return new(big.Rat).SetInt64(7*today).Cmp(rhs) <= 0, true
}

// GroundTruth evaluates, for every scenario merchant, the SPEC §5 and §6
// conditions on the generated data — history from the Options' HistoryFrom
// (or HistoryStart(now, 8)), everything Generate yields up to until — and
// reports the first minute each holds in [now, until), or from the
// scenario's start when that is earlier (a condition already true before a
// live run shows up as From < now); for an incident also the first minute
// at or after its start (IncidentFrom). Only whole minutes before until
// are evaluated, so GroundTruth(day, day+24h), with the history from 7
// days before day, is the truth of a scored day. The engine's live
// traffic beyond the generator's (the live
// writer's filler) never touches scenario merchants, so it does not change
// these answers; it can only move the platform-wide baseline, which only
// the tiny control uses and which cannot make it fire.
func (g *Generator) GroundTruth(now, until time.Time) []Truth {
	ts, err := g.groundTruth(context.Background(), now, until)
	if err != nil {
		// Only a canceled context or a callback error can fail generation,
		// and neither can happen here.
		panic(fmt.Sprintf("sim: ground truth: %v", err))
	}
	return ts
}

func (g *Generator) groundTruth(ctx context.Context, now, until time.Time) ([]Truth, error) {
	histFrom := g.hist
	if histFrom.IsZero() {
		histFrom = HistoryStart(now, DefaultHistoryDays, g.loc)
	}
	if !until.After(histFrom) || len(g.scens) == 0 {
		return nil, nil
	}
	aggs, err := g.aggregate(ctx, histFrom, until)
	if err != nil {
		return nil, err
	}
	platAppr, platCanc := prefix(aggs.appr), prefix(aggs.canc)
	lastM := unixMinute(until) // minutes m < lastM are whole before until
	var out []Truth
	for k, sc := range g.scens {
		s := &series{base: aggs.base, appr: prefix(aggs.mAppr[k]), amt: prefix(aggs.mAmt[k]), canc: prefix(aggs.mCanc[k]),
			platAppr: platAppr, platCanc: platCanc}
		lo := unixMinute(now)
		if !sc.Start.IsZero() && sc.Start.Before(now) && !sc.Start.Before(histFrom) {
			lo = unixMinute(sc.Start)
		}
		// first is the first minute from m on at which holds is true.
		first := func(m int64, holds func(m int64) bool) time.Time {
			for ; m < lastM; m++ {
				if holds(m) {
					return minuteStart(m)
				}
			}
			return time.Time{}
		}
		spikes := func(m int64) bool { return cancelSpike(g.rules, s, m) }
		everLarge := false
		drops := func(m int64) bool {
			f, l := volumeDrop(g.rules, s, m, g.loc)
			everLarge = everLarge || l
			return f
		}
		spike, drop := first(lo, spikes), first(lo, drops)
		// An incident's own minute: noise before its start is not it.
		incident := Incident(sc.Kind)
		fromStart := func(from time.Time, holds func(m int64) bool) time.Time {
			if !incident || sc.Start.IsZero() || from.IsZero() || !from.Before(sc.Start.Truncate(time.Minute)) {
				return from
			}
			return first(max(lo, unixMinute(sc.Start)), holds)
		}
		spikeInc, dropInc := time.Time{}, time.Time{}
		if incident {
			spikeInc, dropInc = fromStart(spike, spikes), fromStart(drop, drops)
		}
		t := func(rule string, from, incidentFrom time.Time) Truth {
			tr := Truth{Scenario: sc.Kind, Merchant: sc.Merchant, MerchantName: g.pop.Merchant(sc.Merchant).Name, Rule: rule, From: from,
				IncidentFrom: incidentFrom, Incident: incident, Factor: sc.Factor, Start: sc.Start, End: sc.end, Size: sc.Size,
				DailyPayments: math.Round(10*g.pop.ExpectedDailyPayments(sc.Merchant, g.ppd)) / 10,
				DailyAmount:   int64(math.Round(g.pop.ExpectedDailyAmount(sc.Merchant, g.ppd)))}
			if !incident && !from.IsZero() {
				tr.Note = "control: the literal condition holds on the data, yet this is no incident"
			}
			return tr
		}
		cs, vd := t(RuleCancelRateSpike, spike, spikeInc), t(RuleVolumeDrop, drop, dropInc)
		switch sc.Kind {
		case KindCancelSurge, KindBustOut:
			cs.ShouldFire = true
			vd.ShouldFire = !drop.IsZero()
			vd.Note = "side effect: " + sideEffect(sc.Kind, RuleVolumeDrop)
		case KindVolumeDrop, KindSilent:
			vd.ShouldFire = true
			if !everLarge {
				vd.Note = "the merchant is not large on the data: the rule cannot fire"
			}
			cs.ShouldFire = !spike.IsZero()
			cs.Note = "side effect: " + sideEffect(sc.Kind, RuleCancelRateSpike)
		}
		out = append(out, cs)
		if incident || everLarge {
			out = append(out, vd)
		}
	}
	return out, nil
}

func sideEffect(kind, rule string) string {
	switch {
	case rule == RuleCancelRateSpike:
		return "cancels of earlier payments keep arriving while approvals fall, so the hourly cancel rate rises; should_fire says whether it reaches the threshold"
	case kind == KindBustOut:
		return "sales stop; should_fire says whether the merchant is large enough for volume_drop"
	default:
		return "should_fire says whether the condition holds on the data"
	}
}
