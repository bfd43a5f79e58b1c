package alert

import (
	"fmt"

	"github.com/riskwatch/riskwatch/internal/rules"
)

// RuleStuck names the alert riskwatch raises about itself when its pipeline
// is stuck: it goes through the same outbox and receivers as the rules'
// alerts, for merchant 0.
const RuleStuck = "pipeline_stuck"

// Severity of each rule's alerts: a cancellation surge is money leaving
// now, and so is a pipeline that stopped watching; a volume drop is a
// merchant to call.
func Severity(rule string) string {
	if rule == rules.VolumeDrop {
		return "warning"
	}
	return "critical"
}

// Summary is the one line a human reads first in a notification.
func Summary(rule string, merchant int64, v map[string]any, kind string) string {
	if kind == NotifyResolved {
		if rule == RuleStuck {
			return fmt.Sprintf("resolved: riskwatch pipeline %v is moving again", v["instance"])
		}
		return fmt.Sprintf("resolved: %s for merchant %d", rule, merchant)
	}
	switch rule {
	case rules.CancelRateSpike:
		rate := "n/a (no approvals)"
		if r, ok := v["rate_h"].(float64); ok {
			rate = fmt.Sprintf("%.2f%%", r*100)
		}
		ratio := ""
		if r, ok := v["ratio"].(float64); ok {
			ratio = fmt.Sprintf(", %.1f× the 7-day rate", r)
		}
		return fmt.Sprintf("merchant %d: %v cancels / %v approvals in the last hour (rate %s%s; baseline %.3f%% from %v)",
			merchant, v["c_h"], v["a_h"], rate, ratio, toFloat(v["effective_baseline"])*100, v["baseline_source"])
	case rules.VolumeDrop:
		drop := ""
		if d, ok := v["drop"].(float64); ok {
			drop = fmt.Sprintf(" (%.0f%% below)", d*100)
		}
		return fmt.Sprintf("merchant %d: %v KRW approved today so far against %.0f KRW expected by this time%s",
			merchant, v["today"], toFloat(v["expected"]), drop)
	case RuleStuck:
		return fmt.Sprintf("riskwatch pipeline %v stuck since %v: %v identical failures at position %v: %v",
			v["instance"], v["since"], v["failures"], v["position"], v["error"])
	}
	return fmt.Sprintf("%s for merchant %d", rule, merchant)
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	}
	return 0
}
