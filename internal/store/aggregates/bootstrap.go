package aggregates

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Loader writes the first snapshot inside the bootstrap transaction.
type Loader struct {
	tx pgx.Tx
	s  *Store
	// The hourly, daily and platform rollups are summed here from the
	// minute rows as they stream past, instead of re-reading millions of
	// rows with time zone arithmetic afterwards (measured at full scale:
	// 34 s of SQL against well under a second of Go).
	roll *rollups
	// leftover holds the events of rows the aggregation left out that the
	// mapping found valid; they are added once the tables are indexed.
	leftover *window.Window
	cp       Checkpoint
	// rules, when SumRules asked for them, sums the rules state as the
	// rows pass.
	rules *loadedRules
}

// copySQL is the COPY of cols into table. Rows are loaded frozen and
// their pages marked all-visible, which the TRUNCATE in the same
// transaction allows: loaded plainly, the first autovacuum after a first
// start dirtied every page of the minutes (60,000 pages in 17 s at full
// scale) while the live stream wrote to them, and the stream's upserts
// slowed from about 20 to 60-160 ms a statement.
func (l *Loader) copySQL(table, cols string, binary bool) string {
	format := ""
	if binary {
		format = ", FORMAT binary"
	}
	return fmt.Sprintf("COPY %s (%s) FROM STDIN WITH (FREEZE%s)", l.s.db.Table(table), cols, format)
}

// CopyMinutes streams minute aggregates from produce into the sink, given
// to its MinuteWriter as COPY text rows or as numbers. Keys must not
// repeat, and one business day's minutes must all come in one call: the
// call's hourly and daily rollups are written when it ends.
func (l *Loader) CopyMinutes(ctx context.Context, produce func(w *MinuteWriter) error) (int64, error) {
	l.roll.reset()
	n, err := l.copyFrom(ctx, "minute_agg", "merchant_id, minute, approvals, approved_amount, cancels, canceled_amount",
		func(w io.Writer) error {
			t := &MinuteWriter{w: w, roll: l.roll, rules: l.rules}
			if err := produce(t); err != nil {
				return err
			}
			return t.finish()
		})
	if err != nil {
		return n, err
	}
	return n, l.writeRollups(ctx)
}

// Overflowed returns the merchant-minutes CopyMinutes left out so far
// because a sum of theirs would not fit in the sink; their rows are for
// the mapping (Leftovers) to go through one by one.
func (l *Loader) Overflowed() []window.Key { return l.roll.overflow }

// Leftovers takes what the mapping made of rows the aggregation left out:
// dead letters are staged (recorded once per source row, see Bootstrap),
// events are counted like streamed ones (an event that would take its
// minute's sum past int64 is a dead letter too) and added after the load.
// It returns how many dead letters it staged.
func (l *Loader) Leftovers(ctx context.Context, out *event.Output) (int64, error) {
	dead := out.DeadLetters
	for _, ev := range out.Events {
		var ok bool
		if ev.Kind == event.Approval {
			_, ok = l.leftover.AddApproval(ev.Merchant, ev.TimeUS, ev.Amount)
		} else {
			_, ok = l.leftover.AddCancel(ev.Merchant, ev.TimeUS, ev.Amount)
		}
		if !ok {
			dead = append(dead, event.SumOverflow(ev, "minute", "", time.Time{}))
		}
	}
	return int64(len(dead)), l.stage(ctx, dead)
}

// stage copies dead letters into the staging table.
func (l *Loader) stage(ctx context.Context, dead []event.DeadLetter) error {
	if len(dead) == 0 {
		return nil
	}
	rows := make([][]any, len(dead))
	for i, d := range dead {
		r := deadLetterRow("snapshot", d)
		rows[i] = []any{r[1], r[2], r[3], r[4], r[7]}
	}
	if _, err := l.tx.CopyFrom(ctx, pgx.Identifier{"snapshot_dead_letters"}, []string{"source_table", "kind", "reason", "detail", "row"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("staging %d snapshot dead letters: %w", len(dead), err)
	}
	return nil
}

// addLeftovers adds the leftover rows' events, checked against the loaded
// sums like a streamed batch; what does not fit is a dead letter.
func (l *Loader) addLeftovers(ctx context.Context) error {
	deltas := l.leftover.Drain()
	if len(deltas) == 0 {
		return nil
	}
	kept, dead, err := l.s.fitDeltas(ctx, l.tx, deltas, "", time.Time{})
	if err != nil {
		return err
	}
	if len(kept) > 0 {
		// The rules' sums did not see these; the state is read instead.
		l.rules = nil
	}
	var qb pgx.Batch
	if err := l.s.queueDeltas(&qb, kept); err != nil {
		return err
	}
	if err := l.tx.SendBatch(ctx, &qb).Close(); err != nil {
		return fmt.Errorf("adding %d merchant-minutes of left-out rows: %w", len(kept), err)
	}
	return l.stage(ctx, dead)
}

// copyFrom copies what produce writes into table's cols: COPY text, or
// COPY binary when it begins with binary's signature.
func (l *Loader) copyFrom(ctx context.Context, table, cols string, produce func(w io.Writer) error) (int64, error) {
	pr, pw := io.Pipe()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// The producer writes one COPY row at a time; unbuffered, every
		// row would cross the pipe and go to the sink as its own message
		// and system call (measured: 45% of the first snapshot's time).
		bw := bufio.NewWriterSize(pw, 256<<10)
		err := produce(bw)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		return err
	})
	var n int64
	g.Go(func() error {
		in := bufio.NewReaderSize(pr, 64<<10)
		head, err := in.Peek(len(copySignature))
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		tag, err := l.tx.Conn().PgConn().CopyFrom(gctx, in, l.copySQL(table, cols, string(head) == copySignature))
		if err != nil {
			// Unblocks the producer when the sink side failed first.
			pr.CloseWithError(err)
			return fmt.Errorf("copying into sink: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return n, g.Wait()
}

// writeRollups writes the hours and days of the last CopyMinutes call.
func (l *Loader) writeRollups(ctx context.Context) error {
	r := l.roll
	for day := range r.days {
		if r.written[day] {
			return fmt.Errorf("bootstrap: business day %s came in two chunks; its daily rollup would be split", time.Unix(day, 0).UTC().Format(time.DateOnly))
		}
	}
	for day := range r.days {
		r.written[day] = true
	}
	if l.rules != nil {
		for hour, t := range r.hours {
			for i, k := range t.keys {
				l.rules.hour(k, hour, t.aggs[i])
			}
		}
	}
	if err := copyAggs(ctx, l, "hour_agg", "merchant_id, hour", 2, r.hours, func(buf []byte, merchant, hour int64) []byte {
		return appendTimestamptz(appendInt8(buf, merchant), hour)
	}); err != nil {
		return err
	}
	return copyAggs(ctx, l, "day_agg", "merchant_id, day", 2, r.days, func(buf []byte, merchant, day int64) []byte {
		return appendDate(appendInt8(buf, merchant), day)
	})
}

// writePlatform writes the platform totals of every minute loaded.
func (l *Loader) writePlatform(ctx context.Context) error {
	return copyAggs(ctx, l, "platform_minute", "minute", 1, map[int64]*aggTable{0: &l.roll.platform}, func(buf []byte, minute, _ int64) []byte {
		return appendTimestamptz(buf, minute)
	})
}

// copyAggs copies the sums of each bucket's table into table, each row's
// key columns written by key from the bucket and the table's key (keys
// fields of them), in COPY binary.
func copyAggs(ctx context.Context, l *Loader, table, keyCols string, keys int16, buckets map[int64]*aggTable, key func(buf []byte, k, bucket int64) []byte) error {
	_, err := l.copyFrom(ctx, table, keyCols+", approvals, approved_amount, cancels, canceled_amount",
		func(w io.Writer) error {
			buf := appendCopyHeader(nil)
			for bucket, t := range buckets {
				for i, k := range t.keys {
					buf = key(binary.BigEndian.AppendUint16(buf, uint16(keys+4)), k, bucket)
					a := t.aggs[i]
					for _, v := range [...]int64{a.Approvals, a.ApprovedAmount, a.Cancels, a.CanceledAmount} {
						buf = appendInt8(buf, v)
					}
					if _, err := w.Write(buf); err != nil {
						return err
					}
					buf = buf[:0]
				}
			}
			_, err := w.Write(appendCopyTrailer(buf))
			return err
		})
	if err != nil {
		return fmt.Errorf("bootstrap: writing %s: %w", table, err)
	}
	return nil
}

// COPY binary: the file's signature, flags and header extension, then per
// row its number of fields and each field's length and value, big-endian;
// -1 as the number of fields ends it. PostgreSQL reads it without parsing
// text (measured: 12.6 M minutes copied in 9.2-9.7 s against 13.3-21.3 s
// as text, mostly the timestamps' parsing).
const copySignature = "PGCOPY\n\xff\r\n\x00"

func appendCopyHeader(buf []byte) []byte {
	return append(append(buf, copySignature...), 0, 0, 0, 0, 0, 0, 0, 0)
}

func appendCopyTrailer(buf []byte) []byte { return append(buf, 0xff, 0xff) }

func appendInt8(buf []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(append(buf, 0, 0, 0, 8), uint64(v))
}

func appendInt4(buf []byte, v int32) []byte {
	return binary.BigEndian.AppendUint32(append(buf, 0, 0, 0, 4), uint32(v))
}

// pgEpoch is 2000-01-01 UTC in Unix seconds: binary timestamps count
// microseconds from it, dates days.
const pgEpoch = 946684800

func appendTimestamptz(buf []byte, unix int64) []byte {
	return appendInt8(buf, (unix-pgEpoch)*1_000_000)
}

func appendDate(buf []byte, unix int64) []byte { return appendInt4(buf, int32((unix-pgEpoch)/86400)) }

// bucketKey is a merchant and the Unix second its hour or day starts
// (days as their date at 00:00 UTC, the way the sink's DATE has no zone).
type bucketKey struct{ merchant, bucket int64 }

// rollups sums minute rows into hours, days and platform minutes. Each
// hour and each day has its own table of merchants: a load's rows come
// minute by minute, so the hour being summed is small enough to stay in
// the processor's cache, where one table of every merchant-hour missed it
// on nearly every row (measured: a fifth of a first start's CPU). The last
// bucket and minute looked up are kept, since consecutive rows share them.
type rollups struct {
	cal      window.Calendar
	buckets  map[int64][2]int64 // minute → its hour and day, memoised: a load has only ~10k minutes
	hours    map[int64]*aggTable
	days     map[int64]*aggTable
	platform aggTable
	written  map[int64]bool // days already written
	// overflow: merchant-minutes left out because a sum would not fit.
	overflow []window.Key

	lastMinute     int64
	lastBuckets    [2]int64
	lastHour       *aggTable
	lastDay        *aggTable
	lastHourBucket int64
	lastDayBucket  int64
}

// aggTable numbers its keys (merchants, or minutes for the platform) and
// holds their sums in the order they came. Its index is the open-addressing
// table the rules' restore uses (measured on MariaDB's first start at full
// scale: the rollups' sums took 6.8 s of CPU with Go's map, 5.5 s with it).
type aggTable struct {
	index slots
	keys  []int64
	aggs  []window.Agg
}

func newAggTable() *aggTable { return &aggTable{index: newSlots(1024)} }

// find is k's sums, or nil.
func (t *aggTable) find(k int64) *window.Agg {
	if i := t.index.lookup(k); i >= 0 {
		return &t.aggs[i]
	}
	return nil
}

// put adds a, which a caller checked fits, to k's sums.
func (t *aggTable) put(k int64, cur *window.Agg, a window.Agg) {
	if cur != nil {
		*cur = a
		return
	}
	t.index.get(k, int32(len(t.aggs)))
	t.keys = append(t.keys, k)
	t.aggs = append(t.aggs, a)
}

func newRollups(cal window.Calendar) *rollups {
	r := &rollups{cal: cal, buckets: map[int64][2]int64{}, hours: map[int64]*aggTable{}, days: map[int64]*aggTable{},
		platform: *newAggTable(), written: map[int64]bool{}}
	r.forget()
	return r
}

func (r *rollups) reset() {
	clear(r.hours)
	clear(r.days)
	r.forget()
}

// forget drops the remembered lookups.
func (r *rollups) forget() {
	r.lastMinute, r.lastHourBucket, r.lastDayBucket = math.MinInt64, math.MinInt64, math.MinInt64
	r.lastHour, r.lastDay = nil, nil
}

// table is bucket's table in m, made when missing; last and lastBucket
// remember it.
func table(m map[int64]*aggTable, bucket int64, last **aggTable, lastBucket *int64) *aggTable {
	if *lastBucket == bucket {
		return *last
	}
	t, ok := m[bucket]
	if !ok {
		t = newAggTable()
		m[bucket] = t
	}
	*last, *lastBucket = t, bucket
	return t
}

// add sums a minute row into its hour, day and platform minute, and
// reports whether every one of those sums fits; when one does not, nothing
// is added.
func (r *rollups) add(merchant, minute int64, a window.Agg) bool {
	if minute != r.lastMinute {
		b, ok := r.buckets[minute]
		if !ok {
			m := window.MinuteOf(time.Unix(minute, 0))
			b = [2]int64{r.cal.Hour(m).Unix(), r.cal.Day(m).Unix()}
			r.buckets[minute] = b
		}
		r.lastMinute, r.lastBuckets = minute, b
	}
	ht := table(r.hours, r.lastBuckets[0], &r.lastHour, &r.lastHourBucket)
	dt := table(r.days, r.lastBuckets[1], &r.lastDay, &r.lastDayBucket)
	hp, dp, pp := ht.find(merchant), dt.find(merchant), r.platform.find(minute)
	var h, d, p window.Agg
	if hp != nil {
		h = *hp
	}
	if dp != nil {
		d = *dp
	}
	if pp != nil {
		p = *pp
	}
	if !h.Add(a) || !d.Add(a) || !p.Add(a) {
		return false
	}
	// The three pointers are into three tables, and a put appends (which
	// may move its table's sums) only where its own pointer was nil.
	ht.put(merchant, hp, h)
	dt.put(merchant, dp, d)
	r.platform.put(minute, pp, p)
	return true
}

// MinuteWriter takes one call's minute aggregates and sums them into the
// rollups, leaving out (for the mapping to go through row by row) a
// merchant-minute whose sums would not fit the sink. It takes them in
// either of two forms: COPY text rows, columns (merchant_id, minute,
// approvals, approved_amount, cancels, canceled_amount), through Write, as
// PostgreSQL's GROUP BY sends them; or as numbers through Sums, from a
// source that summed its rows itself, which then need not be formatted
// only to be parsed back (measured on MariaDB at full scale: the parsing
// was a quarter of a first start's CPU in riskwatch).
type MinuteWriter struct {
	w    io.Writer
	roll *rollups
	part []byte // an incomplete last line, not yet passed through
	line int64
	// One call's rows are all text or all numbers, which go to the sink
	// as COPY binary; buf is the row Sums encodes.
	text, binary bool
	buf          []byte
	rules        *loadedRules
}

// Sums takes one merchant-minute's sums. Like a text row whose sums do
// not fit, a merchant-minute whose counts or rollups would not is left out.
func (t *MinuteWriter) Sums(merchant int64, m window.Minute, a window.Agg) error {
	if t.text {
		return fmt.Errorf("minute row %d: sums given after text rows", t.line+1)
	}
	t.line++
	if !t.keep(merchant, m, a) {
		return nil
	}
	t.buf = t.buf[:0]
	if !t.binary {
		t.binary, t.buf = true, appendCopyHeader(t.buf)
	}
	t.buf = binary.BigEndian.AppendUint16(t.buf, 6)
	t.buf = appendTimestamptz(appendInt8(t.buf, merchant), m.Start().Unix())
	t.buf = appendInt8(appendInt4(t.buf, int32(a.Approvals)), a.ApprovedAmount)
	t.buf = appendInt8(appendInt4(t.buf, int32(a.Cancels)), a.CanceledAmount)
	return t.write(t.buf)
}

// keep sums a merchant-minute into the rollups (and the rules' sums) and
// reports whether it fits the sink; one that does not is left out.
func (t *MinuteWriter) keep(merchant int64, m window.Minute, a window.Agg) bool {
	// The minute table counts in integer columns.
	if a.Approvals > math.MaxInt32 || a.Cancels > math.MaxInt32 || !t.roll.add(merchant, m.Start().Unix(), a) {
		t.Overflow(merchant, m)
		return false
	}
	if t.rules != nil {
		t.rules.minute(merchant, m, a)
	}
	return true
}

// Overflow leaves a merchant-minute out whose sums the source found too
// large for the sink: its rows go through the mapping one by one.
func (t *MinuteWriter) Overflow(merchant int64, m window.Minute) {
	t.roll.overflow = append(t.roll.overflow, window.Key{Merchant: merchant, Minute: m})
}

// Write takes COPY text rows, passing through those that fit.
func (t *MinuteWriter) Write(p []byte) (int, error) {
	if t.binary {
		return 0, fmt.Errorf("minute row %d: text rows given after sums", t.line+1)
	}
	t.text = t.text || len(p) > 0
	run, off := 0, 0 // p[run:off] are whole lines to pass through
	for {
		i := bytes.IndexByte(p[off:], '\n')
		if i < 0 {
			break
		}
		end := off + i + 1
		line, head := p[off:end-1], len(t.part)
		if head > 0 {
			t.part = append(t.part, line...)
			line = t.part
		}
		keep, err := t.parse(line)
		if err != nil {
			return 0, err
		}
		switch {
		case head > 0 && keep:
			// The line began in an earlier Write: its beginning was
			// held back and goes first; the rest is at p[0:end].
			if err := t.write(t.part[:head]); err != nil {
				return 0, err
			}
		case head > 0:
			run = end
		case !keep:
			if err := t.write(p[run:off]); err != nil {
				return 0, err
			}
			run = end
		}
		t.part = t.part[:0]
		off = end
	}
	if err := t.write(p[run:off]); err != nil {
		return 0, err
	}
	t.part = append(t.part, p[off:]...)
	return len(p), nil
}

func (t *MinuteWriter) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := t.w.Write(b)
	return err
}

func (t *MinuteWriter) finish() error {
	if len(t.part) > 0 {
		return fmt.Errorf("minute row %d: no end of line after %q", t.line+1, t.part)
	}
	if t.binary {
		return t.write(appendCopyTrailer(nil))
	}
	return nil
}

// parse sums one row into the rollups and reports whether it is passed
// through: it is not when a sum of it (the minute's, or its hour's, day's
// or platform minute's) does not fit.
func (t *MinuteWriter) parse(line []byte) (bool, error) {
	t.line++
	var f [6][]byte
	rest := line
	for i := range f {
		j := bytes.IndexByte(rest, '\t')
		if i == len(f)-1 {
			if j >= 0 {
				return false, fmt.Errorf("minute row %d: more than %d columns: %q", t.line, len(f), line)
			}
			f[i] = rest
			break
		}
		if j < 0 {
			return false, fmt.Errorf("minute row %d: fewer than %d columns: %q", t.line, len(f), line)
		}
		f[i], rest = rest[:j], rest[j+1:]
	}
	minute, err := parseMinute(f[1])
	if err != nil {
		return false, fmt.Errorf("minute row %d: %w", t.line, err)
	}
	var v [5]int64
	fits := true
	for i, k := range [...]int{0, 2, 3, 4, 5} {
		n, err := strconv.ParseInt(string(f[k]), 10, 64)
		// Asserted, not errors.As: its target would escape, an allocation
		// for every column of every row.
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && k > 0 {
			fits = false
			continue
		}
		if err != nil {
			return false, fmt.Errorf("minute row %d column %d: %w", t.line, k+1, err)
		}
		v[i] = n
	}
	m := window.MinuteOf(time.Unix(minute, 0))
	if !fits {
		t.Overflow(v[0], m)
		return false, nil
	}
	return t.keep(v[0], m, window.Agg{Approvals: v[1], ApprovedAmount: v[2], Cancels: v[3], CanceledAmount: v[4]}), nil
}

// parseMinute reads a timestamptz in PostgreSQL's text output as Unix
// seconds. The snapshot session runs in UTC, so "2006-01-02 15:04:05+00" is
// decoded by hand; anything else goes through time.Parse.
func parseMinute(b []byte) (int64, error) {
	if len(b) == 22 && b[4] == '-' && b[7] == '-' && b[10] == ' ' && b[13] == ':' && b[16] == ':' && string(b[19:]) == "+00" {
		d := func(i, n int) int {
			v := 0
			for _, c := range b[i : i+n] {
				if c < '0' || c > '9' {
					return -1
				}
				v = v*10 + int(c-'0')
			}
			return v
		}
		y, mo, dd, h, mi, s := d(0, 4), d(5, 2), d(8, 2), d(11, 2), d(14, 2), d(17, 2)
		if y >= 0 && mo >= 1 && mo <= 12 && dd >= 1 && dd <= 31 && h >= 0 && h < 24 && mi >= 0 && mi < 60 && s >= 0 && s < 60 {
			return time.Date(y, time.Month(mo), dd, h, mi, s, 0, time.UTC).Unix(), nil
		}
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05.999999-07:00:00"} {
		if t, err := time.Parse(layout, string(b)); err == nil {
			return t.Unix(), nil
		}
	}
	return 0, fmt.Errorf("minute %q is not a timestamp", b)
}

// Bootstrap replaces the sink's aggregates with what fill loads from the
// first snapshot, with their rollups and the checkpoint, in one transaction:
// a crash during bootstrap leaves the sink as it was. onStep, when set, hears
// how long each step after fill took, for the log.
func (s *Store) Bootstrap(ctx context.Context, cp Checkpoint, fill func(ctx context.Context, l *Loader) error, onStep func(step string, took time.Duration)) error {
	return s.db.Tx(ctx, func(tx pgx.Tx) error {
		steps := []struct {
			what, sql string
		}{
			{"clearing aggregates", fmt.Sprintf("TRUNCATE %s, %s, %s, %s, %s, %s", s.db.Table("minute_agg"), s.db.Table("hour_agg"), s.db.Table("day_agg"),
				s.db.Table("platform_minute"), s.db.Table("late_deltas"), s.db.Table("rules_resume"))},
			{"creating staging table", "CREATE TEMP TABLE snapshot_dead_letters (source_table text, kind text, reason text, detail text, row jsonb) ON COMMIT DROP"},
			// Millions of rows arrive in merchant-scattered order: building
			// the indexes once, sorted, afterwards beats maintaining them
			// row by row. Nobody else sees the tables before this commits.
			{"dropping indexes for the load", fmt.Sprintf(`ALTER TABLE %s DROP CONSTRAINT minute_agg_pkey; DROP INDEX %s;
				ALTER TABLE %s DROP CONSTRAINT hour_agg_pkey; DROP INDEX %s; ALTER TABLE %s DROP CONSTRAINT day_agg_pkey`,
				s.db.Table("minute_agg"), s.db.Table("minute_agg_minute"), s.db.Table("hour_agg"), s.db.Table("hour_agg_hour"), s.db.Table("day_agg"))},
			// Sort memory per participant in a parallel build is
			// maintenance_work_mem over the participants, and PostgreSQL
			// gives each at least 32MB: 64MB is the leader and one
			// worker, whose sort runs stay near the processor's cache.
			// Measured on 12.6 M minutes, 2 cores: both minute indexes
			// 13.4 s median against 16.9 s at 256MB (two workers) and
			// 14-18 s at 128MB or at 256MB with one worker.
			{"sizing index builds", "SET LOCAL maintenance_work_mem = '64MB'"},
			// A fenced writer's transactions end the session when idle
			// for a lease (so a lost writer cannot hold up a takeover);
			// this one waits on the source between its writes for as
			// long as the snapshot's reads take.
			{"lifting the idle limit", "SET LOCAL idle_in_transaction_session_timeout TO DEFAULT"},
		}
		for _, st := range steps {
			if _, err := tx.Exec(ctx, st.sql); err != nil {
				return fmt.Errorf("bootstrap: %s: %w", st.what, err)
			}
		}
		l := &Loader{tx: tx, s: s, roll: newRollups(s.cal), leftover: window.New(0, 0), cp: cp}
		if err := fill(ctx, l); err != nil {
			return err
		}
		t0 := time.Now()
		if err := l.writePlatform(ctx); err != nil {
			return err
		}
		if onStep != nil {
			onStep("writing platform minutes", time.Since(t0))
		}
		tz := s.cal.Location().String()
		finish := []struct {
			what, sql string
			args      []any
		}{
			{"indexing minutes", fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT minute_agg_pkey PRIMARY KEY (merchant_id, minute); CREATE INDEX minute_agg_minute ON %s (minute)",
				s.db.Table("minute_agg"), s.db.Table("minute_agg")), nil},
			{"indexing rollups", fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT hour_agg_pkey PRIMARY KEY (merchant_id, hour); CREATE INDEX hour_agg_hour ON %s USING brin (hour) WITH (autosummarize = on);
				ALTER TABLE %s ADD CONSTRAINT day_agg_pkey PRIMARY KEY (merchant_id, day)`,
				s.db.Table("hour_agg"), s.db.Table("hour_agg"), s.db.Table("day_agg")), nil},
			{"adding left-out rows", "", nil},
			// A rebuild finds the rows an earlier snapshot or the stream
			// recorded already: each source row is recorded once. Those of
			// an earlier snapshot not found again (repaired at the source)
			// go, as their aggregates do.
			{"recording snapshot dead letters", fmt.Sprintf(`DELETE FROM %[1]s d WHERE d.origin = 'snapshot' AND NOT EXISTS (
					SELECT 1 FROM pg_temp.snapshot_dead_letters n WHERE n.source_table = d.source_table AND n.kind = d.kind AND n.row = d.row);
				INSERT INTO %[1]s (origin, source_table, kind, reason, detail, row)
				SELECT 'snapshot', n.source_table, n.kind, n.reason, n.detail, n.row FROM pg_temp.snapshot_dead_letters n
				WHERE NOT EXISTS (SELECT 1 FROM %[1]s d WHERE d.source_table = n.source_table AND d.kind = n.kind AND d.row = n.row)`, s.db.Table("dead_letters")), nil},
			// Freshly loaded tables have no statistics until autovacuum
			// comes by; the rules' first restore from them would plan
			// blind (measured: 40 s instead of 2 s at full scale).
			{"analyzing the loaded tables", fmt.Sprintf("ANALYZE %s, %s, %s, %s", s.db.Table("minute_agg"), s.db.Table("hour_agg"),
				s.db.Table("day_agg"), s.db.Table("platform_minute")), nil},
			{"writing checkpoint", fmt.Sprintf(`INSERT INTO %s AS c (slot, position, last_closed, progress, snapshot_position, bootstrapped_at, business_timezone)
				VALUES ($1, $2, $3, $4, $2, now(), $5)
				ON CONFLICT (slot) DO UPDATE SET position = EXCLUDED.position, epoch = c.epoch + 1, last_closed = EXCLUDED.last_closed,
					progress = EXCLUDED.progress, snapshot_position = EXCLUDED.snapshot_position, bootstrapped_at = EXCLUDED.bootstrapped_at,
					business_timezone = EXCLUDED.business_timezone, updated_at = now()`, s.db.Table("checkpoint")),
				[]any{cp.Slot, cp.Position, cp.LastClosed.Start(), cp.Progress, tz}},
		}
		for _, st := range finish {
			t0 := time.Now()
			var err error
			if st.sql == "" {
				err = l.addLeftovers(ctx)
			} else {
				_, err = tx.Exec(ctx, st.sql, st.args...)
			}
			if err != nil {
				return fmt.Errorf("bootstrap: %s: %w", st.what, err)
			}
			if onStep != nil {
				onStep(st.what, time.Since(t0))
			}
		}
		return nil
	})
}
