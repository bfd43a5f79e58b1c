package sim

import (
	"fmt"
	"slices"
	"time"
)

// The scored day's start times. Incidents and controls start between
// 09:00 and 21:00, when the rules have busy same-time history and the
// incident has hours to show. Volume incidents start between 02:00 (after
// about 01:43 volume_drop can judge: the expectation reaches 5% of a
// daily average) and 10:00, early enough that by the expected curve even
// a 30% drop takes the day below half its expectation before midnight
// (from 10:00 that happens at about 21:00; see volumeScenario).
const (
	scoredFirst      = 9 * time.Hour
	scoredSpan       = 12 * time.Hour
	scoredVolumeFrom = 2 * time.Hour
	scoredVolumeSpan = 8 * time.Hour
	scoredControls   = 5 // merchants per control kind
)

// LastWholeDay is 00:00 of the last whole business day before now: the
// day before now's business day, so with now at a midnight the day that
// just ended. It is the day `sim history --scored-day` scores.
func LastWholeDay(now time.Time, loc *time.Location) time.Time {
	l := now.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day()-1, 0, 0, 0, 0, loc)
}

// sizeClass is a range of payments a day at DefaultPaymentsPerDay:
// [lo, hi), hi = 0 for no bound.
type sizeClass struct {
	name   string
	lo, hi float64
}

func (c sizeClass) holds(daily float64) bool { return daily >= c.lo && (c.hi == 0 || daily < c.hi) }

// The scored day's size classes.
var (
	sizeSmall       = sizeClass{"small", 200, 400} // about 300 a day
	sizeMediumBust  = sizeClass{"medium", 1_000, 5_000}
	sizeLargeBust   = sizeClass{"large", 10_000, 0}
	sizeMediumSurge = sizeClass{"medium", 1_000, 3_000}
	sizeBusy        = sizeClass{"busy", 5_000, 20_000}
	sizeLargeSurge  = sizeClass{"large", 20_000, 0}
	// Promotions, flash sales and steady high-cancel controls take one
	// merchant from each of these, so that each kind is seen at every size.
	controlSizes = []sizeClass{sizeSmall, sizeMediumSurge, {"medium", 3_000, 5_000}, sizeBusy, sizeLargeSurge}
)

// scoredSurgeFactors are the cancel surges' factors, each at every size.
var scoredSurgeFactors = []float64{1.5, 2, 3, 5}

// scoredVolume are the volume incidents, in the order their starts are
// spread over the morning: drops keeping 10%, 30% and 50% of sales (the
// last never literally below half the expectation, by the curve) and
// silent merchants, three each.
var scoredVolume = []struct {
	kind   string
	factor float64
}{
	{KindVolumeDrop, 0.9}, {KindVolumeDrop, 0.7}, {KindVolumeDrop, 0.5}, {KindSilent, 1},
	{KindVolumeDrop, 0.9}, {KindVolumeDrop, 0.7}, {KindVolumeDrop, 0.5}, {KindSilent, 1},
	{KindVolumeDrop, 0.9}, {KindVolumeDrop, 0.7}, {KindVolumeDrop, 0.5}, {KindSilent, 1},
}

// ScoredDayScenarios is the fixed incident mix of a scored day: the
// business day containing day (00:00 to 24:00 in the generator's zone).
// Merchants are picked deterministically from the population by size and
// none twice; sizes are expected payments a day at DefaultPaymentsPerDay
// (the same merchants at any volume, as the large threshold scales with
// it), "large by amount" is an expected daily amount of at least twice
// the generator's large_daily_amount. The mix:
//
//   - 12 bust-outs: 4 small (200–400 payments a day), 4 medium
//     (1,000–5,000), 4 large (≥ 10,000), starting between 09:00 and 21:00;
//   - 16 cancel surges of 2 hours: factors 1.5, 2, 3 and 5 at each of 4
//     sizes (small 200–400, medium 1,000–3,000, busy 5,000–20,000, large
//     ≥ 20,000), between 09:00 and 21:00;
//   - 12 volume incidents at merchants large by amount (and with at least
//     1,000 payments a day): volume_drop keeping 10%, 30% and 50% of
//     sales and silent, 3 each, starting between 02:00 and 10:00 and
//     lasting to the end of the day;
//   - 5 of each control: promotion (×2 for 4 hours), flash_sale (×8 for
//     an hour) and steady_high_cancel (8%, all along) at one merchant of
//     each of 5 sizes (200–400, 1,000–3,000, 3,000–5,000, 5,000–20,000,
//     ≥ 20,000); batch_refunds (all along; rates ×1 and ×1.5 alternate)
//     at merchants expecting at least 90 cancels a day (about 30 a
//     batch); volatile_large at merchants large by amount (0.45 on the
//     day); tiny at the smallest merchants.
//
// It fails when the population lacks merchants of a class (a population
// of a few thousand merchants has them all). The generator's own
// scenarios are ignored; build the generator for the run with the result.
func (g *Generator) ScoredDayScenarios(day time.Time) ([]Scenario, error) {
	p := &picker{g: g, used: map[int64]bool{}}
	// Scarce merchants first: the dozen or so with 20,000 payments a day
	// or more (4 surges and 3 controls), then those large by amount (two
	// dozen or more beside them), then the rest.
	largeSurge := p.take(len(scoredSurgeFactors), "large surges", sizeLargeSurge, nil)
	largeControls := p.take(3, "large controls", sizeLargeSurge, nil)
	volume := p.take(len(scoredVolume)+scoredControls, "volume incidents and volatile controls", sizeClass{"large", 1_000, 0}, p.largeByAmount)
	busts := slices.Concat(p.take(4, "small bust-outs", sizeSmall, nil), p.take(4, "medium bust-outs", sizeMediumBust, nil),
		p.take(4, "large bust-outs", sizeLargeBust, nil))
	surgeSizes := []sizeClass{sizeSmall, sizeMediumSurge, sizeBusy, sizeLargeSurge}
	var surges [][]int64
	for _, c := range surgeSizes[:3] {
		surges = append(surges, p.take(len(scoredSurgeFactors), c.name+" surges", c, p.cancelsOften))
	}
	surges = append(surges, largeSurge)
	eachSize := func(what string, large int64) []int64 {
		var ids []int64
		for _, c := range controlSizes[:len(controlSizes)-1] {
			ids = append(ids, p.take(1, what, c, nil)...)
		}
		return append(ids, large)
	}
	var promo, flash, steady []int64
	if len(largeControls) == 3 {
		promo = eachSize("promotions", largeControls[0])
		flash = eachSize("flash sales", largeControls[1])
		steady = eachSize("steady high-cancel controls", largeControls[2])
	}
	batch := p.take(scoredControls, "batch refunds", sizeClass{"busy", 1_000, 0}, p.batchable)
	tiny := p.smallest(scoredControls)
	if p.err != nil {
		return nil, p.err
	}

	l := day.In(g.loc)
	midnight := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, g.loc)
	// at is the j-th of n starts spread over [from, from+span), to the minute.
	at := func(from, span time.Duration, j, n int) time.Time {
		return midnight.Add(from + (span * time.Duration(j) / time.Duration(n)).Truncate(time.Minute))
	}
	var out []Scenario
	for j, id := range volume[:len(scoredVolume)] {
		start := at(scoredVolumeFrom, scoredVolumeSpan, j, len(scoredVolume))
		out = append(out, Scenario{Kind: scoredVolume[j].kind, Merchant: id, Start: start, Duration: midnight.AddDate(0, 0, 1).Sub(start),
			Factor: scoredVolume[j].factor, Size: "large"})
	}
	// Bust-outs: the sizes take turns through the day.
	bustSizes := []string{sizeSmall.name, sizeMediumBust.name, sizeLargeBust.name}
	for j := range busts {
		k := j%3*4 + j/3
		out = append(out, Scenario{Kind: KindBustOut, Merchant: busts[k], Start: at(scoredFirst+30*time.Minute, scoredSpan, j, len(busts)),
			Duration: 24 * time.Hour, Factor: 0.6, Size: bustSizes[k/4]})
	}
	// Surges: every factor at every size, a Latin square over the day so
	// that each factor and each size comes early and late.
	n := len(surgeSizes) * len(scoredSurgeFactors)
	for j := range n {
		f := j % len(scoredSurgeFactors)
		z := (j/len(scoredSurgeFactors) + f) % len(surgeSizes)
		out = append(out, Scenario{Kind: KindCancelSurge, Merchant: surges[z][f], Start: at(scoredFirst+15*time.Minute, scoredSpan, j, n),
			Duration: 2 * time.Hour, Factor: scoredSurgeFactors[f], Size: surgeSizes[z].name})
	}
	// Controls.
	for j, id := range tiny {
		out = append(out, Scenario{Kind: KindTiny, Merchant: id, Start: at(scoredFirst+5*time.Minute, scoredSpan, j, len(tiny)),
			Duration: 5 * time.Minute, Factor: 1, Size: "tiny"})
	}
	for j, id := range promo {
		out = append(out, Scenario{Kind: KindPromotion, Merchant: id, Start: at(scoredFirst+10*time.Minute, scoredSpan, j, len(promo)),
			Duration: 4 * time.Hour, Factor: 2, Size: controlSizes[j].name})
	}
	for j, id := range flash {
		out = append(out, Scenario{Kind: KindFlashSale, Merchant: id, Start: at(scoredFirst+20*time.Minute, scoredSpan, j, len(flash)),
			Duration: time.Hour, Factor: 8, Size: controlSizes[j].name})
	}
	for j, id := range steady {
		out = append(out, Scenario{Kind: KindSteadyHighCancel, Merchant: id, Factor: 0.08, Size: controlSizes[j].name})
	}
	for j, id := range batch {
		out = append(out, Scenario{Kind: KindBatchRefunds, Merchant: id, Duration: 4 * time.Hour, Factor: []float64{1, 1.5}[j%2], Size: p.sizeOf(id)})
	}
	for _, id := range volume[len(scoredVolume):] {
		out = append(out, Scenario{Kind: KindVolatileLarge, Merchant: id, Start: midnight, Factor: 0.45, Size: "large"})
	}
	return out, nil
}

// picker hands out merchants by size class, each at most once.
type picker struct {
	g    *Generator
	used map[int64]bool
	err  error
}

// daily is the merchant's expected payments a day at DefaultPaymentsPerDay.
func (p *picker) daily(id int64) float64 {
	return p.g.pop.ExpectedDailyPayments(id, DefaultPaymentsPerDay)
}

func (p *picker) largeByAmount(id int64) bool {
	return p.g.pop.ExpectedDailyAmount(id, p.g.ppd) >= 2*float64(p.g.rules.LargeDailyAmount)
}

// cancelsOften: a base cancel rate of at least 1%, so that a surge of a
// small merchant is a few cancels an hour rather than a few a week.
func (p *picker) cancelsOften(id int64) bool { return p.g.pop.Merchant(id).CancelRate >= 0.01 }

// batchable: at least 90 cancels a day expected at the reference volume:
// the 10:00 batch (the night's and the morning's) about 50, the 18:00 one
// (four afternoon hours) about 16.
func (p *picker) batchable(id int64) bool {
	return p.daily(id)*p.g.pop.Merchant(id).CancelRate >= 90
}

// sizeOf names the size class of a merchant picked outside the classes.
func (p *picker) sizeOf(id int64) string {
	for _, c := range []sizeClass{sizeSmall, sizeMediumBust, sizeBusy, sizeLargeSurge} {
		if c.holds(p.daily(id)) {
			return c.name
		}
	}
	return ""
}

// take picks n unused merchants of class c that ok accepts (nil: any),
// spread evenly over the class's candidates from the busiest to the
// quietest, so that a class is represented across its range rather than
// by its top. It records an error when there are fewer than n.
func (p *picker) take(n int, what string, c sizeClass, ok func(id int64) bool) []int64 {
	var cands []int64
	for _, id := range p.g.pop.ranked {
		if !p.used[id] && c.holds(p.daily(id)) && (ok == nil || ok(id)) {
			cands = append(cands, id)
		}
	}
	if len(cands) < n {
		if p.err == nil {
			p.err = fmt.Errorf("scored day: %d merchants for %s (%s, %.0f–%.0f payments a day at %d a day), %d wanted",
				len(cands), what, c.name, c.lo, c.hi, DefaultPaymentsPerDay, n)
		}
		return nil
	}
	out := make([]int64, n)
	for j := range n {
		out[j] = cands[(2*j+1)*len(cands)/(2*n)]
		p.used[out[j]] = true
	}
	return out
}

// smallest picks the n merchants with the fewest expected payments.
func (p *picker) smallest(n int) []int64 {
	var out []int64
	for i := len(p.g.pop.ranked) - 1; i >= 0 && len(out) < n; i-- {
		if id := p.g.pop.ranked[i]; !p.used[id] {
			out = append(out, id)
			p.used[id] = true
		}
	}
	return out
}
