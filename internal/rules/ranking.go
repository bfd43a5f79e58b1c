package rules

import (
	"cmp"
	"slices"

	"github.com/riskwatch/riskwatch/internal/window"
)

// RankLimit is how many merchants the risk ranking keeps: more than a
// screen, far fewer than the 60,000 evaluated each minute.
const RankLimit = 500

// Ranking is the dashboard's "riskiest now": the evaluations of the newest
// closed minute ordered by the same evidence that sets alerts' priorities,
// then by how close each merchant is to firing by the rule's own measure,
// so that it costs no query and always agrees with the alerts. The engine keeps the newest; Kafka workers store theirs and the
// API merges them.
type Ranking struct {
	AsOf window.Minute
	// Risk holds the RankLimit merchants nearest to (or past) the
	// cancel_rate_spike threshold, highest score first.
	Risk []RiskEntry
	// Volume holds every large merchant, largest drop first (no drop last).
	Volume []VolumeEval
}

// RiskEntry is one merchant's cancel_rate_spike evaluation and its score:
// c_H over the firing threshold multiplier × eff × max(a_H, min_approvals),
// so 1 is the line (it fires there once c_H ≥ min_cancels). Unlike the
// plain ratio it is defined for a merchant with no approvals, which is
// exactly the bust-out an operator must see first.
type RiskEntry struct {
	CancelEval
	Score float64
	// rate and ratio hold what RateH and Ratio point to once the entry
	// is kept by a Ranker (the evaluation's own floats are reused).
	rate, ratio       float64
	ownRate, ownRatio bool
}

// Score computes RiskEntry.Score; floats are fine here, it only orders a
// list (the rule itself compares exactly).
func Score(p CancelRateParams, r CancelResult) float64 {
	den := p.Multiplier.Float64() * r.Effective * float64(max(r.AH, p.MinApprovals))
	if den <= 0 {
		if r.CH > 0 {
			return float64(r.CH)
		}
		return 0
	}
	return float64(r.CH) / den
}

// Ranker builds a Ranking from evaluations offered one at a time
// (State.EachCancelEval), copying only those that may make the list: at
// a peak most of 100,000 merchants have cancels in the hour, and a copy of
// each (230 bytes) to sort them all cost as much as evaluating them.
type Ranker struct {
	p    CancelRateParams
	kept []RiskEntry // in no order past the floor; cut at 2 × RankLimit
	// floor, once full, is the RankLimit-th riskiest so far: an entry
	// that does not come before it cannot make the list.
	floor RiskEntry
	full  bool
}

// NewRanker starts a ranking with the rule's parameters (Score).
func NewRanker(p CancelRateParams) *Ranker {
	return &Ranker{p: p}
}

// Offer considers one evaluation; it keeps a copy if it may make the list.
func (r *Ranker) Offer(e *CancelEval) {
	if e.CH <= 0 {
		return
	}
	x := RiskEntry{CancelEval: *e, Score: Score(r.p, e.CancelResult)}
	if r.full && compareRisk(&x, &r.floor) >= 0 {
		return
	}
	if x.RateH != nil {
		x.rate, x.ownRate, x.RateH = *x.RateH, true, nil
	}
	if x.Ratio != nil {
		x.ratio, x.ownRatio, x.Ratio = *x.Ratio, true, nil
	}
	r.kept = append(r.kept, x)
	if len(r.kept) >= 2*RankLimit {
		r.cut()
	}
}

// cut sorts what is kept and keeps the RankLimit riskiest.
func (r *Ranker) cut() {
	sortRisk(r.kept)
	if len(r.kept) >= RankLimit {
		r.kept = r.kept[:RankLimit]
		r.floor, r.full = r.kept[RankLimit-1], true
	}
}

// Ranking is the ranking of minute m with the large merchants' volume
// evaluations.
func (r *Ranker) Ranking(m window.Minute, volume []VolumeEval) *Ranking {
	r.cut()
	risk := slices.Clone(r.kept)
	// Sorted for good: the pointers are taken after the last move.
	for i := range risk {
		if risk[i].ownRate {
			risk[i].RateH = &risk[i].rate
		}
		if risk[i].ownRatio {
			risk[i].Ratio = &risk[i].ratio
		}
	}
	vol := make([]VolumeEval, 0, len(volume))
	for _, e := range volume {
		if e.Large {
			vol = append(vol, e)
		}
	}
	sortVolume(vol)
	return &Ranking{AsOf: m, Risk: risk, Volume: vol}
}

// compareRisk orders the risk list: by evidence first, as alerts are
// prioritised; merchants below min_cancels have none (it is not computed
// for them) and follow by how near the line they are.
func compareRisk(a, b *RiskEntry) int {
	return cmp.Or(cmp.Compare(b.Evidence, a.Evidence), cmp.Compare(b.Score, a.Score), cmp.Compare(b.CH, a.CH), cmp.Compare(a.Merchant, b.Merchant))
}

func sortRisk(risk []RiskEntry) {
	slices.SortFunc(risk, func(a, b RiskEntry) int { return compareRisk(&a, &b) })
}

// sortVolume orders the large merchants the way the dashboard shows them:
// largest drop first, no drop last.
func sortVolume(vol []VolumeEval) {
	slices.SortFunc(vol, func(a, b VolumeEval) int {
		switch {
		case a.Drop == nil && b.Drop == nil:
		case a.Drop == nil:
			return 1
		case b.Drop == nil:
			return -1
		default:
			if c := cmp.Compare(*b.Drop, *a.Drop); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.Merchant, b.Merchant)
	})
}

// MergeRankings combines rankings of disjoint sets of merchants (workers')
// into one, as of the oldest of them.
func MergeRankings(rs []*Ranking) *Ranking {
	if len(rs) == 0 {
		return nil
	}
	out := &Ranking{AsOf: rs[0].AsOf}
	for _, r := range rs {
		out.AsOf = min(out.AsOf, r.AsOf)
		out.Risk = append(out.Risk, r.Risk...)
		out.Volume = append(out.Volume, r.Volume...)
	}
	sortRisk(out.Risk)
	out.Risk = slices.Clip(out.Risk[:min(len(out.Risk), RankLimit)])
	sortVolume(out.Volume)
	return out
}
