package alert

import (
	"fmt"

	"github.com/riskwatch/riskwatch/internal/rules"
)

// RuleStuck names the alert riskwatch raises about itself when its pipeline
// is stuck: it goes through the same outbox and receivers as the rules'
// alerts, for merchant 0.
const RuleStuck = "pipeline_stuck"

// Severity follows priority (PagerDuty's and Alertmanager's words): P1
// critical, P2 warning, P3 info. A pipeline that stopped watching is
// critical. An alert from before priorities existed keeps its rule's old
// severity: a cancellation surge critical, a volume drop a warning.
func Severity(rule string, p rules.Priority) string {
	switch {
	case rule == RuleStuck, p == rules.P1:
		return "critical"
	case p == rules.P2:
		return "warning"
	case p == rules.P3:
		return "info"
	case rule == rules.VolumeDrop:
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
	var line string
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
		line = fmt.Sprintf("merchant %d: %v cancels / %v approvals in the last hour (rate %s%s; baseline %.3f%% from %v)",
			merchant, v["c_h"], v["a_h"], rate, ratio, toFloat(v["effective_baseline"])*100, v["baseline_source"])
		if amt, ok := intValue(v["canceled_amount_h"]); ok {
			line += fmt.Sprintf("; %s KRW canceled in the hour", groupDigits(amt))
		}
	case rules.VolumeDrop:
		drop := ""
		if d, ok := v["drop"].(float64); ok {
			drop = fmt.Sprintf(" (%.0f%% below)", d*100)
		}
		line = fmt.Sprintf("merchant %d: %v KRW approved today so far against %.0f KRW expected by this time%s",
			merchant, v["today"], toFloat(v["expected"]), drop)
	case RuleStuck:
		return fmt.Sprintf("riskwatch pipeline %v stuck since %v: %v identical failures at position %v: %v",
			v["instance"], v["since"], v["failures"], v["position"], v["error"])
	default:
		return fmt.Sprintf("%s for merchant %d", rule, merchant)
	}
	if e := toFloat(v["evidence"]); e > 0 {
		line += fmt.Sprintf("; odds under its own history 1 in 10^%.1f", e)
	}
	if x, ok := intValue(v["exposure"]); ok && x > 0 {
		line += fmt.Sprintf("; %s KRW approved in the exposure window", groupDigits(x))
	}
	return line
}

// Headline is Summary with what kind of notification it is and the
// priority in front, the way a person scans a channel: "[P1] escalated:
// merchant 7: …".
func Headline(rule string, merchant int64, v map[string]any, kind string, p rules.Priority) string {
	prefix := ""
	if p != 0 {
		prefix = "[" + p.String() + "] "
	}
	switch kind {
	case NotifyEscalated:
		prefix += "escalated: "
	case NotifyContinued:
		prefix += "again (continues the earlier alert): "
	}
	return prefix + Summary(rule, merchant, v, kind)
}

// groupDigits writes n with thousands separators (12,300,000).
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	var b []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	if neg {
		return "-" + string(b)
	}
	return string(b)
}

// intValue reads an amount as the engine stores it (int64) or as it comes
// back from the sink's JSON (float64, exact below 2^53).
func intValue(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case float64:
		return int64(x), true
	}
	return 0, false
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
