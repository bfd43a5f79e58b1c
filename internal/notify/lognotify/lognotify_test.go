package lognotify

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
)

func TestLogsEachNotification(t *testing.T) {
	var buf bytes.Buffer
	n := New(slog.New(slog.NewTextHandler(&buf, nil)))
	retry, err := n.Notify(context.Background(),
		notify.Notification{Kind: "firing", Rule: "cancel_rate_spike", MerchantID: 42, Summary: "merchant 42: 12 cancels", IdempotencyKey: "k1", Minute: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)},
		notify.Notification{Kind: "resolved", Rule: "volume_drop", MerchantID: 7, IdempotencyKey: "k2"})
	if retry || err != nil {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	out := buf.String()
	for _, want := range []string{`msg="ALERT firing"`, "merchant=42", `summary="merchant 42: 12 cancels"`, "minute=2026-11-25T09:00:00Z", "idempotency_key=k1", `msg="ALERT resolved"`, "merchant=7"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestPagesStandOut: what is routed at P1 is logged at error level as a
// PAGE; its resolve, and anything less urgent, as an ordinary ALERT.
func TestPagesStandOut(t *testing.T) {
	var buf bytes.Buffer
	n := New(slog.New(slog.NewTextHandler(&buf, nil)))
	if _, err := n.Notify(context.Background(),
		notify.Notification{Kind: "escalated", Rule: "cancel_rate_spike", MerchantID: 1, Priority: "P1", RoutedAt: "P1", IdempotencyKey: "a"},
		notify.Notification{Kind: "continued", Rule: "cancel_rate_spike", MerchantID: 2, Priority: "P1", RoutedAt: "P2", IdempotencyKey: "b"},
		notify.Notification{Kind: "resolved", Rule: "cancel_rate_spike", MerchantID: 1, Priority: "P1", RoutedAt: "P1", IdempotencyKey: "c"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{`level=ERROR msg="PAGE escalated"`, `level=WARN msg="ALERT continued"`, `level=WARN msg="ALERT resolved"`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q lacks %q", i, lines[i], want)
		}
	}
}
