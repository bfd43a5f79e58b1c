package rules

import "math"

// Params are both rules' thresholds, how their alerts are ranked, and the
// exposure window (minutes) of the money at stake.
type Params struct {
	Cancel          CancelRateParams
	Volume          VolumeDropParams
	Priority        PriorityParams
	ExposureMinutes int
}

// Values are the reported values of SPEC §5, as alerts store and show them,
// with the evidence and the money of SPEC §7a.
func (r CancelResult) Values() map[string]any {
	hour, sameHour, recent, usual, least := r.Tails(r.CH)
	return map[string]any{
		"a_h": r.AH, "c_h": r.CH, "rate_h": ptrValue(r.RateH),
		"a_b": r.AB, "c_b": r.CB,
		"baseline": r.Baseline, "baseline_source": r.BaselineSource, "effective_baseline": r.Effective,
		"ratio":    ptrValue(r.Ratio),
		"evidence": round3(least), "evidence_7d": round3(hour), "evidence_same_hour": round3(sameHour), "evidence_recent": round3(recent),
		"expected_7d": round3(r.ExpectedHour), "expected_same_hour": round3(r.ExpectedSameHour), "expected_recent": round3(r.ExpectedRecent),
		"evidence_usual": round3(usual), "expected_usual": round3(r.ExpectedUsual),
		"batch_factor": round3(r.Batch), "canceled_amount_h": r.CanceledAmount, "exposure": r.Exposure,
		"today_cancels": r.TodayCancels, "today_level": round3(r.TodayRate), "today_level_usual": round3(r.TodayUsual),
	}
}

// Values are the reported values of SPEC §6, with the evidence and the
// money of SPEC §7a.
func (r VolumeResult) Values() map[string]any {
	return map[string]any{
		"large": r.Large, "daily_avg": r.DailyAvg, "expected": r.Expected, "today": r.Today, "drop": ptrValue(r.Drop),
		"evidence": round3(r.Evidence), "spread": round3(r.Spread), "exposure": r.Exposure,
	}
}

func ptrValue(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// round3 keeps three decimals: the evidence figures are read by people and
// compared between a live run and a backtest, where the last bits of a
// float sum are noise.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
