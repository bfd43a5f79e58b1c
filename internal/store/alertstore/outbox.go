package alertstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// Outbox is the notify.Queue of the sink's deliveries table.
type Outbox struct{ s *Store }

// Outbox returns the store's notification queue.
func (s *Store) Outbox() *Outbox { return &Outbox{s: s} }

var _ notify.Queue = (*Outbox)(nil)

// Due returns the receiver's pending notifications in order, stopping at
// the first whose next attempt is still in the future. It reads in a
// transaction of the store's, so on a fenced view a process that is no
// longer the active one cannot even pick notifications to send.
func (o *Outbox) Due(ctx context.Context, receiver string, now time.Time, limit int) ([]notify.Notification, time.Duration, error) {
	var out []notify.Notification
	var wait time.Duration
	err := o.s.db.Tx(ctx, func(tx pgx.Tx) error {
		out, wait = nil, 0
		rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT n.id, n.payload, n.created_at, d.next_attempt_at, d.attempts
			FROM %s d JOIN %s n ON n.id = d.notification_id
			WHERE d.receiver = $1 AND d.status = 'pending'
			ORDER BY d.notification_id LIMIT $2`, o.s.db.Table("deliveries"), o.s.db.Table("notifications")), receiver, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var payload []byte
			var created, next time.Time
			var attempts int
			if err := rows.Scan(&id, &payload, &created, &next, &attempts); err != nil {
				return err
			}
			if next.After(now) {
				wait = next.Sub(now)
				return rows.Err()
			}
			var n notify.Notification
			if err := json.Unmarshal(payload, &n); err != nil {
				return fmt.Errorf("decoding notification %d: %w", id, err)
			}
			n.ID, n.CreatedAt, n.Attempts = id, created, attempts
			out = append(out, n)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("reading outbox for %s: %w", receiver, err)
	}
	return out, wait, nil
}

func (o *Outbox) update(ctx context.Context, what, set string, receiver string, ids []int64, args ...any) error {
	all := append([]any{receiver, ids}, args...)
	_, err := o.s.db.Exec(ctx, fmt.Sprintf(`UPDATE %s SET %s WHERE receiver = $1 AND notification_id = ANY($2) AND status = 'pending'`,
		o.s.db.Table("deliveries"), set), all...)
	if err != nil {
		return fmt.Errorf("marking %d notifications %s for %s: %w", len(ids), what, receiver, err)
	}
	return nil
}

// Delivered marks notifications delivered.
func (o *Outbox) Delivered(ctx context.Context, receiver string, ids []int64, at time.Time) error {
	return o.update(ctx, "delivered", "status = 'delivered', delivered_at = $3, attempts = attempts + 1, last_error = NULL", receiver, ids, at)
}

// Retry records a failed attempt and when to try again.
func (o *Outbox) Retry(ctx context.Context, receiver string, ids []int64, attempts int, next time.Time, reason string) error {
	return o.update(ctx, "for retry", "attempts = $3, next_attempt_at = $4, last_error = $5", receiver, ids, attempts, next, reason)
}

// Rejected records a permanent failure.
func (o *Outbox) Rejected(ctx context.Context, receiver string, ids []int64, reason string) error {
	return o.update(ctx, "rejected", "status = 'rejected', attempts = attempts + 1, last_error = $3", receiver, ids, reason)
}
