package store

import (
	"context"
	"time"
)

// DeleteBatches runs sql, a DELETE of at most $2 rows older than $1, until
// a run deletes fewer than batch rows, and returns the rows deleted. Small
// batches keep each statement's locks short when a sink has piled up months
// of rows; pruning is the only caller.
func (d *DB) DeleteBatches(ctx context.Context, sql string, before time.Time, batch int) (int64, error) {
	var total int64
	for {
		tag, err := d.Exec(ctx, sql, before, batch)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}
