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

// Notify writes one log record per notification; it cannot fail.
func (n *Notifier) Notify(ctx context.Context, ns ...notify.Notification) (bool, error) {
	for _, x := range ns {
		n.log.LogAttrs(ctx, slog.LevelWarn, "ALERT "+x.Kind,
			slog.String("rule", x.Rule), slog.Int64("merchant", x.MerchantID), slog.String("severity", x.Severity),
			slog.String("summary", x.Summary), slog.String("minute", notify.FormatTime(x.Minute)),
			slog.String("dashboard", x.DashboardURL), slog.String("idempotency_key", x.IdempotencyKey))
	}
	return false, nil
}
