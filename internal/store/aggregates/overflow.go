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

// applyChecked runs apply, which writes deltas in one transaction, and
// when a sum would pass int64 runs it again with the deltas checked against
// the stored sums under lock: a delta that would take its merchant's minute,
// hour or day or the platform's minute past int64 is not written but
// becomes a dead letter (at pos and commit). It takes some 9.2 million rows
// at max_amount in one bucket, so the check costs nothing until then. It
// returns the deltas written and the dead letters it added.
func (s *Store) applyChecked(ctx context.Context, deltas []window.Delta, pos string, commit time.Time,
	apply func(ctx context.Context, tx pgx.Tx, deltas []window.Delta, dead []event.DeadLetter) error) ([]window.Delta, []event.DeadLetter, error) {
	err := s.db.Tx(ctx, func(tx pgx.Tx) error { return apply(ctx, tx, deltas, nil) })
	if !overflowed(err) {
		return deltas, nil, err
	}
	var kept []window.Delta
	var dead []event.DeadLetter
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		var over []overflow
		var err error
		if kept, over, err = s.fitDeltas(ctx, tx, deltas); err != nil {
			return err
		}
		dead = dead[:0]
		for _, o := range over {
			dead = append(dead, o.deadLetter(pos, commit))
		}
		return apply(ctx, tx, kept, dead)
	})
	if err != nil {
		return deltas, nil, err
	}
	return kept, dead, nil
}

// overflow is a delta left out because the sum of bucket would not fit.
type overflow struct {
	window.Delta
	bucket string
}

func (o overflow) deadLetter(pos string, commit time.Time) event.DeadLetter {
	kind := event.Approval
	if o.Approvals == 0 {
		kind = event.Cancel
	}
	return event.DeadLetter{
		Kind: kind, Reason: event.ReasonAmountOutOfRange,
		Detail: fmt.Sprintf("merchant %d minute %s: %d approvals (%d KRW) and %d cancels (%d KRW) are not counted: the %s's stored sums would pass what the sink can hold",
			o.Merchant, o.Minute, o.Approvals, o.ApprovedAmount, o.Cancels, o.CanceledAmount, o.bucket),
		Row: map[string]any{"merchant_id": o.Merchant, "minute": o.Minute.Start(), "approvals": o.Approvals, "approved_amount": o.ApprovedAmount,
			"cancels": o.Cancels, "canceled_amount": o.CanceledAmount},
		Position: pos, CommitTime: commit,
	}
}

// fitDeltas locks and reads the stored sums the deltas add to and keeps,
// in order, the deltas every one of whose sums still fits.
func (s *Store) fitDeltas(ctx context.Context, tx pgx.Tx, deltas []window.Delta) ([]window.Delta, []overflow, error) {
	type bucketKey struct {
		merchant int64
		at       int64
	}
	minutes, hours, days := map[bucketKey]window.Agg{}, map[bucketKey]window.Agg{}, map[bucketKey]window.Agg{}
	platform := map[int64]window.Agg{}
	var mm, hm, dm []int64
	var mt, ht, dt, pt []time.Time
	for _, d := range deltas {
		h, day := s.cal.Hour(d.Minute), s.cal.Day(d.Minute)
		mm, mt = append(mm, d.Merchant), append(mt, d.Minute.Start())
		hm, ht = append(hm, d.Merchant), append(ht, h)
		dm, dt = append(dm, d.Merchant), append(dt, day)
		pt = append(pt, d.Minute.Start())
	}
	read := func(table, col, typ string, merchants []int64, at []time.Time, into map[bucketKey]window.Agg) error {
		rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT merchant_id, %[2]s, approvals, approved_amount, cancels, canceled_amount FROM %[1]s
			WHERE (merchant_id, %[2]s) IN (SELECT * FROM unnest($1::bigint[], $2::%[3]s[])) FOR UPDATE`, s.table(table), col, typ), merchants, at)
		if err != nil {
			return fmt.Errorf("reading stored %s sums: %w", table, err)
		}
		defer rows.Close()
		for rows.Next() {
			var k bucketKey
			var t time.Time
			var a window.Agg
			if err := rows.Scan(&k.merchant, &t, &a.Approvals, &a.ApprovedAmount, &a.Cancels, &a.CanceledAmount); err != nil {
				return fmt.Errorf("reading stored %s sums: %w", table, err)
			}
			k.at = t.Unix()
			into[k] = a
		}
		return rows.Err()
	}
	for _, r := range []struct {
		table, col, typ string
		merchants       []int64
		at              []time.Time
		into            map[bucketKey]window.Agg
	}{
		{"minute_agg", "minute", "timestamptz", mm, mt, minutes},
		{"hour_agg", "hour", "timestamptz", hm, ht, hours},
		{"day_agg", "day", "date", dm, dt, days},
	} {
		if err := read(r.table, r.col, r.typ, r.merchants, r.at, r.into); err != nil {
			return nil, nil, err
		}
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT minute, approvals, approved_amount, cancels, canceled_amount FROM %s
		WHERE minute = ANY($1) FOR UPDATE`, s.table("platform_minute")), pt)
	if err != nil {
		return nil, nil, fmt.Errorf("reading stored platform sums: %w", err)
	}
	for rows.Next() {
		var t time.Time
		var a window.Agg
		if err := rows.Scan(&t, &a.Approvals, &a.ApprovedAmount, &a.Cancels, &a.CanceledAmount); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("reading stored platform sums: %w", err)
		}
		platform[t.Unix()] = a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading stored platform sums: %w", err)
	}

	var kept []window.Delta
	var over []overflow
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
			over = append(over, overflow{d, bucket})
			continue
		}
		minutes[mk], hours[hk], days[dk], platform[pk] = m, h, dy, p
		kept = append(kept, d)
	}
	return kept, over, nil
}
