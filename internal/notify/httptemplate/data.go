package httptemplate

import (
	"fmt"
	"strings"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// Data is what a template sees as ".": one notification, flattened for
// templates. Times are UTC (local puts them in the business time zone);
// amounts are whole KRW.
type Data struct {
	// Test is true for the notification `riskwatch notify test` sends
	// (rule "test", merchant 0, headline and summary starting "[TEST]").
	Test bool
	// ID is the outbox id (0 for a test); IdempotencyKey is stable across
	// retries and restarts and is also sent as the Idempotency-Key header.
	ID             int64
	IdempotencyKey string
	// Kind is firing, repeat, escalated, continued or resolved; Status
	// folds it to what a chat or SMS reader needs: "resolved" or "firing".
	Kind, Status string
	AlertID      int64
	Rule         string // cancel_rate_spike, volume_drop, pipeline_stuck or test
	MerchantID   int64
	MerchantName string // may be empty
	// Merchant is "name (#id)", or "merchant id" when the name is unknown.
	Merchant string
	Severity string // critical, warning or info
	// Priority is the alert's (P1, P2, P3); RoutedAt the priority this
	// notification was routed at; PreviousPriority the one an escalation
	// left ("" otherwise); Continues the earlier alert a continued one
	// continues (0 otherwise).
	Priority, RoutedAt, PreviousPriority string
	Continues                            int64
	// Summary is the engine's one line about the alert; Headline is the
	// short line a chat message or an SMS starts with, e.g.
	// "[P1] firing: cancel_rate_spike · 한빛상사 (#1001)".
	Summary, Headline string
	// StartsAt is when the alert started firing, EndsAt when it resolved
	// (zero unless resolved), Minute the evaluated minute's start.
	StartsAt, EndsAt, Minute time.Time
	// Values are the rule's reported values as stored (numbers, strings,
	// nil); index them with {{index .Values "c_h"}}.
	Values map[string]any
	// Evidence is values.evidence: -log10 of how probable the figures are
	// under the merchant's own history (0 when absent).
	Evidence float64
	// Exposure is the money at stake: KRW approved within the exposure
	// window (values.exposure; 0 when absent).
	Exposure int64
	// CanceledAmount is KRW canceled in the hour (cancel_rate_spike's
	// values.canceled_amount_h; 0 for other rules).
	CanceledAmount int64
	DashboardURL   string
	CreatedAt      time.Time
}

// DataOf flattens n for templates.
func DataOf(n notify.Notification) Data {
	d := Data{
		Test: n.Rule == notify.RuleTest, ID: n.ID, IdempotencyKey: n.IdempotencyKey, Kind: n.Kind, Status: "firing",
		AlertID: n.AlertID, Rule: n.Rule, MerchantID: n.MerchantID, MerchantName: n.MerchantName,
		Severity: n.Severity, Priority: n.Priority, RoutedAt: n.RoutedAt, PreviousPriority: n.PreviousPriority,
		Continues: n.Continues, Summary: n.Summary,
		StartsAt: utc(n.StartsAt), EndsAt: utc(n.EndsAt), Minute: utc(n.Minute), CreatedAt: utc(n.CreatedAt),
		Values: n.Values, DashboardURL: n.DashboardURL,
	}
	if d.Values == nil {
		d.Values = map[string]any{}
	}
	if n.Kind == notify.KindResolved {
		d.Status = "resolved"
	}
	d.Merchant = fmt.Sprintf("merchant %d", n.MerchantID)
	if n.MerchantName != "" {
		d.Merchant = fmt.Sprintf("%s (#%d)", n.MerchantName, n.MerchantID)
	}
	d.Evidence, _ = toFloat(n.Values["evidence"])
	d.Exposure, _ = toInt(n.Values["exposure"])
	d.CanceledAmount, _ = toInt(n.Values["canceled_amount_h"])
	d.Headline = headline(d)
	return d
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func headline(d Data) string {
	var b strings.Builder
	if d.Test {
		b.WriteString(notify.TestMark + " ")
	}
	if d.Priority != "" {
		b.WriteString("[" + d.Priority + "] ")
	}
	switch d.Kind {
	case notify.KindRepeat:
		b.WriteString("still firing")
	case notify.KindEscalated:
		b.WriteString("escalated")
	case notify.KindContinued:
		b.WriteString("firing again")
	default:
		b.WriteString(d.Kind)
	}
	b.WriteString(": " + d.Rule)
	if d.MerchantID != 0 {
		b.WriteString(" · " + d.Merchant)
	}
	return b.String()
}

// Samples are the notifications templates are checked against when the
// configuration is loaded: every kind's shape, both rules' values (and a
// missing one), a test, and a merchant name with what breaks unescaped
// JSON, URLs and headers (quotes, a backslash, a line break, Korean).
func Samples() []notify.Notification {
	starts := time.Date(2026, 11, 25, 5, 2, 0, 0, time.UTC)
	cancel := map[string]any{
		"a_h": float64(120), "c_h": float64(15), "rate_h": 0.125, "baseline": 0.02, "baseline_source": "merchant",
		"effective_baseline": 0.02, "ratio": 6.25, "evidence": 7.25, "canceled_amount_h": float64(48_300_000),
		"exposure": float64(1_234_567_890),
	}
	volume := map[string]any{
		"large": true, "daily_avg": float64(2_400_000_000), "expected": float64(1_100_000_000), "today": float64(300_000_000),
		"drop": nil, "evidence": 2.1, "spread": 0.08, "exposure": float64(16_800_000_000),
	}
	base := notify.Notification{
		ID: 1, IdempotencyKey: "riskwatch-1-firing-1795582920", Kind: notify.KindFiring, AlertID: 1, Rule: "cancel_rate_spike",
		MerchantID: 1001, MerchantName: "\"한빛\" 상사\\\n<&> 주식회사", Severity: "critical", Priority: "P1", RoutedAt: "P1",
		Summary: "merchant 1001: 15 cancels / 120 approvals in the last hour", StartsAt: starts, Minute: starts,
		Values: cancel, DashboardURL: "https://riskwatch.example.com/merchants/1001", CreatedAt: starts.Add(time.Minute + time.Second),
	}
	resolved := base
	resolved.ID, resolved.Kind, resolved.IdempotencyKey, resolved.Rule = 2, notify.KindResolved, "riskwatch-2-resolved-1795585920", "volume_drop"
	resolved.MerchantName, resolved.Severity, resolved.Priority, resolved.RoutedAt = "", "warning", "P2", "P2"
	resolved.Values, resolved.EndsAt = volume, starts.Add(50*time.Minute)
	escalated := base
	escalated.ID, escalated.Kind, escalated.PreviousPriority, escalated.PreviousSeverity = 3, notify.KindEscalated, "P2", "warning"
	continued := base
	continued.ID, continued.Kind, continued.Continues, continued.Values = 4, notify.KindContinued, 1, map[string]any{}
	return []notify.Notification{base, resolved, escalated, continued,
		notify.TestNotification("sample", starts, "https://riskwatch.example.com/")}
}
