// Package lognotify is the built-in receiver that writes each notification
// to the engine's log: the demo's "alert printer", and a zero-setup way to
// see what the other receivers are sent.
package lognotify

import (
	"context"
	"log/slog"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// Notifier logs notifications.
type Notifier struct{ log *slog.Logger }

// New returns a Notifier writing to log.
func New(log *slog.Logger) *Notifier { return &Notifier{log: log} }

// MaxBatch: the log takes any number at once.
func (n *Notifier) MaxBatch() int { return 100 }

// Notify writes one log record per notification; it cannot fail. What is
// routed at P1 — a page — is logged at error level as "PAGE", so it stands
// out of a demo's stream of P2 and P3 alerts.
func (n *Notifier) Notify(ctx context.Context, ns ...notify.Notification) (bool, error) {
	for _, x := range ns {
		level, msg := slog.LevelWarn, "ALERT "+x.Kind
		if x.RoutedAt == "P1" && x.Kind != notify.KindResolved {
			level, msg = slog.LevelError, "PAGE "+x.Kind
		}
		n.log.LogAttrs(ctx, level, msg, slog.String("priority", x.Priority),
			slog.String("rule", x.Rule), slog.Int64("merchant", x.MerchantID), slog.String("severity", x.Severity),
			slog.String("summary", x.Summary), slog.String("minute", notify.FormatTime(x.Minute)),
			slog.String("dashboard", x.DashboardURL), slog.String("idempotency_key", x.IdempotencyKey))
	}
	return false, nil
}
