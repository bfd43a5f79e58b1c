package source

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/bootstrap"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Snapshot is the source as of the slot's consistent point: everything
// committed before it is visible here, everything after arrives through the
// stream from LSN. The two neither overlap nor leave a gap.
type Snapshot struct {
	// LSN is the slot's consistent point, where streaming starts.
	LSN LSN
	// at is the source's clock just before the slot was created; every
	// transaction committed before it is in the snapshot. It stands in for
	// the commit time when validating snapshot rows.
	at      time.Time
	tx      pgx.Tx
	mapping *event.Mapping
	indexed bool
	// numeric holds "table.column" of mapped merchant and amount columns
	// of type numeric, which need the integral and range checks that
	// integer columns pass by their type.
	numeric map[string]bool
	name    string // the exported snapshot, for forks
	src     *Source
	// fork is a second connection on the snapshot, for two chunks at once.
	fork *Snapshot
}

// Chunk is a range of transaction time [From, To) aggregated in one query.
type Chunk = bootstrap.Chunk

// Position is the consistent point, where the stream starts.
func (snap *Snapshot) Position() string { return snap.LSN.String() }

// Time is the source's clock at the snapshot.
func (snap *Snapshot) Time() time.Time { return snap.at }

// Width is two chunks at once, each on its own connection to the snapshot,
// when the range is split.
func (snap *Snapshot) Width() int {
	if snap.indexed {
		return 2
	}
	return 1
}

// Aggregate aggregates chunks side by side (opening the second connection
// at the first call that needs it) into w.
func (snap *Snapshot) Aggregate(ctx context.Context, chunks []Chunk, w bootstrap.MinuteWriter, done func()) error {
	snaps := []*Snapshot{snap}
	if len(chunks) > 1 {
		if snap.fork == nil {
			fork, err := snap.openFork(ctx)
			if err != nil {
				return err
			}
			snap.fork = fork
		}
		snaps = append(snaps, snap.fork)
	}
	return copyChunks(ctx, snaps, chunks, w, done)
}

// Resumable reports whether the slot exists: a stream can resume from a
// checkpoint only through it.
func (s *Source) Resumable(ctx context.Context, _ string) (bool, error) {
	slot, err := s.Slot(ctx)
	if err != nil || slot == nil {
		return false, err
	}
	if slot.WALStatus == "lost" {
		// The server removed WAL the slot still needed: the changes since
		// the checkpoint are in no stream any more, but they are in the
		// tables, so a new snapshot rebuilds the sink as it would after a
		// dropped slot. The slot is in the way of that one and useless.
		s.log.Warn("replication slot was invalidated by the source server (its retained WAL exceeded max_slot_wal_keep_size while riskwatch was down or behind); dropping it to rebuild the sink from a new snapshot. "+
			"Raise max_slot_wal_keep_size (or unset it) to cover the longest outage you expect", "slot", s.opts.Slot, "restart_lsn", slot.RestartLSN.String())
		if err := s.DropSlot(ctx); err != nil {
			return false, fmt.Errorf("dropping invalidated slot: %w", err)
		}
		return false, nil
	}
	return true, nil
}

// Abandon drops a slot the sink never reached.
func (s *Source) Abandon(ctx context.Context) error { return s.DropSlot(ctx) }

// Snapshot is CreateSlotWithSnapshot for the first start.
func (s *Source) Snapshot(ctx context.Context, load func(ctx context.Context, snap bootstrap.Snapshot) error) error {
	return s.CreateSlotWithSnapshot(ctx, func(ctx context.Context, snap *Snapshot) error { return load(ctx, snap) })
}

// CreateSlotWithSnapshot creates the replication slot with an exported
// snapshot, opens a transaction on that snapshot and calls fill with it. If
// fill fails, the slot is dropped again so that the next start retries from
// a clean state instead of streaming from a point the sink never reached.
func (s *Source) CreateSlotWithSnapshot(ctx context.Context, fill func(ctx context.Context, snap *Snapshot) error) (err error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var t0 time.Time
	if err := conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&t0); err != nil {
		return fmt.Errorf("reading source clock: %w", err)
	}

	repl, err := s.connectReplication(ctx)
	if err != nil {
		return err
	}
	defer repl.Close(context.WithoutCancel(ctx))
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, s.opts.Slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Mode:           pglogrepl.LogicalReplication,
		SnapshotAction: "EXPORT_SNAPSHOT",
	})
	if err != nil {
		return fmt.Errorf("creating replication slot %s: %w", s.opts.Slot, err)
	}
	defer func() {
		if err != nil {
			repl.Close(context.WithoutCancel(ctx))
			if derr := s.DropSlot(context.WithoutCancel(ctx)); derr != nil {
				s.log.Error("dropping slot after failed snapshot", "err", derr)
			}
		}
	}()
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return fmt.Errorf("parsing consistent point %q: %w", res.ConsistentPoint, err)
	}
	s.log.Info("created replication slot", "slot", s.opts.Slot, "consistent_point", res.ConsistentPoint, "snapshot", res.SnapshotName)

	tx, err := importSnapshot(ctx, conn, res.SnapshotName)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	snap := &Snapshot{LSN: lsn, at: t0.UTC(), tx: tx, mapping: s.opts.Mapping, name: res.SnapshotName, src: s}
	defer snap.closeFork(ctx)
	if snap.indexed, err = snap.timeIndexed(ctx); err != nil {
		return err
	}
	if snap.numeric, err = snap.numericColumns(ctx); err != nil {
		return err
	}
	if err := fill(ctx, snap); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// importSnapshot opens a read-only transaction on conn that sees exactly the
// exported snapshot.
func importSnapshot(ctx context.Context, conn *pgx.Conn, name string) (pgx.Tx, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("opening snapshot transaction: %w", err)
	}
	// The snapshot name comes from the server; it is still quoted.
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(name)); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("importing snapshot %s: %w", name, err)
	}
	// Timestamps without time zone are taken as UTC, as in the stream; COPY
	// cannot take parameters, so literals rely on standard strings. The
	// chunks run side by side on their own connections instead of with
	// parallel workers: on two cores shared with the sink, a chunk's
	// workers only fought the sink for them (measured: 26 s against 32 s
	// for the first snapshot at full scale).
	if _, err := tx.Exec(ctx, "SET LOCAL TimeZone = 'UTC'; SET LOCAL standard_conforming_strings = on; SET LOCAL max_parallel_workers_per_gather = 0"); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("configuring snapshot transaction: %w", err)
	}
	return tx, nil
}

// openFork opens another connection on the same snapshot, so that chunks
// can be aggregated side by side. It is only valid inside
// CreateSlotWithSnapshot's fill, while the exported snapshot exists.
func (snap *Snapshot) openFork(ctx context.Context) (*Snapshot, error) {
	conn, err := snap.src.connect(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := importSnapshot(ctx, conn, snap.name)
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	f := *snap
	f.tx, f.fork = tx, nil
	return &f, nil
}

func (snap *Snapshot) closeFork(ctx context.Context) {
	if snap.fork != nil {
		snap.fork.tx.Rollback(context.WithoutCancel(ctx))
		snap.fork.tx.Conn().Close(context.WithoutCancel(ctx))
		snap.fork = nil
	}
}

// copyChunks aggregates chunks on the snapshots side by side, one chunk per
// snapshot at a time, and writes their rows to w whole and never
// interleaved, so w sees one valid COPY stream. done is called as each
// chunk finishes.
func copyChunks(ctx context.Context, snaps []*Snapshot, chunks []Chunk, w io.Writer, done func()) error {
	var mu sync.Mutex
	next := make(chan Chunk)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(next)
		for _, c := range chunks {
			select {
			case next <- c:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for _, snap := range snaps {
		g.Go(func() error {
			lw := &lineWriter{mu: &mu, w: w}
			for c := range next {
				_, err := snap.CopyMinutes(gctx, c, lw)
				if err == nil {
					err = lw.flush(true)
				}
				if err != nil {
					return err
				}
				done()
			}
			return nil
		})
	}
	return g.Wait()
}

// lineWriter buffers one producer's rows and hands them to the shared writer
// in blocks that end at a row's end.
type lineWriter struct {
	mu  *sync.Mutex
	w   io.Writer
	buf []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	if len(l.buf) >= 128<<10 {
		if err := l.flush(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flush writes the complete rows buffered; all of them when last, which is
// only right once the producer is done.
func (l *lineWriter) flush(last bool) error {
	end := len(l.buf)
	if !last {
		end = bytes.LastIndexByte(l.buf, '\n') + 1
	}
	if end == 0 {
		return nil
	}
	l.mu.Lock()
	_, err := l.w.Write(l.buf[:end])
	l.mu.Unlock()
	l.buf = append(l.buf[:0], l.buf[end:]...)
	return err
}

// Days splits the snapshot's valid time range into business days of loc
// when every mapped table has an index leading with its time column, so that
// progress and ETA can be shown and each chunk holds whole hours and days of
// the rollups; without such an index each chunk would rescan the table, so
// the whole range is one query.
func (snap *Snapshot) Days(loc *time.Location) []Chunk {
	from := snap.at.Add(-snap.mapping.Limits().Retention)
	to := snap.chunkEnd()
	if !snap.indexed {
		return []Chunk{{From: from, To: to}}
	}
	var out []Chunk
	for a := from; a.Before(to); {
		l := a.In(loc)
		b := time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, loc).UTC()
		if b.After(to) {
			b = to
		}
		out = append(out, Chunk{From: a, To: b})
		a = b
	}
	return out
}

// chunkEnd bounds the times aggregated: after it (more than max_future
// after the snapshot, so after any commit in it) a row is not an event.
func (snap *Snapshot) chunkEnd() time.Time {
	return snap.at.Add(snap.mapping.Limits().MaxFuture).Add(time.Microsecond)
}

func (snap *Snapshot) timeIndexed(ctx context.Context) (bool, error) {
	for _, sp := range snap.mapping.Specs() {
		var ok bool
		err := snap.tx.QueryRow(ctx, `
			SELECT EXISTS (
				SELECT 1 FROM pg_index i
				JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
				WHERE i.indrelid = to_regclass($1) AND a.attname = $2)`,
			tableIdent(sp.Schema, sp.Table), sp.Time).Scan(&ok)
		if err != nil {
			return false, fmt.Errorf("looking for an index on %s.%s: %w", sp.QualifiedTable(), sp.Time, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// numericColumns finds which mapped merchant and amount columns are numeric.
func (snap *Snapshot) numericColumns(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	for _, sp := range snap.mapping.Specs() {
		for _, c := range []string{sp.Merchant, sp.Amount} {
			var numeric bool
			err := snap.tx.QueryRow(ctx, `SELECT coalesce((SELECT atttypid = 'numeric'::regtype FROM pg_attribute
				WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped), false)`, tableIdent(sp.Schema, sp.Table), c).Scan(&numeric)
			if err != nil {
				return nil, fmt.Errorf("reading the type of %s.%s: %w", sp.QualifiedTable(), c, err)
			}
			out[sp.QualifiedTable()+"."+c] = numeric
		}
	}
	return out, nil
}

// valid is SQL for "this row of the spec is an event", exactly as the
// stream's mapping (event.Table) decides it, the snapshot time standing in
// for the commit time; the time range is the caller's. A row it leaves out
// goes through the mapping itself (Leftovers), so any disagreement costs
// time, never a row.
func (snap *Snapshot) valid(alias string, sp event.Spec) string {
	lim := snap.mapping.Limits()
	m, a, t := col(alias, sp.Merchant), col(alias, sp.Amount), col(alias, sp.Time)
	parts := []string{
		m + " IS NOT NULL", m + " > 0",
		a + " IS NOT NULL", a + " >= 0", fmt.Sprintf("%s <= %d", a, lim.MaxAmount),
		t + " IS NOT NULL", "isfinite(" + t + ")",
	}
	if snap.numeric[sp.QualifiedTable()+"."+sp.Merchant] {
		// NaN and infinity fail the bound; NaN = NaN is true in SQL.
		parts = append(parts, m+" = trunc("+m+")", fmt.Sprintf("%s <= %d", m, int64(math.MaxInt64)))
	}
	if snap.numeric[sp.QualifiedTable()+"."+sp.Amount] {
		parts = append(parts, a+" = trunc("+a+")")
	}
	return "(" + strings.Join(parts, " AND ") + ")"
}

// CopyMinutes writes the per-merchant minute aggregates of the chunk to w in
// COPY text format, columns (merchant_id, minute, approvals,
// approved_amount, cancels, canceled_amount). The GROUP BY runs inside the
// source server, next to the data. Sums are not cast: a merchant-minute
// whose sums would not fit the sink is for the reader to leave out (and
// hand to Leftovers), never an error that stops the load.
func (snap *Snapshot) CopyMinutes(ctx context.Context, c Chunk, w io.Writer) (int64, error) {
	var parts []string
	for _, sp := range snap.mapping.Specs() {
		m, a, t := col("", sp.Merchant), col("", sp.Amount), timeCol("", sp.Time)
		counts := "1, " + a + "::bigint, 0, 0::bigint"
		if sp.Kind == event.Cancel {
			counts = "0, 0::bigint, 1, " + a + "::bigint"
		}
		parts = append(parts, fmt.Sprintf("SELECT %s::bigint, date_trunc('minute', %s), %s FROM ONLY %s WHERE %s", m, t, counts,
			tableIdent(sp.Schema, sp.Table), where("", sp, snap.valid("", sp), t+" >= "+quoteTime(c.From), t+" < "+quoteTime(c.To))))
	}
	q := fmt.Sprintf(`COPY (SELECT m, minute, sum(a), sum(aa), sum(c), sum(ca)
		FROM (%s) AS u(m, minute, a, aa, c, ca) GROUP BY 1, 2) TO STDOUT`, strings.Join(parts, " UNION ALL "))
	tag, err := snap.tx.Conn().PgConn().CopyTo(ctx, w, q)
	if err != nil {
		return 0, fmt.Errorf("aggregating snapshot %s..%s: %w", c.From.Format(time.RFC3339), c.To.Format(time.RFC3339), err)
	}
	return tag.RowsAffected(), nil
}

// Leftovers runs through the stream's own mapping every row the
// aggregation left out: rows in the retention that are not events by the
// SQL reading (NULL or infinite times always), and the rows of the
// merchant-minutes in overflow, whose sums did not fit. each receives
// their events and dead letters, a batch at a time, with the snapshot time
// standing in for the commit time: so the first start stores the same
// aggregates and dead letters as streaming the same rows would. Rows older
// than the retention are history, not events, and are left alone.
func (snap *Snapshot) Leftovers(ctx context.Context, overflow []window.Key, each func(*event.Output) error) error {
	lim := snap.mapping.Limits()
	oldest := quoteTime(snap.at.Add(-lim.Retention))
	end := quoteTime(snap.chunkEnd())
	merchants, minutes := make([]int64, len(overflow)), make([]time.Time, len(overflow))
	for i, k := range overflow {
		merchants[i], minutes[i] = k.Merchant, k.Minute.Start()
	}
	for _, sp := range snap.mapping.Specs() {
		t := col("x", sp.Time)
		if err := snap.mapRows(ctx, sp, nil, each,
			fmt.Sprintf("(%s AND %[2]s::timestamptz < %[4]s) IS NOT TRUE AND (%[2]s IS NULL OR NOT isfinite(%[2]s) OR %[2]s::timestamptz >= %[3]s)",
				snap.valid("x", sp), t, oldest, end)); err != nil {
			return err
		}
		if len(overflow) == 0 {
			continue
		}
		if err := snap.mapRows(ctx, sp, []any{merchants, minutes}, each, snap.valid("x", sp),
			fmt.Sprintf("(%s::bigint, date_trunc('minute', %s)) IN (SELECT * FROM unnest($1::bigint[], $2::timestamptz[]))",
				col("x", sp.Merchant), timeCol("x", sp.Time))); err != nil {
			return err
		}
	}
	return nil
}

// mapRows reads the whole rows of sp's table (as x) that match conds and
// the spec's filter, in binary format as pgoutput sends them, and maps them
// as the stream does.
func (snap *Snapshot) mapRows(ctx context.Context, sp event.Spec, args []any, each func(*event.Output) error, conds ...string) error {
	query := fmt.Sprintf("SELECT x.* FROM ONLY %s AS x WHERE %s", tableIdent(sp.Schema, sp.Table), where("x", sp, conds...))
	rows, err := snap.tx.Query(ctx, query, append([]any{pgx.QueryResultFormats{pgx.BinaryFormatCode}}, args...)...)
	if err != nil {
		return fmt.Errorf("reading rows of %s the aggregation left out: %w", sp.QualifiedTable(), err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	cols := make([]event.Column, len(fields))
	for i, f := range fields {
		cols[i] = event.Column{Name: f.Name, TypeOID: f.DataTypeOID}
	}
	table, err := snap.mapping.Bind(sp.Schema, sp.Table, cols)
	if err != nil || table == nil {
		return fmt.Errorf("binding %s for the snapshot: %w", sp.QualifiedTable(), err)
	}
	commitUS := snap.at.UnixMicro()
	var out event.Output
	row := make([]event.Value, len(cols))
	for rows.Next() {
		for i, raw := range rows.RawValues() {
			if raw == nil {
				row[i] = event.Value{Format: 'n'}
			} else {
				row[i] = event.Value{Format: 'b', Data: raw}
			}
		}
		table.Map(row, commitUS, &out)
		if len(out.Events)+len(out.DeadLetters) >= 10000 {
			if err := each(&out); err != nil {
				return err
			}
			out.Reset()
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading rows of %s the aggregation left out: %w", sp.QualifiedTable(), err)
	}
	if len(out.Events)+len(out.DeadLetters) > 0 {
		return each(&out)
	}
	return nil
}

func col(alias, name string) string {
	if alias == "" {
		return ident(name)
	}
	return alias + "." + ident(name)
}

// timeCol reads a time column as timestamptz; timestamps without zone are UTC
// because the snapshot transaction runs with TimeZone UTC.
func timeCol(alias, name string) string { return "(" + col(alias, name) + ")::timestamptz" }

// where joins conds, and the spec's filter when it has one, with AND.
func where(alias string, sp event.Spec, conds ...string) string {
	if sp.FilterColumn != "" {
		vals := make([]string, len(sp.FilterIn))
		for i, v := range sp.FilterIn {
			vals[i] = quoteLiteral(v)
		}
		conds = append(conds, fmt.Sprintf("%s::text IN (%s)", col(alias, sp.FilterColumn), strings.Join(vals, ", ")))
	}
	return strings.Join(conds, " AND ")
}

// quoteLiteral quotes a string literal for a session with
// standard_conforming_strings on (set by the snapshot transaction). NUL
// cannot occur in a PostgreSQL text value and is dropped.
func quoteLiteral(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func quoteTime(t time.Time) string {
	return "'" + t.UTC().Format("2006-01-02 15:04:05.999999") + "+00'::timestamptz"
}
