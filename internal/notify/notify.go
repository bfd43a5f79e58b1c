// Package notify delivers alert notifications from the durable outbox to
// receivers (webhook, Slack, PagerDuty, Alertmanager).
//
// Delivery is at least once: the alert store writes each notification into
// the outbox in the same transaction as the alert change, and one Sender per
// receiver reads the outbox through a Queue, sends, and records the outcome.
// A receiver that is down only delays its own notifications: the Sender backs
// off (capped exponential, the attempt count kept in the Queue so restarts
// continue it) and the pipeline never waits for it. Receivers get a stable
// idempotency key per notification to drop the duplicates at-least-once
// implies.
//
// The shape follows Prometheus' notifier (one send loop per receiver, a
// 1-buffered wake-up channel, batches, per-send timeouts, per-receiver
// metrics created up front) and Alertmanager's notify package (Notify returns
// whether a failure is worth retrying; one integration per package; a shared
// harness in notifytest checks every integration's status-code handling).
package notify

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Kinds of notification.
const (
	KindFiring   = "firing"
	KindRepeat   = "repeat"
	KindResolved = "resolved"
	// KindEscalated: an open alert became more urgent (PreviousPriority to
	// Priority).
	KindEscalated = "escalated"
	// KindContinued: the alert fired again soon after an earlier one of the
	// same rule and merchant (Continues) was notified.
	KindContinued = "continued"
)

// Notification is one message about one alert transition, as stored in the outbox.
type Notification struct {
	ID             int64  // outbox id; ascending = creation order
	IdempotencyKey string // stable across retries and restarts
	Kind           string // "firing", "repeat", "resolved", "escalated" or "continued"
	AlertID        int64
	Rule           string // "cancel_rate_spike" | "volume_drop"
	MerchantID     int64
	MerchantName   string // may be empty
	Severity       string // "critical" | "warning" | "info", from the priority
	// Priority is the alert's ("P1", "P2", "P3"; "" for an alert from
	// before priorities); RoutedAt the priority this notification was
	// routed at (a re-fire soon after a page goes out as P2), and
	// PreviousPriority the one an escalation left.
	Priority, RoutedAt, PreviousPriority string
	// PreviousSeverity is the severity that went with PreviousPriority.
	PreviousSeverity string
	// Continues is the earlier alert a KindContinued one continues.
	Continues    int64
	Summary      string         // one human line, already written by the caller
	StartsAt     time.Time      // when the alert started firing
	EndsAt       time.Time      // zero unless Kind == "resolved"
	Minute       time.Time      // the evaluated minute (start)
	Values       map[string]any // the rule's reported values (numbers, strings, nil)
	DashboardURL string         // link to the merchant's dashboard page
	CreatedAt    time.Time

	// Attempts is how many attempts to deliver this notification to the
	// receiver asking Queue.Due have failed so far (as last recorded by
	// Queue.Retry); 0 for a new one. It is delivery state, not message
	// content: the Sender uses it so that a restart continues the backoff
	// where it was instead of hammering a receiver that is still down.
	Attempts int
}

// Notifier sends notifications to one receiver. retry reports whether a
// failure may succeed later (network errors, timeouts, 5xx, 408, 429) as
// opposed to a rejection (other 4xx).
//
// A Notifier sends each call's notifications once and does not retry on its
// own: retries, backoff and their bookkeeping belong to the Sender.
type Notifier interface {
	Notify(ctx context.Context, ns ...Notification) (retry bool, err error)
}

// Queue is the durable outbox as one receiver sees it (implemented on PostgreSQL elsewhere).
type Queue interface {
	// Due returns up to limit undelivered notifications for the receiver,
	// oldest first, and stops at the first one not yet due (its next attempt
	// is in the future): delivery is in order per receiver, so a resolve never
	// overtakes its firing. wait is how long until that one is due (0 when
	// none is waiting). Each returned Notification carries this receiver's
	// Attempts.
	Due(ctx context.Context, receiver string, now time.Time, limit int) (ns []Notification, wait time.Duration, err error)
	Delivered(ctx context.Context, receiver string, ids []int64, at time.Time) error
	// Retry records a failed attempt and when to try again.
	Retry(ctx context.Context, receiver string, ids []int64, attempts int, next time.Time, reason string) error
	// Rejected records a permanent failure (kept for operators, not retried).
	Rejected(ctx context.Context, receiver string, ids []int64, reason string) error
}

// FormatTime renders t the way every integration puts times on the wire:
// RFC 3339 in UTC, with sub-second digits only when there are some. Zero is "".
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Truncate cuts s to at most n characters (runes), marking the cut with "…".
func Truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// FormatValue renders one of a rule's reported values as a string for
// receivers that only take strings (Alertmanager annotations). Numbers keep
// all their digits and never use exponents in the range amounts and rates
// live in; nil is "null", as in JSON.
func FormatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case float32:
		return formatFloat(float64(x), 32)
	case float64:
		return formatFloat(x, 64)
	case fmt.Stringer: // json.Number among them
		return x.String()
	default:
		// Strings, bools and integers print as themselves.
		return fmt.Sprint(v)
	}
}

func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	// 'f' keeps KRW amounts readable (1500000000, not 1.5e+09); 'g' only
	// where 'f' would print a wall of zeros.
	if a := math.Abs(f); a != 0 && (a >= 1e21 || a < 1e-6) {
		return strconv.FormatFloat(f, 'g', -1, bits)
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}

// JSONValues returns a copy of values that encoding/json can always encode:
// NaN and ±Inf (which JSON has no literal for) become the strings "NaN",
// "+Inf" and "-Inf". Otherwise one odd value would make a notification
// unencodable and turn it into a permanent rejection. The result is never
// nil, so receivers see {} rather than null.
func JSONValues(values map[string]any) map[string]any {
	out := make(map[string]any, len(values))
	for k, v := range values {
		switch x := v.(type) {
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				v = formatFloat(x, 64)
			}
		case float32:
			if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
				v = formatFloat(f, 32)
			}
		}
		out[k] = v
	}
	return out
}
