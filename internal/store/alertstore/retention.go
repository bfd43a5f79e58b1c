package alertstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// pruneBatch bounds each pruning statement, so that none holds its locks
// (or the outbox's) for long on a sink that has piled up months of rows.
const pruneBatch = 5000

// PruneAlerts deletes resolved alerts resolved before before, with their
// evaluations, notifications and deliveries, and returns how many alerts
// went. Open alerts (acknowledged or not) are never touched, nor is an alert
// with a delivery still pending: a receiver that is down must not lose a
// notification to retention.
func (s *Store) PruneAlerts(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.db.Tx(ctx, func(tx pgx.Tx) error {
			// FOR UPDATE: an alert is never changed after it resolves, but
			// the lock makes that an invariant this code does not rely on.
			rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT a.id FROM %[1]s a
				WHERE a.state = 'resolved' AND a.resolved_at < $1
				AND NOT EXISTS (SELECT 1 FROM %[2]s n JOIN %[3]s d ON d.notification_id = n.id
					WHERE n.alert_id = a.id AND d.status = 'pending')
				ORDER BY a.id LIMIT $2 FOR UPDATE OF a SKIP LOCKED`,
				s.db.Table("alerts"), s.db.Table("notifications"), s.db.Table("deliveries")), before, pruneBatch)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil || len(ids) == 0 {
				return err
			}
			for _, q := range []string{
				fmt.Sprintf(`DELETE FROM %s WHERE notification_id IN (SELECT id FROM %s WHERE alert_id = ANY($1))`, s.db.Table("deliveries"), s.db.Table("notifications")),
				fmt.Sprintf(`DELETE FROM %s WHERE alert_id = ANY($1)`, s.db.Table("notifications")),
				fmt.Sprintf(`DELETE FROM %s WHERE alert_id = ANY($1)`, s.db.Table("alert_evaluations")),
			} {
				if _, err := tx.Exec(ctx, q, ids); err != nil {
					return err
				}
			}
			tag, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = ANY($1) AND state = 'resolved'`, s.db.Table("alerts")), ids)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("pruning alerts resolved before %s: %w", before.Format(time.RFC3339), err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

// PruneEvaluations deletes alert evaluations of minutes before before,
// whatever their alert's state: they are the record of each minute, and
// an open alert's own row keeps its current values.
func (s *Store) PruneEvaluations(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.deleteBatched(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM %[1]s WHERE minute < $1 LIMIT $2))`, s.db.Table("alert_evaluations")), before)
	if err != nil {
		return n, fmt.Errorf("pruning alert evaluations before %s: %w", before.Format(time.RFC3339), err)
	}
	return n, nil
}

// PruneDeliveries deletes the deliveries of notifications created before
// before that are delivered or rejected, then those notifications left
// with no delivery at all. A pending delivery is never deleted, however
// old: it is a notification a receiver has not had yet. It returns the
// deliveries and the notifications deleted.
func (s *Store) PruneDeliveries(ctx context.Context, before time.Time) (deliveries, notifications int64, err error) {
	deliveries, err = s.deleteBatched(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE ctid = ANY (ARRAY(
		SELECT d.ctid FROM %[1]s d JOIN %[2]s n ON n.id = d.notification_id
		WHERE n.created_at < $1 AND d.status IN ('delivered', 'rejected') LIMIT $2))`,
		s.db.Table("deliveries"), s.db.Table("notifications")), before)
	if err != nil {
		return deliveries, 0, fmt.Errorf("pruning deliveries of notifications before %s: %w", before.Format(time.RFC3339), err)
	}
	notifications, err = s.deleteBatched(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE id = ANY (ARRAY(
		SELECT n.id FROM %[1]s n WHERE n.created_at < $1
		AND NOT EXISTS (SELECT 1 FROM %[2]s d WHERE d.notification_id = n.id) LIMIT $2))`,
		s.db.Table("notifications"), s.db.Table("deliveries")), before)
	if err != nil {
		return deliveries, notifications, fmt.Errorf("pruning notifications before %s: %w", before.Format(time.RFC3339), err)
	}
	return deliveries, notifications, nil
}

// PruneAudit deletes operator actions recorded before before. They point
// to alerts and silences by id without a foreign key, so they outlive
// the alerts retention_alerts prunes, for as long as retention_audit says.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.deleteBatched(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE id = ANY (ARRAY(
		SELECT id FROM %[1]s WHERE at < $1 LIMIT $2))`, s.db.Table("operator_actions")), before)
	if err != nil {
		return n, fmt.Errorf("pruning operator actions before %s: %w", before.Format(time.RFC3339), err)
	}
	return n, nil
}

// deleteBatched runs a DELETE taking (before, limit) in batches.
func (s *Store) deleteBatched(ctx context.Context, sql string, before time.Time) (int64, error) {
	return s.db.DeleteBatches(ctx, sql, before, pruneBatch)
}
