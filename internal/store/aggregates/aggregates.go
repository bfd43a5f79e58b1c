// Package aggregates is the sink's part that makes the minute aggregates
// exactly once: the per-merchant minutes with their hourly, daily and
// platform rollups, the dead letters, and the position of the input they
// were applied up to, all written in one transaction; the first snapshot's
// load, pruning, export, and the reads the rules restore their state from.
package aggregates

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Store reads and writes the aggregates.
type Store struct {
	db  *store.DB
	cal window.Calendar
}

// New returns the aggregates of the sink db.
func New(db *store.DB) *Store { return &Store{db: db, cal: db.Calendar()} }

// Position is where the input stands after a batch: a single node's
// checkpoint, or a Kafka worker's partition offsets. It is written by the
// transaction that applies what it covers, and refuses it when another
// writer has taken over since (an epoch moved on).
type Position interface {
	// Queue adds the statements that record the position.
	Queue(qb *pgx.Batch, db *store.DB)
	// String is the position as logs, dead letters and a stuck pipeline
	// show it.
	String() string
}

// Batch is what one sink transaction applies.
type Batch struct {
	Deltas      []window.Delta
	DeadLetters []event.DeadLetter
	Position    Position
	// At is the source commit time the batch reaches.
	At time.Time
	// Evaluated is the newest minute whose rules ran before this batch:
	// deltas of it or older change windows a resumable rules image may
	// already hold, and are logged for it (late_deltas).
	Evaluated window.Minute
	// Seq is set by Apply: the flush's number, which orders it against
	// the rules image (SaveRulesResume).
	Seq int64
	// Refused is set by Apply: deltas it left out of Deltas because a sum
	// would pass int64, as dead letters (also written).
	Refused []event.DeadLetter
}

// Apply adds the deltas to the minute, hour and day aggregates and the
// platform's minutes, records the dead letters and writes the position, all
// in one transaction: after a crash either all of it is there or none, and
// the input resumes after the stored position. A position refused (another
// writer took over) refuses the whole batch.
func (s *Store) Apply(ctx context.Context, b *Batch) error {
	kept, refused, err := s.applyChecked(ctx, b.Deltas, b.DeadLetters, b.Position.String(), b.At, func(qb *pgx.Batch, deltas []window.Delta) error {
		qb.Queue(fmt.Sprintf(`SELECT nextval('%s')`, s.db.Table("flush_seq"))).QueryRow(func(r pgx.Row) error { return r.Scan(&b.Seq) })
		if err := s.queueDeltas(qb, deltas); err != nil {
			return err
		}
		s.queueLate(qb, deltas, b.Evaluated)
		b.Position.Queue(qb, s.db)
		return nil
	})
	if err != nil {
		return fmt.Errorf("applying %d deltas: %w", len(b.Deltas), err)
	}
	b.Deltas, b.Refused = kept, refused
	return nil
}

type rollupKey struct {
	merchant int64
	at       time.Time
}

// queueDeltas queues the four upserts. Each statement needs unique keys
// (ON CONFLICT cannot touch a row twice), so hours, days and the platform's
// minutes are summed here; errSumOverflow when such a sum would pass int64.
func (s *Store) queueDeltas(qb *pgx.Batch, deltas []window.Delta) error {
	if len(deltas) == 0 {
		return nil
	}
	minuteCal := make(map[window.Minute][2]time.Time)
	bucket := func(m window.Minute, i int) time.Time {
		hd, ok := minuteCal[m]
		if !ok {
			hd = [2]time.Time{s.cal.Hour(m), s.cal.Day(m)}
			minuteCal[m] = hd
		}
		return hd[i]
	}
	hours, hourOrder, hoursFit := sumBy(deltas, func(d window.Delta) rollupKey { return rollupKey{d.Merchant, bucket(d.Minute, 0)} })
	days, dayOrder, daysFit := sumBy(deltas, func(d window.Delta) rollupKey { return rollupKey{d.Merchant, bucket(d.Minute, 1)} })
	platform, minutes, platformFits := sumBy(deltas, func(d window.Delta) window.Minute { return d.Minute })
	if !hoursFit || !daysFit || !platformFits {
		return errSumOverflow
	}
	mcols := columns(len(deltas))
	for _, d := range deltas {
		mcols.add(d.Merchant, d.Minute.Start(), d.Agg)
	}
	qb.Queue(upsertSQL(s.db.Table("minute_agg"), "minute", "timestamptz"), mcols.args()...)
	rollup := func(table, col, typ string, order []rollupKey, sums map[rollupKey]window.Agg) {
		cols := columns(len(order))
		for _, k := range order {
			cols.add(k.merchant, k.at, sums[k])
		}
		qb.Queue(upsertSQL(s.db.Table(table), col, typ), cols.args()...)
	}
	rollup("hour_agg", "hour", "timestamptz", hourOrder, hours)
	rollup("day_agg", "day", "date", dayOrder, days)
	// Sorted keys make concurrent writers (none today) lock rows in one order.
	slices.Sort(minutes)
	cols := columns(len(minutes))
	for _, m := range minutes {
		cols.add(0, m.Start(), platform[m])
	}
	qb.Queue(fmt.Sprintf(`INSERT INTO %s AS t (minute, approvals, approved_amount, cancels, canceled_amount)
		SELECT * FROM unnest($1::timestamptz[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
		ON CONFLICT (minute) DO UPDATE SET approvals = t.approvals + EXCLUDED.approvals,
			approved_amount = t.approved_amount + EXCLUDED.approved_amount,
			cancels = t.cancels + EXCLUDED.cancels, canceled_amount = t.canceled_amount + EXCLUDED.canceled_amount`, s.db.Table("platform_minute")),
		cols.at, cols.approvals, cols.approvedAmounts, cols.cancels, cols.canceledAmounts)
	return nil
}

// sumBy sums the deltas by key, keys in the order first seen, and reports
// whether every sum fit in int64.
func sumBy[K comparable](deltas []window.Delta, key func(window.Delta) K) (map[K]window.Agg, []K, bool) {
	sums := make(map[K]window.Agg)
	var order []K
	for _, d := range deltas {
		k := key(d)
		a, seen := sums[k]
		if !seen {
			order = append(order, k)
		}
		if !a.Add(d.Agg) {
			return nil, nil, false
		}
		sums[k] = a
	}
	return sums, order, true
}

type aggColumns struct {
	merchants                  []int64
	at                         []time.Time
	approvals, approvedAmounts []int64
	cancels, canceledAmounts   []int64
}

func columns(n int) *aggColumns {
	return &aggColumns{
		merchants: make([]int64, 0, n), at: make([]time.Time, 0, n),
		approvals: make([]int64, 0, n), approvedAmounts: make([]int64, 0, n),
		cancels: make([]int64, 0, n), canceledAmounts: make([]int64, 0, n),
	}
}

func (c *aggColumns) add(merchant int64, at time.Time, a window.Agg) {
	c.merchants = append(c.merchants, merchant)
	c.at = append(c.at, at)
	c.approvals = append(c.approvals, a.Approvals)
	c.approvedAmounts = append(c.approvedAmounts, a.ApprovedAmount)
	c.cancels = append(c.cancels, a.Cancels)
	c.canceledAmounts = append(c.canceledAmounts, a.CanceledAmount)
}

func (c *aggColumns) args() []any {
	return []any{c.merchants, c.at, c.approvals, c.approvedAmounts, c.cancels, c.canceledAmounts}
}

func upsertSQL(table, timeCol, timeType string) string {
	return fmt.Sprintf(`INSERT INTO %[1]s AS t (merchant_id, %[2]s, approvals, approved_amount, cancels, canceled_amount)
		SELECT * FROM unnest($1::bigint[], $2::%[3]s[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
		ON CONFLICT (merchant_id, %[2]s) DO UPDATE SET
			approvals = t.approvals + EXCLUDED.approvals,
			approved_amount = t.approved_amount + EXCLUDED.approved_amount,
			cancels = t.cancels + EXCLUDED.cancels,
			canceled_amount = t.canceled_amount + EXCLUDED.canceled_amount`, table, timeCol, timeType)
}

func (s *Store) insertDeadLetters(ctx context.Context, tx pgx.Tx, origin string, dls []event.DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	rows := make([][]any, len(dls))
	for i, d := range dls {
		rows[i] = deadLetterRow(origin, d)
	}
	cols := []string{"origin", "source_table", "kind", "reason", "detail", "position", "commit_time", "row"}
	copyRows := func(tx pgx.Tx, rows [][]any) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{s.db.SchemaName(), "dead_letters"}, cols, pgx.CopyFromRows(rows))
		return err
	}
	// In a savepoint, so that a dead letter the sink still refuses cannot
	// fail the transaction: the aggregates and the position go on, and
	// that dead letter is recorded in reduced form instead.
	err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { return copyRows(sp, rows) })
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("writing %d dead letters: %w", len(dls), err)
	}
	for i, d := range dls {
		err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { return copyRows(sp, rows[i:i+1]) })
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return fmt.Errorf("writing dead letter: %w", err)
		default:
			if err := copyRows(tx, [][]any{deadLetterRow(origin, reduceDeadLetter(d, err))}); err != nil {
				return fmt.Errorf("writing a dead letter in reduced form: %w", err)
			}
		}
	}
	return nil
}

func deadLetterRow(origin string, d event.DeadLetter) []any {
	var pos *string
	var commit *time.Time
	if d.Position != "" {
		p := event.Printable(d.Position, 256)
		pos = &p
	}
	if !d.CommitTime.IsZero() {
		c := d.CommitTime
		commit = &c
	}
	return []any{origin, event.Printable(d.Table, 256), d.Kind.String(), string(d.Reason), event.Printable(d.Detail, event.MaxDetailBytes),
		pos, commit, string(event.RowBytes(d.Row))}
}

// reduceDeadLetter keeps what locates a dead letter the sink refused, in
// plain ASCII, and why it was refused.
func reduceDeadLetter(d event.DeadLetter, refused error) event.DeadLetter {
	ascii := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r < 0x20 || r > 0x7e {
				return '?'
			}
			return r
		}, s)
	}
	d.Table = ascii(d.Table)
	d.Detail = ascii(event.Printable(d.Detail, event.MaxDetailBytes))
	d.Row = map[string]any{"_reduced": ascii(event.Printable("the sink refused the full dead letter: "+refused.Error(), event.MaxDetailBytes))}
	return d
}

// rollupSQL sums the minutes into a rollup table; bucket is an expression of
// minute and the time zone $1.
func (s *Store) rollupSQL(table, bucket string) string {
	return fmt.Sprintf(`INSERT INTO %s SELECT merchant_id, %s, sum(approvals), sum(approved_amount), sum(cancels), sum(canceled_amount)
		FROM %s GROUP BY 1, 2`, s.db.Table(table), bucket, s.db.Table("minute_agg"))
}

// RebuildRollups recomputes the hourly and daily rollups from the minutes,
// for when the business time zone changed since they were built.
func (s *Store) RebuildRollups(ctx context.Context, slot string) error {
	tz := s.cal.Location().String()
	return s.db.Tx(ctx, func(tx pgx.Tx) error {
		steps := []struct {
			sql  string
			args []any
		}{
			{fmt.Sprintf("TRUNCATE %s, %s", s.db.Table("hour_agg"), s.db.Table("day_agg")), nil},
			{s.rollupSQL("hour_agg", "date_trunc('hour', minute, $1)"), []any{tz}},
			{s.rollupSQL("day_agg", "(minute AT TIME ZONE $1)::date"), []any{tz}},
			{fmt.Sprintf("UPDATE %s SET business_timezone = $1 WHERE slot = $2", s.db.Table("checkpoint")), []any{tz, slot}},
		}
		for _, st := range steps {
			if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
				return fmt.Errorf("rebuilding rollups: %w", err)
			}
		}
		return nil
	})
}

// PruneMinutes deletes minute aggregates older than before, in batches so
// that no single statement holds locks for long, and returns how many rows
// went. Hourly and daily rollups have retentions of their own
// (PruneRollups): the dashboard shows long ranges from them.
func (s *Store) PruneMinutes(ctx context.Context, before time.Time) (int64, error) {
	total, err := s.db.DeleteBatches(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM %[1]s WHERE minute < $1 LIMIT $2))`, s.db.Table("minute_agg")), before, 50000)
	if err != nil {
		return total, fmt.Errorf("pruning minutes before %s: %w", before.Format(time.RFC3339), err)
	}
	if _, err := s.db.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE minute < $1`, s.db.Table("platform_minute")), before); err != nil {
		return total, fmt.Errorf("pruning platform minutes before %s: %w", before.Format(time.RFC3339), err)
	}
	// Late deltas are deleted once a rules image covers them; a sink that
	// never stores one (Kafka workers) loses them with their minutes.
	if _, err := s.db.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE minute < $1`, s.db.Table("late_deltas")), before); err != nil {
		return total, fmt.Errorf("pruning late deltas before %s: %w", before.Format(time.RFC3339), err)
	}
	return total, nil
}

// PruneRollups deletes hourly rollups of hours starting before hoursBefore
// and daily rollups of business days before daysBefore (the date in the
// business time zone, as day_agg keys them), in batches, and returns how
// many rows went.
func (s *Store) PruneRollups(ctx context.Context, hoursBefore, daysBefore time.Time) (int64, error) {
	hours, err := s.db.DeleteBatches(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM %[1]s WHERE hour < $1 LIMIT $2))`, s.db.Table("hour_agg")), hoursBefore, 50000)
	if err != nil {
		return hours, fmt.Errorf("pruning hourly rollups before %s: %w", hoursBefore.Format(time.RFC3339), err)
	}
	day := time.Date(daysBefore.Year(), daysBefore.Month(), daysBefore.Day(), 0, 0, 0, 0, time.UTC)
	days, err := s.db.DeleteBatches(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM %[1]s WHERE day < $1::date LIMIT $2))`, s.db.Table("day_agg")), day, 50000)
	if err != nil {
		return hours + days, fmt.Errorf("pruning daily rollups before %s: %w", day.Format(time.DateOnly), err)
	}
	return hours + days, nil
}

// PruneDeadLetters deletes dead letters recorded before before, in batches,
// and returns how many went.
func (s *Store) PruneDeadLetters(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.db.DeleteBatches(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE id = ANY (ARRAY(
		SELECT id FROM %[1]s WHERE recorded_at < $1 LIMIT $2))`, s.db.Table("dead_letters")), before, 50000)
	if err != nil {
		return n, fmt.Errorf("pruning dead letters before %s: %w", before.Format(time.RFC3339), err)
	}
	return n, nil
}
