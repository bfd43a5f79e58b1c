package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Accessors only the tests use.

// Population is the generator's merchant population.
func (g *Generator) Population() *Population { return g.pop }

// Location is the business time zone.
func (g *Generator) Location() *time.Location { return g.loc }

// Sample draws a merchant with probability equal to its Weight, in O(1).
func (p *Population) Sample(r *rand.Rand) *Merchant {
	return &p.merchants[p.sampler.sample(r.Uint64())]
}

// Ranked returns merchant IDs from the most to the fewest payments.
func (p *Population) Ranked() []int64 { return slices.Clone(p.ranked) }

// Large returns the merchants whose expected daily amount is at least
// threshold KRW, largest first.
func (p *Population) Large(threshold float64, paymentsPerDay int) []int64 {
	var ids []int64
	for i := range p.merchants {
		id := p.merchants[i].ID
		if p.ExpectedDailyAmount(id, paymentsPerDay) >= threshold {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b int64) int {
		return -cmpFloat(p.ExpectedDailyAmount(a, 1), p.ExpectedDailyAmount(b, 1), a, b)
	})
	return ids
}

// TopShare is the share of all payments carried by the top fraction of
// merchants (0.01 for "the top 1%").
func (p *Population) TopShare(fraction float64) float64 {
	k := int(math.Ceil(fraction * float64(len(p.ranked))))
	var s float64
	for _, id := range p.ranked[:k] {
		s += p.merchants[id-1].Weight
	}
	return s
}
