// Package leader picks one process among several on one sink to do what
// only one may: send notifications and keep house.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/riskwatch/riskwatch/internal/store"
)

// Run runs fn while this process holds the sink-wide advisory lock named
// key: with several workers, exactly one sends notifications and does the
// housekeeping. It waits for the lock while another process holds it, and
// ends fn (through its context) when the lock's connection is lost, so two
// leaders never overlap for longer than it takes to notice. While leading
// it LISTENs on channel and calls onNotify for each NOTIFY there.
func Run(ctx context.Context, db *store.DB, key, channel string, log *slog.Logger, onNotify func(), fn func(ctx context.Context) error) error {
	for {
		err := leadOnce(ctx, db, key, channel, log, onNotify, fn)
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

func leadOnce(ctx context.Context, db *store.DB, key, channel string, log *slog.Logger, onNotify func(), fn func(ctx context.Context) error) error {
	pooled, err := db.Pool().Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connecting for leadership: %w", err)
	}
	// The connection holds a session lock and a LISTEN: never back to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext($1))", db.SchemaName()+"/"+key).Scan(&got); err != nil {
		return fmt.Errorf("taking leadership: %w", err)
	}
	if !got {
		return nil
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
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
			onNotify()
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
