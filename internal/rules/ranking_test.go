package rules

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/riskwatch/riskwatch/internal/window"
)

// TestRankKeepsTheRiskiest: the ranking of any number of evaluations, in
// any order, is what sorting all of them and keeping RankLimit gives, with
// its rates and ratios its own (not the evaluations').
func TestRankKeepsTheRiskiest(t *testing.T) {
	p := DefaultCancelRateParams()
	for _, n := range []int{0, 1, RankLimit - 1, RankLimit, RankLimit + 1, 2*RankLimit - 1, 2 * RankLimit, 5*RankLimit + 7, 20_000} {
		rng := rand.New(rand.NewPCG(uint64(n), 9))
		evals := make([]CancelEval, n)
		floats := make([]float64, 2*n)
		ids := rng.Perm(10 * (n + 1)) // distinct: the order is total
		for i := range evals {
			e := &evals[i]
			e.Merchant = int64(ids[i])
			e.AH = rng.Int64N(50)
			e.CH = rng.Int64N(4) // some without cancels, left out
			e.Effective = float64(1+rng.IntN(3)) / 100
			if rng.IntN(3) > 0 { // many ties in evidence, none below
				e.Evidence = float64(rng.IntN(5))
			}
			if e.AH > 0 {
				floats[2*i] = float64(e.CH) / float64(e.AH)
				e.RateH = &floats[2*i]
				floats[2*i+1] = floats[2*i] / e.Effective
				e.Ratio = &floats[2*i+1]
			}
		}
		var want []RiskEntry
		for _, e := range evals {
			if e.CH > 0 {
				want = append(want, RiskEntry{CancelEval: e, Score: Score(p, e.CancelResult)})
			}
		}
		slices.SortFunc(want, func(a, b RiskEntry) int {
			return cmp.Or(cmp.Compare(b.Evidence, a.Evidence), cmp.Compare(b.Score, a.Score), cmp.Compare(b.CH, a.CH), cmp.Compare(a.Merchant, b.Merchant))
		})
		want = want[:min(len(want), RankLimit)]

		got := Rank(7, p, evals, nil).Risk
		if len(got) != len(want) {
			t.Fatalf("n=%d: %d entries, want %d", n, len(got), len(want))
		}
		clear(floats) // the evaluations' floats are reused by the next close
		for i := range want {
			g, w := got[i], want[i]
			if g.Merchant != w.Merchant || g.Score != w.Score || g.CH != w.CH || g.Evidence != w.Evidence {
				t.Fatalf("n=%d: entry %d is merchant %d (score %v), want %d (score %v)", n, i, g.Merchant, g.Score, w.Merchant, w.Score)
			}
			if (g.RateH == nil) != (w.RateH == nil) || (g.Ratio == nil) != (w.Ratio == nil) {
				t.Fatalf("n=%d: entry %d: rate or ratio set differently", n, i)
			}
			if w.RateH != nil && (*g.RateH != float64(w.CH)/float64(w.AH) || *g.Ratio != *g.RateH/w.Effective) {
				t.Fatalf("n=%d: entry %d: rate %v ratio %v, want %v, %v", n, i, *g.RateH, *g.Ratio, float64(w.CH)/float64(w.AH), float64(w.CH)/float64(w.AH)/w.Effective)
			}
		}
	}
}

// Rank offers every evaluation to a Ranker, as the engine does while it
// evaluates.
func Rank(m window.Minute, p CancelRateParams, cancel []CancelEval, volume []VolumeEval) *Ranking {
	r := NewRanker(p)
	for i := range cancel {
		r.Offer(&cancel[i])
	}
	return r.Ranking(m, volume)
}
