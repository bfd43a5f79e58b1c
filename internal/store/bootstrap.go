package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

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
}

// CopyMinutes streams minute aggregates in COPY text format, columns
// (merchant_id, minute, approvals, approved_amount, cancels,
// canceled_amount), from produce into the sink. Keys must not repeat, and one
// business day's minutes must all come in one call: the call's hourly and
// daily rollups are written when it ends.
func (l *Loader) CopyMinutes(ctx context.Context, produce func(w io.Writer) error) (int64, error) {
	l.roll.reset()
	n, err := l.copyFrom(ctx, "COPY "+l.s.table("minute_agg")+" (merchant_id, minute, approvals, approved_amount, cancels, canceled_amount) FROM STDIN",
		func(w io.Writer) error {
			t := &teeParser{w: w, roll: l.roll}
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

// CopyDeadLetters streams snapshot dead letters in COPY text format, columns
// (source_table, kind, reason, detail, row).
func (l *Loader) CopyDeadLetters(ctx context.Context, produce func(w io.Writer) error) (int64, error) {
	return l.copyFrom(ctx, "COPY pg_temp.snapshot_dead_letters (source_table, kind, reason, detail, row) FROM STDIN", produce)
}

func (l *Loader) copyFrom(ctx context.Context, sql string, produce func(w io.Writer) error) (int64, error) {
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
		tag, err := l.tx.Conn().PgConn().CopyFrom(gctx, pr, sql)
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
		if r.written[day.bucket] {
			return fmt.Errorf("bootstrap: business day %s came in two chunks; its daily rollup would be split", time.Unix(day.bucket, 0).UTC().Format(time.DateOnly))
		}
	}
	for day := range r.days {
		r.written[day.bucket] = true
	}
	tables := []struct {
		name, col string
		rows      map[bucketKey]window.Agg
		format    func(buf []byte, bucket int64) []byte
	}{
		{"hour_agg", "hour", r.hours, appendTimestamp},
		{"day_agg", "day", r.days, appendDate},
	}
	for _, t := range tables {
		_, err := l.copyFrom(ctx, fmt.Sprintf("COPY %s (merchant_id, %s, approvals, approved_amount, cancels, canceled_amount) FROM STDIN", l.s.table(t.name), t.col),
			func(w io.Writer) error {
				var buf []byte
				for k, a := range t.rows {
					buf = strconv.AppendInt(buf[:0], k.merchant, 10)
					buf = append(buf, '\t')
					buf = t.format(buf, k.bucket)
					buf = appendAgg(buf, a)
					if _, err := w.Write(buf); err != nil {
						return err
					}
				}
				return nil
			})
		if err != nil {
			return fmt.Errorf("bootstrap: writing %s: %w", t.name, err)
		}
	}
	return nil
}

// writePlatform writes the platform totals of every minute loaded.
func (l *Loader) writePlatform(ctx context.Context) error {
	_, err := l.copyFrom(ctx, "COPY "+l.s.table("platform_minute")+" (minute, approvals, approved_amount, cancels, canceled_amount) FROM STDIN",
		func(w io.Writer) error {
			var buf []byte
			for m, a := range l.roll.platform {
				buf = appendTimestamp(buf[:0], m)
				buf = appendAgg(buf, a)
				if _, err := w.Write(buf); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return fmt.Errorf("bootstrap: writing platform minutes: %w", err)
	}
	return nil
}

func appendAgg(buf []byte, a window.Agg) []byte {
	for _, v := range [...]int64{a.Approvals, a.ApprovedAmount, a.Cancels, a.CanceledAmount} {
		buf = append(buf, '\t')
		buf = strconv.AppendInt(buf, v, 10)
	}
	return append(buf, '\n')
}

func appendTimestamp(buf []byte, unix int64) []byte {
	return time.Unix(unix, 0).UTC().AppendFormat(buf, "2006-01-02 15:04:05+00")
}

func appendDate(buf []byte, unix int64) []byte {
	return time.Unix(unix, 0).UTC().AppendFormat(buf, time.DateOnly)
}

// bucketKey is a merchant and the Unix second its hour or day starts
// (days as their date at 00:00 UTC, the way the sink's DATE has no zone).
type bucketKey struct{ merchant, bucket int64 }

type rollups struct {
	cal      window.Calendar
	buckets  map[int64][2]int64 // minute → its hour and day, memoised: a load has only ~10k minutes
	hours    map[bucketKey]window.Agg
	days     map[bucketKey]window.Agg
	platform map[int64]window.Agg
	written  map[int64]bool // days already written
}

func newRollups(cal window.Calendar) *rollups {
	return &rollups{cal: cal, buckets: map[int64][2]int64{}, hours: map[bucketKey]window.Agg{}, days: map[bucketKey]window.Agg{},
		platform: map[int64]window.Agg{}, written: map[int64]bool{}}
}

func (r *rollups) reset() {
	clear(r.hours)
	clear(r.days)
}

func (r *rollups) add(merchant, minute int64, a window.Agg) {
	b, ok := r.buckets[minute]
	if !ok {
		m := window.MinuteOf(time.Unix(minute, 0))
		b = [2]int64{r.cal.Hour(m).Unix(), r.cal.Day(m).Unix()}
		r.buckets[minute] = b
	}
	for _, t := range [...]struct {
		rows map[bucketKey]window.Agg
		key  bucketKey
	}{{r.hours, bucketKey{merchant, b[0]}}, {r.days, bucketKey{merchant, b[1]}}} {
		v := t.rows[t.key]
		v.Add(a)
		t.rows[t.key] = v
	}
	p := r.platform[minute]
	p.Add(a)
	r.platform[minute] = p
}

// teeParser passes COPY rows through to w and sums them into the rollups.
type teeParser struct {
	w    io.Writer
	roll *rollups
	part []byte // an incomplete last line
	line int64
}

func (t *teeParser) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		return n, err
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.part = append(t.part, p...)
			break
		}
		line := p[:i]
		if len(t.part) > 0 {
			t.part = append(t.part, line...)
			line = t.part
		}
		if err := t.parse(line); err != nil {
			return n, err
		}
		t.part = t.part[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (t *teeParser) finish() error {
	if len(t.part) > 0 {
		return fmt.Errorf("minute row %d: no end of line after %q", t.line+1, t.part)
	}
	return nil
}

func (t *teeParser) parse(line []byte) error {
	t.line++
	var f [6][]byte
	rest := line
	for i := range f {
		j := bytes.IndexByte(rest, '\t')
		if i == len(f)-1 {
			if j >= 0 {
				return fmt.Errorf("minute row %d: more than %d columns: %q", t.line, len(f), line)
			}
			f[i] = rest
			break
		}
		if j < 0 {
			return fmt.Errorf("minute row %d: fewer than %d columns: %q", t.line, len(f), line)
		}
		f[i], rest = rest[:j], rest[j+1:]
	}
	var v [5]int64
	for i, k := range [...]int{0, 2, 3, 4, 5} {
		n, err := strconv.ParseInt(string(f[k]), 10, 64)
		if err != nil {
			return fmt.Errorf("minute row %d column %d: %w", t.line, k+1, err)
		}
		v[i] = n
	}
	minute, err := parseMinute(f[1])
	if err != nil {
		return fmt.Errorf("minute row %d: %w", t.line, err)
	}
	t.roll.add(v[0], minute, window.Agg{Approvals: v[1], ApprovedAmount: v[2], Cancels: v[3], CanceledAmount: v[4]})
	return nil
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
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		steps := []struct {
			what, sql string
		}{
			{"clearing aggregates", fmt.Sprintf("TRUNCATE %s, %s, %s, %s", s.table("minute_agg"), s.table("hour_agg"), s.table("day_agg"), s.table("platform_minute"))},
			{"clearing snapshot dead letters", fmt.Sprintf("DELETE FROM %s WHERE origin = 'snapshot'", s.table("dead_letters"))},
			{"creating staging table", "CREATE TEMP TABLE snapshot_dead_letters (source_table text, kind text, reason text, detail text, row jsonb) ON COMMIT DROP"},
			// Millions of rows arrive in merchant-scattered order: building
			// the indexes once, sorted, afterwards beats maintaining them
			// row by row. Nobody else sees the tables before this commits.
			{"dropping indexes for the load", fmt.Sprintf(`ALTER TABLE %s DROP CONSTRAINT minute_agg_pkey; DROP INDEX %s;
				ALTER TABLE %s DROP CONSTRAINT hour_agg_pkey; ALTER TABLE %s DROP CONSTRAINT day_agg_pkey`,
				s.table("minute_agg"), s.table("minute_agg_minute"), s.table("hour_agg"), s.table("day_agg"))},
			{"sizing index builds", "SET LOCAL maintenance_work_mem = '256MB'"},
		}
		for _, st := range steps {
			if _, err := tx.Exec(ctx, st.sql); err != nil {
				return fmt.Errorf("bootstrap: %s: %w", st.what, err)
			}
		}
		l := &Loader{tx: tx, s: s, roll: newRollups(s.cal)}
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
				s.table("minute_agg"), s.table("minute_agg")), nil},
			{"indexing rollups", fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT hour_agg_pkey PRIMARY KEY (merchant_id, hour); ALTER TABLE %s ADD CONSTRAINT day_agg_pkey PRIMARY KEY (merchant_id, day)",
				s.table("hour_agg"), s.table("day_agg")), nil},
			{"recording snapshot dead letters", fmt.Sprintf(`INSERT INTO %s (origin, source_table, kind, reason, detail, row)
				SELECT 'snapshot', source_table, kind, reason, detail, row FROM pg_temp.snapshot_dead_letters`, s.table("dead_letters")), nil},
			// Freshly loaded tables have no statistics until autovacuum
			// comes by; the rules' first restore from them would plan
			// blind (measured: 40 s instead of 2 s at full scale).
			{"analyzing the loaded tables", fmt.Sprintf("ANALYZE %s, %s, %s, %s", s.table("minute_agg"), s.table("hour_agg"),
				s.table("day_agg"), s.table("platform_minute")), nil},
			{"writing checkpoint", fmt.Sprintf(`INSERT INTO %s (slot, lsn, last_closed, progress, snapshot_lsn, bootstrapped_at, business_timezone)
				VALUES ($1, $2, $3, $4, $2, now(), $5)
				ON CONFLICT (slot) DO UPDATE SET lsn = EXCLUDED.lsn, last_closed = EXCLUDED.last_closed, progress = EXCLUDED.progress,
					snapshot_lsn = EXCLUDED.snapshot_lsn, bootstrapped_at = EXCLUDED.bootstrapped_at,
					business_timezone = EXCLUDED.business_timezone, updated_at = now()`, s.table("checkpoint")),
				[]any{cp.Slot, int64(cp.LSN), cp.LastClosed.Start(), cp.Progress, tz}},
		}
		for _, st := range finish {
			t0 := time.Now()
			if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
				return fmt.Errorf("bootstrap: %s: %w", st.what, err)
			}
			if onStep != nil {
				onStep(st.what, time.Since(t0))
			}
		}
		return nil
	})
}
