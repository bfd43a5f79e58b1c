package aggregates

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/window"
)

// errSumOverflow: a batch's own hourly, daily or platform sums do not fit
// in int64.
var errSumOverflow = errors.New("a sum would pass int64")

// overflowed reports whether err says a sum would not fit: the batch's own
// (errSumOverflow) or the sink's (numeric_value_out_of_range when adding a
// delta to a stored row).
func overflowed(err error) bool {
	var pe *pgconn.PgError
	return errors.Is(err, errSumOverflow) || (errors.As(err, &pe) && pe.Code == "22003")
}

// applyChecked writes deltas (queue queues their statements) and the dead
// letters dead in one transaction, and when a sum would pass int64 writes
// them again with the deltas checked against the stored sums under lock: a
// delta that would take its merchant's minute, hour or day or the
// platform's minute past int64 is not written but becomes a dead letter
// (at pos and commit). It takes some 9.2 million rows at max_amount in one
// bucket, so the check costs nothing until then. It returns the deltas
// written and the dead letters it added.
func (s *Store) applyChecked(ctx context.Context, deltas []window.Delta, dead []event.DeadLetter, pos string, commit time.Time,
	queue func(qb *pgx.Batch, deltas []window.Delta) error) ([]window.Delta, []event.DeadLetter, error) {
	var then func(tx pgx.Tx) error
	if len(dead) > 0 {
		then = func(tx pgx.Tx) error { return s.insertDeadLetters(ctx, tx, "stream", dead) }
	}
	err := s.db.BatchTx(ctx, func(qb *pgx.Batch) error { return queue(qb, deltas) }, then)
	if !overflowed(err) {
		return deltas, nil, err
	}
	var kept []window.Delta
	var refused []event.DeadLetter
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		var err error
		if kept, refused, err = s.fitDeltas(ctx, tx, deltas, pos, commit); err != nil {
			return err
		}
		var qb pgx.Batch
		if err := queue(&qb, kept); err != nil {
			return err
		}
		if err := tx.SendBatch(ctx, &qb).Close(); err != nil {
			return err
		}
		return s.insertDeadLetters(ctx, tx, "stream", append(refused, dead...))
	})
	if err != nil {
		return deltas, nil, err
	}
	return kept, refused, nil
}

// overflowDeadLetter is the dead letter of a delta left out because the sum of
// bucket would not fit.
func overflowDeadLetter(d window.Delta, bucket, pos string, commit time.Time) event.DeadLetter {
	kind := event.Approval
	if d.Approvals == 0 {
		kind = event.Cancel
	}
	return event.DeadLetter{
		Kind: kind, Reason: event.ReasonAmountOutOfRange,
		Detail: fmt.Sprintf("merchant %d minute %s: %d approvals (%d KRW) and %d cancels (%d KRW) are not counted: the %s's stored sums would pass what the sink can hold",
			d.Merchant, d.Minute, d.Approvals, d.ApprovedAmount, d.Cancels, d.CanceledAmount, bucket),
		Row: map[string]any{"merchant_id": d.Merchant, "minute": d.Minute.Start(), "approvals": d.Approvals, "approved_amount": d.ApprovedAmount,
			"cancels": d.Cancels, "canceled_amount": d.CanceledAmount},
		Position: pos, CommitTime: commit,
	}
}

// fitDeltas locks and reads the stored sums the deltas add to and keeps,
// in order, the deltas every one of whose sums still fits; the others are
// dead letters at pos and commit.
func (s *Store) fitDeltas(ctx context.Context, tx pgx.Tx, deltas []window.Delta, pos string, commit time.Time) ([]window.Delta, []event.DeadLetter, error) {
	minutes, hours, days := map[bucketKey]window.Agg{}, map[bucketKey]window.Agg{}, map[bucketKey]window.Agg{}
	platform := map[int64]window.Agg{}
	merchants := make([]int64, len(deltas))
	var mt, ht, dt []time.Time
	for i, d := range deltas {
		merchants[i] = d.Merchant
		mt, ht, dt = append(mt, d.Minute.Start()), append(ht, s.cal.Hour(d.Minute)), append(dt, s.cal.Day(d.Minute))
	}
	var k bucketKey
	var t time.Time
	var a window.Agg
	for _, r := range []struct {
		table, col, typ string
		at              []time.Time
		into            map[bucketKey]window.Agg
	}{
		{"minute_agg", "minute", "timestamptz", mt, minutes},
		{"hour_agg", "hour", "timestamptz", ht, hours},
		{"day_agg", "day", "date", dt, days},
	} {
		rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT merchant_id, %[2]s, approvals, approved_amount, cancels, canceled_amount FROM %[1]s
			WHERE (merchant_id, %[2]s) IN (SELECT * FROM unnest($1::bigint[], $2::%[3]s[])) FOR UPDATE`, s.db.Table(r.table), r.col, r.typ), merchants, r.at)
		if err == nil {
			_, err = pgx.ForEachRow(rows, []any{&k.merchant, &t, &a.Approvals, &a.ApprovedAmount, &a.Cancels, &a.CanceledAmount}, func() error {
				k.bucket = t.Unix()
				r.into[k] = a
				return nil
			})
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading stored %s sums: %w", r.table, err)
		}
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT minute, approvals, approved_amount, cancels, canceled_amount FROM %s
		WHERE minute = ANY($1) FOR UPDATE`, s.db.Table("platform_minute")), mt)
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&t, &a.Approvals, &a.ApprovedAmount, &a.Cancels, &a.CanceledAmount}, func() error {
			platform[t.Unix()] = a
			return nil
		})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading stored platform sums: %w", err)
	}

	var kept []window.Delta
	var dead []event.DeadLetter
	for _, d := range deltas {
		mk := bucketKey{d.Merchant, d.Minute.Start().Unix()}
		hk := bucketKey{d.Merchant, s.cal.Hour(d.Minute).Unix()}
		dk := bucketKey{d.Merchant, s.cal.Day(d.Minute).Unix()}
		pk := d.Minute.Start().Unix()
		m, h, dy, p := minutes[mk], hours[hk], days[dk], platform[pk]
		bucket := ""
		switch {
		// The minute table counts in integer columns.
		case !m.Add(d.Agg) || m.Approvals > math.MaxInt32 || m.Cancels > math.MaxInt32:
			bucket = "minute"
		case !h.Add(d.Agg):
			bucket = "hour"
		case !dy.Add(d.Agg):
			bucket = "day"
		case !p.Add(d.Agg):
			bucket = "platform minute"
		}
		if bucket != "" {
			dead = append(dead, overflowDeadLetter(d, bucket, pos, commit))
			continue
		}
		minutes[mk], hours[hk], days[dk], platform[pk] = m, h, dy, p
		kept = append(kept, d)
	}
	return kept, dead, nil
}
