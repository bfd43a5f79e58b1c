package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// outboxChannel is NOTIFYed by every transaction that enqueues
// notifications, so the process sending them hears of alerts raised by
// another (a worker) at once instead of at its next poll.
const outboxChannel = "riskwatch_outbox"

// Lead runs fn while this process holds the sink-wide advisory lock named
// key: with several workers, exactly one sends notifications and does the
// housekeeping. It waits for the lock while another process holds it, and
// ends fn (through its context) when the lock's connection is lost, so two
// leaders never overlap for longer than it takes to notice. onOutbox is
// called when any process enqueued notifications.
func (s *Store) Lead(ctx context.Context, key string, log *slog.Logger, onOutbox func(), fn func(ctx context.Context) error) error {
	for {
		err := s.leadOnce(ctx, key, log, onOutbox, fn)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Warn("leadership ended", "key", key, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(3 * time.Second):
		}
	}
}

func (s *Store) leadOnce(ctx context.Context, key string, log *slog.Logger, onOutbox func(), fn func(ctx context.Context) error) error {
	pooled, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connecting for leadership: %w", err)
	}
	// The connection holds a session lock and a LISTEN: never back to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext($1))", s.schemaName+"/"+key).Scan(&got); err != nil {
		return fmt.Errorf("taking leadership: %w", err)
	}
	if !got {
		return nil
	}
	if _, err := conn.Exec(ctx, "LISTEN "+outboxChannel); err != nil {
		return fmt.Errorf("listening for notifications: %w", err)
	}
	log.Info("leading: sending notifications and housekeeping", "key", key)
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- fn(lctx) }()
	for {
		wctx, wcancel := context.WithTimeout(lctx, 2*time.Second)
		_, err := conn.WaitForNotification(wctx)
		wcancel()
		switch {
		case err == nil:
			onOutbox()
			continue
		case lctx.Err() != nil:
		case pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded):
			// Quiet: prove the connection, and with it the lock, alive.
			if _, err := conn.Exec(lctx, "SELECT 1"); err == nil {
				continue
			} else if lctx.Err() == nil {
				cancel(fmt.Errorf("leadership connection lost: %w", err))
			}
		default:
			cancel(fmt.Errorf("leadership connection lost: %w", err))
		}
		err = <-done
		if cause := context.Cause(lctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return err
	}
}
