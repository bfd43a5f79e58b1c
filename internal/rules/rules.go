// Package rules evaluates riskwatch's two alert rules, cancel_rate_spike
// (SPEC §5) and volume_drop (SPEC §6), and keeps the windowed sums they need
// as minutes close. It does no I/O and reads no clock: the pipeline passes in
// what it read from the sink, so a live run and a backtest (SPEC §8) fed the
// same minutes produce identical evaluations.
//
// Every decision is made in exact integer arithmetic (thresholds are exact
// rationals, products are compared in 192 bits). Floats appear only in the
// values reported with an evaluation.
package rules

// Rule names, used as the alert identity and in labels.
const (
	CancelRateSpike = "cancel_rate_spike"
	VolumeDrop      = "volume_drop"
)

// Baseline sources reported by cancel_rate_spike.
const (
	BaselineMerchant = "merchant"
	BaselinePlatform = "platform"
)

// CancelRateParams are the thresholds of SPEC §5.
type CancelRateParams struct {
	MinBaselineApprovals int64 // default 100
	BaselineFloor        Ratio // default 0.002
	MinCancels           int64 // default 5
	Multiplier           Ratio // default 2.0
	MinApprovals         int64 // default 20
}

// VolumeDropParams are the thresholds of SPEC §6.
type VolumeDropParams struct {
	LargeDailyAmount    int64 // KRW, default 1_000_000_000
	MinExpectedFraction Ratio // default 0.05
	DropRatio           Ratio // default 0.5
}

// DefaultCancelRateParams returns SPEC §5's defaults.
func DefaultCancelRateParams() CancelRateParams {
	return CancelRateParams{
		MinBaselineApprovals: 100,
		BaselineFloor:        Ratio{Num: 1, Den: 500},
		MinCancels:           5,
		Multiplier:           Ratio{Num: 2, Den: 1},
		MinApprovals:         20,
	}
}

// DefaultVolumeDropParams returns SPEC §6's defaults.
func DefaultVolumeDropParams() VolumeDropParams {
	return VolumeDropParams{
		LargeDailyAmount:    1_000_000_000,
		MinExpectedFraction: Ratio{Num: 1, Den: 20},
		DropRatio:           Ratio{Num: 1, Den: 2},
	}
}

// CancelInput is one merchant's window sums: AH, CH over H (the hour ending
// with the evaluated minute), AB, CB over B (the 7 days before H), and the
// platform-wide sums over B.
type CancelInput struct{ AH, CH, AB, CB, PlatformAB, PlatformCB int64 }

// CancelResult is a cancel_rate_spike evaluation with the values an alert
// reports.
type CancelResult struct {
	Fires          bool
	AH, CH         int64
	RateH          *float64 // CH/AH; nil when AH == 0
	Baseline       float64
	BaselineSource string  // BaselineMerchant or BaselinePlatform
	Effective      float64 // max(baseline, floor)
	// Ratio is RateH / Effective; nil when AH == 0, and also when Effective
	// is 0 (possible only with a zero floor), since +Inf has no JSON form.
	Ratio  *float64
	AB, CB int64 // the merchant's 7-day sums, for the alert's values
	// CancelEvidence: how surprising, how much money, what priority (set
	// by State's evaluation; EvalCancelRate alone leaves it zero).
	CancelEvidence
}

// EvalCancelRate decides SPEC §5 for one merchant.
func EvalCancelRate(p CancelRateParams, in CancelInput) CancelResult {
	var r CancelResult
	evalCancel(p, in, &r, new(float64), new(float64))
	return r
}

// evalCancel fills r, pointing RateH and Ratio at the given slots when they
// are set, so that State can evaluate thousands of merchants with one
// allocation for all their floats.
func evalCancel(p CancelRateParams, in CancelInput, r *CancelResult, rateSlot, ratioSlot *float64) {
	*r = CancelResult{AH: in.AH, CH: in.CH, AB: in.AB, CB: in.CB}

	// The merchant's own history is trusted only with enough approvals; a
	// zero-approval baseline has no rate at all even if the minimum is 0.
	bn, bd := uint64(0), uint64(1)
	if in.AB >= p.MinBaselineApprovals && in.AB > 0 {
		r.BaselineSource = BaselineMerchant
		bn, bd = nonNeg(in.CB), uint64(in.AB)
	} else {
		r.BaselineSource = BaselinePlatform
		if in.PlatformAB > 0 {
			bn, bd = nonNeg(in.PlatformCB), uint64(in.PlatformAB)
		}
	}
	r.Baseline = float64(bn) / float64(bd)

	// eff = max(baseline, floor), chosen by the exact comparison bn/bd >= fn/fd.
	en, ed := p.BaselineFloor.parts()
	if mul3(bn, ed, 1).cmp(mul3(en, bd, 1)) >= 0 {
		en, ed = bn, bd
	}
	r.Effective = float64(en) / float64(ed)

	if in.AH > 0 {
		*rateSlot = float64(in.CH) / float64(in.AH)
		r.RateH = rateSlot
		if r.Effective > 0 {
			*ratioSlot = *rateSlot / r.Effective
			r.Ratio = ratioSlot
		}
	}

	// c_H >= mult × eff × max(a_H, min_approvals), i.e. with mult = mn/md and
	// eff = en/ed: c_H·md·ed >= mn·en·max(a_H, min_approvals).
	ch := nonNeg(in.CH)
	if ch < nonNeg(p.MinCancels) {
		return
	}
	mn, md := p.Multiplier.parts()
	denom := max(nonNeg(in.AH), nonNeg(p.MinApprovals))
	r.Fires = mul3(ch, md, ed).cmp(mul3(mn, en, denom)) >= 0
}

// VolumeInput is one merchant's volumes for day D at time of day t: Sum7 is
// the approved amount over days D−7…D−1, Prefix7 the sum over those 7 days of
// the approved amount from 00:00 to t, Today the approved amount from 00:00 of
// D to the end of the evaluated minute.
type VolumeInput struct{ Sum7, Prefix7, Today int64 }

// VolumeResult is a volume_drop evaluation with the values an alert reports.
type VolumeResult struct {
	Large, Fires bool
	DailyAvg     float64 // Sum7/7
	Expected     float64 // Prefix7/7
	Today        int64
	Drop         *float64 // 1 - Today/Expected; nil when Expected == 0
	// VolumeEvidence is set by State's evaluation.
	VolumeEvidence
}

// EvalVolumeDrop decides SPEC §6 for one merchant.
func EvalVolumeDrop(p VolumeDropParams, in VolumeInput) VolumeResult {
	var r VolumeResult
	evalVolume(p, in, &r, new(float64))
	return r
}

func evalVolume(p VolumeDropParams, in VolumeInput, r *VolumeResult, dropSlot *float64) {
	*r = VolumeResult{
		DailyAvg: float64(in.Sum7) / 7,
		Expected: float64(in.Prefix7) / 7,
		Today:    in.Today,
	}
	if in.Prefix7 != 0 {
		*dropSlot = 1 - float64(in.Today)/r.Expected
		r.Drop = dropSlot
	}

	// Every comparison is multiplied through by 7 and the ratios'
	// denominators, so nothing is divided:
	//   daily_avg >= L                      ⇔ Sum7 >= 7·L
	//   expected >= frac·daily_avg          ⇔ Prefix7·fd >= fn·Sum7
	//   today <= (1 − drop)·expected        ⇔ 7·Today·dd <= (dd − dn)·Prefix7
	sum, prefix, today := nonNeg(in.Sum7), nonNeg(in.Prefix7), nonNeg(in.Today)
	r.Large = mul3(sum, 1, 1).cmp(mul3(7, nonNeg(p.LargeDailyAmount), 1)) >= 0
	if !r.Large || prefix == 0 {
		// Nothing expected by now means nothing to have dropped from.
		return
	}
	fn, fd := p.MinExpectedFraction.parts()
	if mul3(prefix, fd, 1).cmp(mul3(fn, sum, 1)) < 0 {
		return
	}
	dn, dd := p.DropRatio.parts()
	if dn > dd {
		return // a drop of more than 100% cannot happen with today >= 0
	}
	r.Fires = mul3(7, today, dd).cmp(mul3(dd-dn, prefix, 1)) <= 0
}
