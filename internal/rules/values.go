package rules

// Params are both rules' thresholds.
type Params struct {
	Cancel CancelRateParams
	Volume VolumeDropParams
}

// Values are the reported values of SPEC §5, as alerts store and show them.
func (r CancelResult) Values() map[string]any {
	return map[string]any{
		"a_h": r.AH, "c_h": r.CH, "rate_h": ptrValue(r.RateH),
		"a_b": r.AB, "c_b": r.CB,
		"baseline": r.Baseline, "baseline_source": r.BaselineSource, "effective_baseline": r.Effective,
		"ratio": ptrValue(r.Ratio),
	}
}

// Values are the reported values of SPEC §6.
func (r VolumeResult) Values() map[string]any {
	return map[string]any{
		"large": r.Large, "daily_avg": r.DailyAvg, "expected": r.Expected, "today": r.Today, "drop": ptrValue(r.Drop),
	}
}

func ptrValue(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
