// Package dashboard is the sink's read models for the dashboard and the
// API: platform and merchant series from the minutes and their rollups,
// and the merchant names copied from the source for search and labels.
package dashboard

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Store reads the dashboard's series and names.
type Store struct{ db *store.DB }

// New returns the read models of the sink db.
func New(db *store.DB) *Store { return &Store{db: db} }

// Point is one bucket's totals.
type Point struct {
	At time.Time
	window.Agg
}

// Merchant is a directory entry.
type Merchant struct {
	ID   int64
	Name string
}

// points runs sql, which selects a bucket's time and its four sums, and
// returns the rows in order.
func (s *Store) points(ctx context.Context, what, sql string, args ...any) ([]Point, error) {
	rows, err := s.db.Pool().Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	out, err := pgx.AppendRows([]Point(nil), rows, pgx.RowToStructByPos[Point])
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return out, nil
}

// PlatformMinutes returns the stored platform totals with from <= minute <
// to, in order; minutes without any event are absent.
func (s *Store) PlatformMinutes(ctx context.Context, from, to window.Minute) ([]Point, error) {
	return s.points(ctx, "platform minutes", fmt.Sprintf(`SELECT minute, approvals, approved_amount, cancels, canceled_amount
		FROM %s WHERE minute >= $1 AND minute < $2 ORDER BY minute`, s.db.Table("platform_minute")), from.Start(), to.Start())
}

// MerchantMinutes returns one merchant's stored minutes in [from, to).
func (s *Store) MerchantMinutes(ctx context.Context, merchant int64, from, to window.Minute) ([]Point, error) {
	return s.points(ctx, fmt.Sprintf("merchant %d minutes", merchant), fmt.Sprintf(`SELECT minute, approvals, approved_amount, cancels, canceled_amount
		FROM %s WHERE merchant_id = $1 AND minute >= $2 AND minute < $3 ORDER BY minute`, s.db.Table("minute_agg")),
		merchant, from.Start(), to.Start())
}

// MerchantHours returns one merchant's hourly rollup in [from, to).
func (s *Store) MerchantHours(ctx context.Context, merchant int64, from, to time.Time) ([]Point, error) {
	return s.points(ctx, fmt.Sprintf("merchant %d hours", merchant), fmt.Sprintf(`SELECT hour, approvals, approved_amount, cancels, canceled_amount
		FROM %s WHERE merchant_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour`, s.db.Table("hour_agg")),
		merchant, from, to)
}

// MerchantDays returns one merchant's daily rollup for business days in
// [from, to) (dates; At is midnight UTC of the date, to be read as a date).
func (s *Store) MerchantDays(ctx context.Context, merchant int64, from, to time.Time) ([]Point, error) {
	return s.points(ctx, fmt.Sprintf("merchant %d days", merchant), fmt.Sprintf(`SELECT day::timestamp AT TIME ZONE 'UTC', approvals, approved_amount, cancels, canceled_amount
		FROM %s WHERE merchant_id = $1 AND day >= $2::date AND day < $3::date ORDER BY day`, s.db.Table("day_agg")),
		merchant, from.Format(time.DateOnly), to.Format(time.DateOnly))
}

// OldestMinute is the oldest stored platform minute (retention's real
// start), or false when nothing is stored.
func (s *Store) OldestMinute(ctx context.Context) (window.Minute, bool, error) {
	var t *time.Time
	if err := s.db.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT min(minute) FROM %s`, s.db.Table("platform_minute"))).Scan(&t); err != nil {
		return 0, false, fmt.Errorf("reading oldest minute: %w", err)
	}
	if t == nil {
		return 0, false, nil
	}
	return window.MinuteOf(*t), true, nil
}

// SearchMerchants finds merchants by exact id (first) or by a
// case-insensitive substring of the name.
func (s *Store) SearchMerchants(ctx context.Context, q string, id int64, limit int) ([]Merchant, error) {
	// strpos rather than LIKE: the operator's text is never a pattern.
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT id, name FROM (
			SELECT id, name, 0 AS rank FROM %[1]s WHERE id = $2
			UNION ALL
			SELECT id, name, 1 FROM %[1]s WHERE $1 <> '' AND strpos(lower(name), lower($1)) > 0 AND id <> $2
		) m ORDER BY rank, name, id LIMIT $3`, s.db.Table("merchants")), q, id, limit)
	if err != nil {
		return nil, fmt.Errorf("searching merchants: %w", err)
	}
	out, err := pgx.AppendRows([]Merchant(nil), rows, pgx.RowToStructByPos[Merchant])
	if err != nil {
		return nil, fmt.Errorf("searching merchants: %w", err)
	}
	return out, nil
}

// MerchantNames returns the known names of ids.
func (s *Store) MerchantNames(ctx context.Context, ids []int64) (map[int64]string, error) {
	if len(ids) == 0 {
		return map[int64]string{}, nil
	}
	return s.names(ctx, len(ids), fmt.Sprintf(`SELECT id, name FROM %s WHERE id = ANY($1)`, s.db.Table("merchants")), ids)
}

// AllMerchantNames returns every known name.
func (s *Store) AllMerchantNames(ctx context.Context) (map[int64]string, error) {
	return s.names(ctx, 0, fmt.Sprintf(`SELECT id, name FROM %s`, s.db.Table("merchants")))
}

// names runs sql, which selects (id, name), into a map sized for n.
func (s *Store) names(ctx context.Context, n int, sql string, args ...any) (map[int64]string, error) {
	out := make(map[int64]string, n)
	rows, err := s.db.Pool().Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reading merchant names: %w", err)
	}
	var id int64
	var name string
	if _, err := pgx.ForEachRow(rows, []any{&id, &name}, func() error {
		out[id] = name
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading merchant names: %w", err)
	}
	return out, nil
}

// UpsertMerchants writes directory entries that are new or renamed and
// returns how many rows changed.
func (s *Store) UpsertMerchants(ctx context.Context, ms []Merchant) (int64, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	ids := make([]int64, len(ms))
	names := make([]string, len(ms))
	for i, m := range ms {
		ids[i], names[i] = m.ID, m.Name
	}
	tag, err := s.db.Exec(ctx, fmt.Sprintf(`INSERT INTO %s AS t (id, name)
		SELECT * FROM unnest($1::bigint[], $2::text[])
		ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, synced_at = now() WHERE t.name IS DISTINCT FROM EXCLUDED.name`,
		s.db.Table("merchants")), ids, names)
	if err != nil {
		return 0, fmt.Errorf("writing %d merchant names: %w", len(ms), err)
	}
	return tag.RowsAffected(), nil
}
