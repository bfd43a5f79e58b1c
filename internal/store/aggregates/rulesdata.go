package aggregates

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Minutes returns the stored minute aggregates with from <= minute < to,
// ordered by minute then merchant.
func (s *Store) Minutes(ctx context.Context, from, to window.Minute) ([]window.Delta, error) {
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT merchant_id, minute, approvals, approved_amount, cancels, canceled_amount
		FROM %s WHERE minute >= $1 AND minute < $2 ORDER BY minute, merchant_id`, s.db.Table("minute_agg")), from.Start(), to.Start())
	if err != nil {
		return nil, fmt.Errorf("reading minutes %s..%s: %w", from, to, err)
	}
	out, err := pgx.AppendRows([]window.Delta(nil), rows, func(r pgx.CollectableRow) (window.Delta, error) {
		var d window.Delta
		var minute time.Time
		err := r.Scan(&d.Merchant, &minute, &d.Approvals, &d.ApprovedAmount, &d.Cancels, &d.CanceledAmount)
		d.Minute = window.MinuteOf(minute)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading minutes %s..%s: %w", from, to, err)
	}
	return out, nil
}

// RulesSnapshot reads what the rules state needs to resume after
// lastClosed: the minutes of the last three hours (H last), the per-merchant
// sums of the 7 days before H with their hours of the day, the approved
// amounts of the exposure window (exposureMinutes ending with lastClosed;
// 0 for none), and (when withOpen) every stored minute after lastClosed,
// which is not closed yet. Window sums come from whole hours of the hourly
// rollup plus the minutes at the edges, so a restart reads a few hundred
// thousand rows rather than every minute of a week.
func (s *Store) RulesSnapshot(ctx context.Context, lastClosed window.Minute, withOpen bool, exposureMinutes int) (rules.Snapshot, error) {
	snap := rules.Snapshot{LastClosed: lastClosed, ExposureMinutes: exposureMinutes}
	hFrom := lastClosed - rules.HourMinutes + 1
	rFrom := lastClosed - rules.RecentMinutes + 1
	tz := s.cal.Location().String()
	var err error
	if withOpen {
		// Open minutes can only be as far ahead as max_future allows; a
		// year is beyond any of them and within PostgreSQL's range.
		snap.Recent, err = s.Minutes(ctx, rFrom, lastClosed+366*24*60)
	} else {
		snap.Recent, err = s.Minutes(ctx, rFrom, lastClosed+1)
	}
	if err != nil {
		return snap, err
	}
	rows, err := s.windowQuery(ctx, hFrom-rules.BaselineMinutes, hFrom,
		`merchant_id, extract(hour FROM {t} AT TIME ZONE $5)::int AS h, approvals AS a, cancels AS c`,
		`SELECT merchant_id, h, sum(a)::bigint, sum(c)::bigint FROM (%s) u GROUP BY 1, 2 HAVING sum(a) <> 0 OR sum(c) <> 0 ORDER BY 1, 2`, tz)
	if err != nil {
		return snap, fmt.Errorf("reading 7-day sums: %w", err)
	}
	var hs rules.HourOfDaySums
	_, err = pgx.ForEachRow(rows, []any{&hs.Merchant, &hs.Hour, &hs.Approvals, &hs.Cancels}, func() error {
		snap.HourOfDay = append(snap.HourOfDay, hs)
		if n := len(snap.Baseline); n > 0 && snap.Baseline[n-1].Merchant == hs.Merchant {
			snap.Baseline[n-1].Approvals += hs.Approvals
			snap.Baseline[n-1].Cancels += hs.Cancels
		} else {
			snap.Baseline = append(snap.Baseline, rules.MerchantSums{Merchant: hs.Merchant, Approvals: hs.Approvals, Cancels: hs.Cancels})
		}
		return nil
	})
	if err != nil {
		return snap, fmt.Errorf("reading 7-day sums: %w", err)
	}
	if exposureMinutes <= 0 {
		return snap, nil
	}
	rows, err = s.windowQuery(ctx, lastClosed-window.Minute(exposureMinutes)+1, lastClosed+1, `merchant_id, approved_amount AS a`,
		fmt.Sprintf(`SELECT merchant_id, least(sum(a), %d)::bigint FROM (%%s) u GROUP BY 1 HAVING sum(a) <> 0`, int64(math.MaxInt64)))
	if err != nil {
		return snap, fmt.Errorf("reading exposure: %w", err)
	}
	var ma rules.MerchantAmount
	if _, err := pgx.ForEachRow(rows, []any{&ma.Merchant, &ma.Amount}, func() error {
		snap.Exposure = append(snap.Exposure, ma)
		return nil
	}); err != nil {
		return snap, fmt.Errorf("reading exposure: %w", err)
	}
	return snap, nil
}

// windowQuery runs outer (a query with one %s) over the rows of the
// minutes [lo, hi): whole business hours from the hourly rollup, the
// minutes at the edges from minute_agg, each selecting cols ({t} stands for
// the row's time column). args are $5 on.
func (s *Store) windowQuery(ctx context.Context, lo, hi window.Minute, cols, outer string, args ...any) (pgx.Rows, error) {
	h1, h2 := s.wholeHours(lo, hi)
	union := fmt.Sprintf(`SELECT %[1]s FROM %[3]s WHERE hour >= $3 AND hour < $4
			-- Two range scans, not one OR, so both use the minute index.
			UNION ALL
			SELECT %[2]s FROM %[4]s WHERE minute >= $1 AND minute < least($3, $2)
			UNION ALL
			SELECT %[2]s FROM %[4]s WHERE minute >= greatest($4, $1) AND minute < $2`,
		strings.ReplaceAll(cols, "{t}", "hour"), strings.ReplaceAll(cols, "{t}", "minute"), s.db.Table("hour_agg"), s.db.Table("minute_agg"))
	return s.db.Pool().Query(ctx, fmt.Sprintf(outer, union), append([]any{lo.Start(), hi.Start(), h1, h2}, args...)...)
}

// wholeHours returns [h1, h2): the business-time-zone hours lying entirely
// within the minutes [lo, hi). When there is none, h1 >= h2 and the query
// above takes every minute from minute_agg.
func (s *Store) wholeHours(lo, hi window.Minute) (time.Time, time.Time) {
	h1 := s.cal.Hour(lo)
	if h1.Before(lo.Start()) {
		h1 = h1.Add(time.Hour)
	}
	h2 := s.cal.Hour(hi) // the hour holding hi starts at or before hi
	if !h2.After(h1) {
		return h1, h1
	}
	return h1, h2
}

// VolumeDay reads the large merchants of a business day and their curves
// over the 7 days before it, and what they approved from the day's start
// through lastClosed (non-zero after a restart mid-day).
func (s *Store) VolumeDay(ctx context.Context, day time.Time, largeDailyAmount int64, lastClosed window.Minute) (rules.VolumeDay, error) {
	loc := s.cal.Location()
	start := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, loc)
	weekStart := time.Date(day.Year(), day.Month(), day.Day()-7, 0, 0, 0, 0, loc)
	v := rules.VolumeDay{Day: day, Curves: map[int64]*rules.Curve{}, Today: map[int64]int64{}}
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT merchant_id, least(sum(approved_amount), %d)::bigint FROM %s
		WHERE day >= $1::date - 7 AND day < $1::date GROUP BY 1 HAVING sum(approved_amount) >= 7 * $2::numeric`, int64(math.MaxInt64), s.db.Table("day_agg")),
		day.Format(time.DateOnly), largeDailyAmount)
	if err != nil {
		return v, fmt.Errorf("reading large merchants: %w", err)
	}
	var large []int64
	var m, amt int64
	if _, err := pgx.ForEachRow(rows, []any{&m, &amt}, func() error {
		v.Curves[m] = &rules.Curve{Sum7: amt}
		large = append(large, m)
		return nil
	}); err != nil {
		return v, fmt.Errorf("reading large merchants: %w", err)
	}
	if len(large) == 0 {
		return v, nil
	}
	tz := loc.String()
	rows, err = s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT merchant_id,
			(extract(hour FROM minute AT TIME ZONE $4) * 60 + extract(minute FROM minute AT TIME ZONE $4))::int,
			least(sum(approved_amount), %d)::bigint
		FROM %s WHERE merchant_id = ANY($1) AND minute >= $2 AND minute < $3 GROUP BY 1, 2`, int64(math.MaxInt64), s.db.Table("minute_agg")),
		large, weekStart, start, tz)
	if err != nil {
		return v, fmt.Errorf("reading same-time curves: %w", err)
	}
	var mod int
	if _, err := pgx.ForEachRow(rows, []any{&m, &mod, &amt}, func() error {
		if mod >= 0 && mod < len(v.Curves[m].PerMinute7) {
			v.Curves[m].PerMinute7[mod], _ = window.SatAdd(v.Curves[m].PerMinute7[mod], amt)
		}
		return nil
	}); err != nil {
		return v, fmt.Errorf("reading same-time curves: %w", err)
	}
	rows, err = s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT merchant_id, ((minute AT TIME ZONE $4)::date - $5::date)::int,
			(extract(hour FROM minute AT TIME ZONE $4) * 60 + extract(minute FROM minute AT TIME ZONE $4))::int / 15,
			least(sum(approved_amount), %d)::bigint
		FROM %s WHERE merchant_id = ANY($1) AND minute >= $2 AND minute < $3 GROUP BY 1, 2, 3`, int64(math.MaxInt64), s.db.Table("minute_agg")),
		large, weekStart, start, tz, day.AddDate(0, 0, -7).Format(time.DateOnly))
	if err != nil {
		return v, fmt.Errorf("reading each day's curve: %w", err)
	}
	var k, q int
	if _, err := pgx.ForEachRow(rows, []any{&m, &k, &q, &amt}, func() error {
		if k >= 0 && k < 7 && q >= 0 && q < rules.QuartersPerDay {
			v.Curves[m].PerDay[k][q], _ = window.SatAdd(v.Curves[m].PerDay[k][q], amt)
		}
		return nil
	}); err != nil {
		return v, fmt.Errorf("reading each day's curve: %w", err)
	}
	if lastClosed.End().After(start) {
		rows, err = s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT merchant_id, least(sum(approved_amount), %d)::bigint FROM %s
			WHERE merchant_id = ANY($1) AND minute >= $2 AND minute <= $3 GROUP BY 1`, int64(math.MaxInt64), s.db.Table("minute_agg")),
			large, start, lastClosed.Start())
		if err != nil {
			return v, fmt.Errorf("reading today's amounts: %w", err)
		}
		if _, err := pgx.ForEachRow(rows, []any{&m, &amt}, func() error {
			v.Today[m] = amt
			return nil
		}); err != nil {
			return v, fmt.Errorf("reading today's amounts: %w", err)
		}
	}
	return v, nil
}

// PlatformSums returns all merchants' approvals and cancels over the minutes
// [from, to), from the platform totals every writer adds to.
func (s *Store) PlatformSums(ctx context.Context, from, to window.Minute) (approvals, cancels int64, err error) {
	err = s.db.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(sum(approvals), 0)::bigint, coalesce(sum(cancels), 0)::bigint FROM %s
		WHERE minute >= $1 AND minute < $2`, s.db.Table("platform_minute")), from.Start(), to.Start()).Scan(&approvals, &cancels)
	if err != nil {
		return 0, 0, fmt.Errorf("reading platform sums %s..%s: %w", from, to, err)
	}
	return approvals, cancels, nil
}
