package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/notify"
)

// cmdNotifyTest sends one marked test notification straight through a
// receiver's integration (no outbox, no retry) and says what came back, so
// an operator can check a channel before an incident.
func cmdNotifyTest(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("notify test", stderr)
	name := fs.String("receiver", "", "name of the receiver to test (required)")
	cfg, log, err := setup(fs, args, stderr, getenv)
	if err != nil {
		return err
	}
	if *name == "" {
		return usageError{"notify test: --receiver is required"}
	}
	r, err := findReceiver(cfg, *name)
	if err != nil {
		return fmt.Errorf("notify test: %w", err)
	}
	client, rec := notify.NewRecordingClient()
	n, err := newNotifier(r, cfg.Location, client, log)
	if err != nil {
		return fmt.Errorf("notify test: receiver %s: %w", r.Name, err)
	}
	msg := notify.TestNotification(r.Name, time.Now(), engine.DashboardHome(cfg))
	start := time.Now()
	retry, err := n.Notify(ctx, msg)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		verdict := "rejected: sending it again would not help"
		if retry {
			verdict = "the receiver is down or busy: alerts would be retried with backoff"
		}
		return fmt.Errorf("notify test: receiver %s (%s) failed after %s (%s): %w", r.Name, r.Type, took, verdict, err)
	}
	outcome := "logged"
	if s := rec.Status(); s != 0 {
		outcome = fmt.Sprintf("HTTP %d %s", s, http.StatusText(s))
	}
	fmt.Fprintf(stdout, "test notification sent to %s (%s): %s in %s, idempotency key %s\n", r.Name, r.Type, outcome, took, msg.IdempotencyKey)
	return nil
}

// findReceiver returns the receiver called name, or an error listing the
// configured ones.
func findReceiver(cfg *config.Config, name string) (config.Receiver, error) {
	var names []string
	for _, r := range cfg.Notify.Receivers {
		if r.Name == name {
			return r, nil
		}
		names = append(names, r.Name)
	}
	if len(names) == 0 {
		return config.Receiver{}, fmt.Errorf("no receiver named %q: no receivers are configured (notify.receivers)", name)
	}
	return config.Receiver{}, fmt.Errorf("no receiver named %q; configured: %s", name, strings.Join(names, ", "))
}
