package notify

import (
	"fmt"
	"time"
)

// RuleTest is the rule of the notification `riskwatch notify test` sends.
const RuleTest = "test"

// TestMark starts the summary of a test notification, so that nobody reading
// a channel mistakes it for an alert.
const TestMark = "[TEST]"

// TestNotification is the one clearly marked notification an operator sends
// to check a receiver before an incident: rule "test", merchant 0, priority
// P3 and severity info (so that it pages nobody), a summary starting with
// "[TEST]", and an idempotency key of its own that no alert's key can equal
// (alerts' keys are "riskwatch-<alert id>-…"), different on every run so a
// receiver that deduplicates still shows the next test.
func TestNotification(receiver string, now time.Time, dashboardURL string) Notification {
	now = now.UTC()
	minute := now.Truncate(time.Minute)
	return Notification{
		IdempotencyKey: fmt.Sprintf("riskwatch-test-%s-%d", receiver, now.UnixNano()),
		Kind:           KindFiring,
		Rule:           RuleTest,
		Severity:       "info",
		Priority:       "P3",
		RoutedAt:       "P3",
		Summary:        TestMark + " riskwatch test notification to receiver " + receiver + "; no action needed",
		StartsAt:       minute,
		Minute:         minute,
		Values:         map[string]any{},
		DashboardURL:   dashboardURL,
		CreatedAt:      now,
	}
}
