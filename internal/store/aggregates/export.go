package aggregates

import (
	"context"
	"fmt"
	"io"
	"time"
)

// ExportHeader is the CSV header of ExportMinutes.
const ExportHeader = "merchant_id,minute,approvals,approved_amount,cancels,canceled_amount"

// ExportMinutes writes the stored minute aggregates with from <= minute < to
// as CSV (ExportHeader, minute in RFC 3339 UTC), sorted by merchant then
// minute, for reconciling with the source.
func (s *Store) ExportMinutes(ctx context.Context, from, to time.Time, w io.Writer) (int64, error) {
	// COPY takes no parameters; the bounds are formatted here from
	// time.Time values, never from user text.
	q := fmt.Sprintf(`COPY (
		SELECT merchant_id, to_char(minute AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS minute,
		       approvals, approved_amount, cancels, canceled_amount
		FROM %s
		WHERE minute >= %s AND minute < %s AND (approvals > 0 OR cancels > 0)
		ORDER BY merchant_id, minute
	) TO STDOUT WITH (FORMAT csv, HEADER true)`, s.db.Table("minute_agg"), sqlTime(from), sqlTime(to))
	conn, err := s.db.Pool().Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("acquiring sink connection: %w", err)
	}
	defer conn.Release()
	tag, err := conn.Conn().PgConn().CopyTo(ctx, w, q)
	if err != nil {
		return 0, fmt.Errorf("exporting minutes: %w", err)
	}
	return tag.RowsAffected(), nil
}

func sqlTime(t time.Time) string {
	return "'" + t.UTC().Format("2006-01-02 15:04:05.999999") + "+00'::timestamptz"
}
