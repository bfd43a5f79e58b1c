package binlog

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/riskwatch/riskwatch/internal/bootstrap"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Resumable reports whether the server still holds the binlog a stream
// resuming at checkpoint needs. Unlike a PostgreSQL slot, nothing on a
// MySQL server holds the log for riskwatch: when the files are purged the
// changes since are gone, and rebuilding silently would hide that, so this
// is a permanent error that names the fix.
func (s *Source) Resumable(ctx context.Context, checkpoint string) (bool, error) {
	if checkpoint == "" {
		return false, nil
	}
	p, err := ParsePosition(checkpoint)
	if err != nil {
		return false, permanent("the sink's checkpoint is not a binlog position (was it written by a PostgreSQL source? run riskwatch slot drop): %w", err)
	}
	conn, err := s.connect(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	files, err := binaryLogs(conn)
	if err != nil {
		return false, err
	}
	if _, ok := behind(p, files); !ok {
		first := "none"
		if len(files) > 0 {
			first = files[0].Name
		}
		return false, permanent("the source server no longer holds binlog %s that the checkpoint %s resumes from (its oldest is %s: purged by binlog retention while riskwatch was behind); "+
			"the changes since are lost to the stream: run `riskwatch slot drop` and start again to rebuild the sink from a new snapshot, and raise the server's binlog retention",
			p.File, checkpoint, first)
	}
	return true, nil
}

// Abandon has nothing to remove: a first start keeps nothing on the server.
func (s *Source) Abandon(context.Context) error { return nil }

// Snapshot opens a consistent snapshot at an exact binlog position and
// calls load with it.
//
// MariaDB: START TRANSACTION WITH CONSISTENT SNAPSHOT makes the snapshot
// and the binlog agree, and its Binlog_snapshot_file/position status says
// where, without any lock. MySQL has no such status: a global read lock
// (FLUSH TABLES WITH READ LOCK, which needs RELOAD) is held from just
// before the snapshot until the position is read, a few milliseconds in
// which writes wait. LOCK INSTANCE FOR BACKUP would not do: it lets
// transactions commit, so the position could move between the two reads.
func (s *Source) Snapshot(ctx context.Context, load func(ctx context.Context, snap bootstrap.Snapshot) error) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if s.flavor == "" {
		if err := s.detect(conn); err != nil {
			return err
		}
	}
	// The clock before the snapshot: minutes over by then are closed, and
	// rows committed after it arrive through the stream.
	at, err := serverNow(conn)
	if err != nil {
		return err
	}
	if _, err := conn.Execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		return fmt.Errorf("snapshot isolation: %w", err)
	}
	var pos Position
	if s.flavor == mysql.MariaDBFlavor {
		pos, err = s.mariadbSnapshot(conn)
	} else {
		pos, err = s.mysqlSnapshot(conn)
	}
	if err != nil {
		return err
	}
	defer conn.Execute("ROLLBACK") //nolint:errcheck // read-only; closing the connection ends it anyway
	s.log.Info("opened a consistent snapshot", "position", pos.String(), "snapshot_time", at)
	rctx, cancel := context.WithCancel(ctx)
	snap := &Snapshot{src: s, conn: conn, pos: pos, at: at, ctx: rctx}
	defer func() {
		// A read ahead that load never collected (it failed) stops
		// before the connection closes.
		cancel()
		snap.waitAhead()
	}()
	if err := snap.describe(); err != nil {
		return err
	}
	return load(ctx, snap)
}

func (s *Source) mariadbSnapshot(conn *client.Conn) (Position, error) {
	var p Position
	if _, err := conn.Execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
		return p, fmt.Errorf("starting the snapshot: %w", err)
	}
	r, err := conn.Execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
	if err != nil {
		return p, fmt.Errorf("reading the snapshot's binlog position: %w", err)
	}
	for i := range r.RowNumber() {
		k, _ := r.GetString(i, 0)
		v, _ := r.GetString(i, 1)
		switch strings.ToLower(k) {
		case "binlog_snapshot_file":
			p.File = v
		case "binlog_snapshot_position":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return p, fmt.Errorf("binlog_snapshot_position %q: %w", v, err)
			}
			p.Pos = uint32(n)
		}
	}
	if p.File == "" {
		return p, permanent("the server reports no binlog_snapshot_file: is log_bin on?")
	}
	g, err := queryString(conn, "SELECT BINLOG_GTID_POS(?, ?)", p.File, p.Pos)
	if err != nil {
		return p, fmt.Errorf("reading the snapshot's GTID position: %w", err)
	}
	p.GTID = g
	return p, nil
}

func (s *Source) mysqlSnapshot(conn *client.Conn) (Position, error) {
	var p Position
	if _, err := conn.Execute("FLUSH TABLES WITH READ LOCK"); err != nil {
		return p, permanent("taking the global read lock for the snapshot's position (grant RELOAD): %w", err)
	}
	unlocked := false
	unlock := func() {
		if !unlocked {
			conn.Execute("UNLOCK TABLES") //nolint:errcheck // the connection closes on failure anyway
			unlocked = true
		}
	}
	defer unlock()
	if _, err := conn.Execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
		return p, fmt.Errorf("starting the snapshot: %w", err)
	}
	r, err := conn.Execute("SHOW MASTER STATUS")
	if err != nil {
		// MySQL 8.4 renamed it.
		if r, err = conn.Execute("SHOW BINARY LOG STATUS"); err != nil {
			return p, fmt.Errorf("reading the binlog position: %w", err)
		}
	}
	unlock()
	return masterStatus(r, s.gtid)
}

// masterStatus reads SHOW MASTER STATUS's File, Position and
// Executed_Gtid_Set.
func masterStatus(r *mysql.Result, gtid bool) (Position, error) {
	var p Position
	if r.RowNumber() == 0 {
		return p, permanent("SHOW MASTER STATUS returned nothing: is log_bin on?")
	}
	var err error
	if p.File, err = r.GetStringByName(0, "File"); err != nil {
		return p, fmt.Errorf("SHOW MASTER STATUS: %w", err)
	}
	n, err := r.GetUintByName(0, "Position")
	if err != nil {
		return p, fmt.Errorf("SHOW MASTER STATUS: %w", err)
	}
	p.Pos = uint32(n)
	if gtid {
		g, err := r.GetStringByName(0, "Executed_Gtid_Set")
		if err != nil {
			return p, fmt.Errorf("SHOW MASTER STATUS: %w", err)
		}
		p.GTID = strings.ReplaceAll(g, "\n", "")
	}
	return p, nil
}

// serverNow is the server's clock.
func serverNow(conn *client.Conn) (time.Time, error) {
	us, err := queryString(conn, "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)")
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the source clock: %w", err)
	}
	n, err := strconv.ParseInt(us, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the source clock %q: %w", us, err)
	}
	return time.UnixMicro(n).UTC(), nil
}

// Snapshot is the source as of one binlog position. Its rows are read in
// the snapshot transaction and mapped one by one with the stream's own
// mapping, so both validate alike; valid events are summed per
// merchant-minute here and handed to the loader as COPY rows.
type Snapshot struct {
	src   *Source
	conn  *client.Conn
	pos   Position
	at    time.Time
	specs []snapSpec
	// dead are the dead letters of the rows read; spilled the events whose
	// minute fell outside their chunk (a wall clock read across a
	// daylight-saving change): both go to the loader through Leftovers.
	dead    []event.DeadLetter
	spilled []event.Event
	// days are the chunks Days returned, in the order Aggregate reads
	// them; ahead is the one being read ahead, spare sums not in use.
	days  []bootstrap.Chunk
	ahead *chunkRead
	spare *chunkSums
	// ctx is Snapshot's: a read ahead ends with it.
	ctx context.Context
}

// snapSpec is one mapping's table as the snapshot reads it.
type snapSpec struct {
	spec  event.Spec
	cols  []string
	table *event.TypedTable
	// kind of the time column; which selected column is which.
	kind   timeKind
	timeAt int
	// key is the table's primary key when it is one integer column and
	// an index leads with the time column: a chunk is then read as a
	// range of the key (see keyRange).
	key string
}

// Position is where the stream starts.
func (snap *Snapshot) Position() string { return snap.pos.String() }

// Time is the source's clock just before the snapshot.
func (snap *Snapshot) Time() time.Time { return snap.at }

// Width is 1: one connection reads the snapshot. (A second connection on
// the same snapshot, reading another day beside it, was tried: no faster
// on two cores shared with both servers, and twice the memory.)
func (snap *Snapshot) Width() int { return 1 }

// describe binds each mapped table: its mapped columns and primary key
// (so that a dead letter can be found at the source), and the time
// column's kind.
func (snap *Snapshot) describe() error {
	for _, sp := range snap.src.opts.Mapping.Specs() {
		r, err := snap.conn.Execute(`SELECT column_name, data_type, column_key FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position`,
			sp.Schema, sp.Table)
		if err != nil {
			return fmt.Errorf("reading the columns of %s: %w", sp.QualifiedTable(), err)
		}
		var cols, pri []string
		var kind timeKind
		intKey := false
		for i := range r.RowNumber() {
			name, _ := r.GetString(i, 0)
			tp, _ := r.GetString(i, 1)
			key, _ := r.GetString(i, 2)
			mapped := strings.EqualFold(name, sp.Merchant) || strings.EqualFold(name, sp.Amount) || strings.EqualFold(name, sp.Time) ||
				(sp.FilterColumn != "" && strings.EqualFold(name, sp.FilterColumn))
			if mapped || key == "PRI" {
				cols = append(cols, name)
			}
			if key == "PRI" {
				pri = append(pri, name)
				switch strings.ToLower(tp) {
				case "tinyint", "smallint", "mediumint", "int", "bigint":
					intKey = true
				default:
					intKey = false
				}
			}
			if strings.EqualFold(name, sp.Time) {
				kind = wall
				if strings.EqualFold(tp, "timestamp") {
					kind = absolute
				}
			}
		}
		m, err := event.NewMapping([]event.Spec{sp}, snap.src.opts.Mapping.Limits())
		if err != nil {
			return err
		}
		t, err := m.BindTyped(sp.Schema, sp.Table, cols)
		if err != nil {
			return permanent("%w", err)
		}
		ss := snapSpec{spec: sp, cols: cols, table: t, kind: kind, timeAt: slices.Index(cols, sp.Time)}
		if len(pri) == 1 && intKey {
			n, err := queryString(snap.conn, `SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? AND seq_in_index = 1 AND column_name = ?`,
				sp.Schema, sp.Table, sp.Time)
			if err != nil {
				return fmt.Errorf("reading the indexes of %s: %w", sp.QualifiedTable(), err)
			}
			if n != "0" {
				ss.key = pri[0]
			}
		}
		if ss.key != "" {
			snap.src.log.Info("the snapshot reads each day as a range of the key", "table", sp.QualifiedTable(), "key", ss.key)
		} else {
			snap.src.log.Info("the snapshot reads each day by its time column: with no single integer key and no index leading with the time column, each day's read may scan the whole table",
				"table", sp.QualifiedTable(), "time_column", sp.Time)
		}
		snap.specs = append(snap.specs, ss)
	}
	return nil
}

// keyRange is the least and greatest primary key of the table's rows in
// [from, to), read from the time column's index alone (it holds the key).
// The chunk's rows are then read as that range of the clustered index:
// a range of the time index alone makes InnoDB look each row up by its
// key, which its optimizer prices above scanning the whole table, so
// every day's SELECT read every row (measured on 23 M payments: 9.6 s a
// day; the key range 1.3 s). Where keys grow with time, as
// auto-increment ids do, the range holds little but the day; where they
// do not, it is no worse than the scan it replaces. ok is false when the
// table has no rows in the chunk.
func (snap *Snapshot) keyRange(ss *snapSpec, from, to string) (lo, hi string, ok bool, err error) {
	k := quote(ss.key)
	tc := quote(ss.spec.Time)
	r, err := snap.conn.Execute(fmt.Sprintf("SELECT CAST(MIN(%s) AS CHAR), CAST(MAX(%s) AS CHAR) FROM %s WHERE %s >= %s AND %s < %s",
		k, k, tableName(ss.spec.Schema, ss.spec.Table), tc, from, tc, to))
	if err != nil {
		return "", "", false, fmt.Errorf("reading the key range of %s: %w", ss.spec.QualifiedTable(), err)
	}
	if r.RowNumber() == 0 {
		return "", "", false, nil
	}
	if v, _ := r.GetValue(0, 0); v == nil {
		return "", "", false, nil
	}
	lo, _ = r.GetString(0, 0)
	hi, _ = r.GetString(0, 1)
	for _, s := range []string{lo, hi} {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			if _, err := strconv.ParseUint(s, 10, 64); err != nil {
				return "", "", false, fmt.Errorf("the key range of %s: %q is not an integer", ss.spec.QualifiedTable(), s)
			}
		}
	}
	return lo, hi, true, nil
}

// Days splits the retention into business days of loc, as the PostgreSQL
// source does: one chunk per day, whose rollups the loader writes whole.
func (snap *Snapshot) Days(loc *time.Location) []bootstrap.Chunk {
	from, to := snap.bounds()
	var out []bootstrap.Chunk
	for a := from; a.Before(to); {
		l := a.In(loc)
		b := time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, loc).UTC()
		if b.After(to) {
			b = to
		}
		out = append(out, bootstrap.Chunk{From: a, To: b})
		a = b
	}
	snap.days = out
	return out
}

// bounds is the span of transaction times that can be events at the
// snapshot: the retention before it to max_future after it.
func (snap *Snapshot) bounds() (time.Time, time.Time) {
	lim := snap.src.opts.Mapping.Limits()
	return snap.at.Add(-lim.Retention), snap.at.Add(lim.MaxFuture).Add(time.Microsecond)
}

// literal is t as the time column of kind k compares with it: UTC for
// TIMESTAMP (the session's zone), the wall clock in source.time_zone for
// DATETIME.
func (snap *Snapshot) literal(t time.Time, k timeKind) string {
	if k == wall {
		t = t.In(snap.src.opts.TimeZone)
	} else {
		t = t.UTC()
	}
	return "'" + t.Format("2006-01-02 15:04:05.000000") + "'"
}

// sums is one merchant's in a minute (its minuteSums says which):
// counts, and amounts wide enough that no sum of valid amounts wraps (the
// loader leaves out what does not fit).
type sums struct {
	merchant   int64
	a, c       int64
	aaHi, aaLo uint64
	caHi, caLo uint64
}

// Aggregate reads the chunks' rows, maps them and writes their minute sums.
// While one chunk's sums go to the sink, the next chunk of Days is read
// ahead: reading keeps the source server busy and writing the sink, and
// one after the other each would wait for the other (measured: a third of
// the first start).
func (snap *Snapshot) Aggregate(ctx context.Context, chunks []bootstrap.Chunk, w bootstrap.MinuteWriter, done func()) error {
	for _, c := range chunks {
		cs, err := snap.take(ctx, c)
		if err != nil {
			return fmt.Errorf("aggregating snapshot %s..%s: %w", c.From.Format(time.RFC3339), c.To.Format(time.RFC3339), err)
		}
		snap.dead = append(snap.dead, cs.dead...)
		snap.spilled = append(snap.spilled, cs.spilled...)
		if i := slices.Index(snap.days, c); i >= 0 && i+1 < len(snap.days) {
			snap.readAhead(snap.days[i+1])
		}
		err = cs.write(w)
		snap.spare = cs
		if err != nil {
			return err
		}
		done()
	}
	return nil
}

// chunkSums is one chunk's sums, dead letters and spilled events. The
// sums are kept a table per minute of the chunk, each numbering its
// merchants: a table of one minute's merchants stays in the processor's
// cache while the rows of that minute arrive together, where one table of
// the whole day's merchant-minutes missed it on nearly every row
// (measured: map lookups were a quarter of a first start's CPU). All of
// it is reused from chunk to chunk.
type chunkSums struct {
	base    window.Minute
	minutes []minuteSums
	dead    []event.DeadLetter
	spilled []event.Event
}

// minuteSums is one minute's sums, the map numbering the merchants and
// the slice holding them, so that writing them out needs no lookups.
type minuteSums struct {
	index map[int64]int32
	acc   []sums
}

// add counts ev, which lies in the chunk cs was reset to.
func (cs *chunkSums) add(ev *event.Event) {
	m := window.MinuteOfMicros(ev.TimeUS)
	i := int(m - cs.base)
	if i >= len(cs.minutes) {
		cs.minutes = slices.Grow(cs.minutes, i+1-len(cs.minutes))[:i+1]
	}
	ms := &cs.minutes[i]
	if ms.index == nil {
		ms.index = make(map[int64]int32)
	}
	j, ok := ms.index[ev.Merchant]
	if !ok {
		j = int32(len(ms.acc))
		ms.index[ev.Merchant] = j
		ms.acc = append(ms.acc, sums{merchant: ev.Merchant})
	}
	x := &ms.acc[j]
	var carry uint64
	if ev.Kind == event.Approval {
		x.a++
		x.aaLo, carry = bits.Add64(x.aaLo, uint64(ev.Amount), 0)
		x.aaHi += carry
	} else {
		x.c++
		x.caLo, carry = bits.Add64(x.caLo, uint64(ev.Amount), 0)
		x.caHi += carry
	}
}

// reset empties cs for the chunk starting at from, keeping what it
// allocated.
func (cs *chunkSums) reset(from time.Time) {
	cs.base = window.MinuteOf(from)
	for i := range cs.minutes {
		clear(cs.minutes[i].index)
		cs.minutes[i].acc = cs.minutes[i].acc[:0]
	}
	cs.minutes = cs.minutes[:0]
	cs.dead, cs.spilled = nil, nil
}

// chunkRead is a chunk being read ahead.
type chunkRead struct {
	chunk bootstrap.Chunk
	done  chan struct{}
	sums  *chunkSums
	err   error
}

// take returns c's sums: those read ahead when they are c's, else read
// now.
func (snap *Snapshot) take(ctx context.Context, c bootstrap.Chunk) (*chunkSums, error) {
	if r := snap.ahead; r != nil {
		snap.ahead = nil
		<-r.done
		if r.chunk == c || r.err != nil {
			return r.sums, r.err
		}
		snap.spare = r.sums
	}
	cs := snap.spareSums(c)
	return cs, snap.readChunk(ctx, c, cs)
}

// readAhead starts reading c on the snapshot's connection, which nothing
// else uses until take collects it (or Snapshot ends and waits for it).
func (snap *Snapshot) readAhead(c bootstrap.Chunk) {
	r := &chunkRead{chunk: c, done: make(chan struct{}), sums: snap.spareSums(c)}
	snap.ahead = r
	go func() {
		defer close(r.done)
		r.err = snap.readChunk(snap.ctx, c, r.sums)
	}()
}

// waitAhead waits for a read ahead that nothing collected, which frees
// the connection.
func (snap *Snapshot) waitAhead() {
	if r := snap.ahead; r != nil {
		snap.ahead = nil
		<-r.done
	}
}

// spareSums is a chunkSums reset for c.
func (snap *Snapshot) spareSums(c bootstrap.Chunk) *chunkSums {
	cs := snap.spare
	snap.spare = nil
	if cs == nil {
		cs = &chunkSums{}
	}
	cs.reset(c.From)
	return cs
}

// readChunk reads c's rows of every mapped table into cs.
func (snap *Snapshot) readChunk(ctx context.Context, c bootstrap.Chunk, cs *chunkSums) error {
	from, to := c.From.UnixMicro(), c.To.UnixMicro()
	for i := range snap.specs {
		ss := &snap.specs[i]
		a, b := snap.literal(c.From, ss.kind), snap.literal(c.To, ss.kind)
		q := fmt.Sprintf("SELECT %s FROM %s WHERE %s >= %s AND %s < %s", selectList(ss.cols), tableName(ss.spec.Schema, ss.spec.Table),
			quote(ss.spec.Time), a, quote(ss.spec.Time), b)
		if ss.key != "" {
			lo, hi, ok, err := snap.keyRange(ss, a, b)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			q = fmt.Sprintf("SELECT %s FROM %s FORCE INDEX (PRIMARY) WHERE %s BETWEEN %s AND %s AND %s >= %s AND %s < %s", selectList(ss.cols),
				tableName(ss.spec.Schema, ss.spec.Table), quote(ss.key), lo, hi, quote(ss.spec.Time), a, quote(ss.spec.Time), b)
		}
		err := snap.mapRows(ctx, ss, q, func(out *event.Output) {
			for i := range out.Events {
				ev := &out.Events[i]
				if ev.TimeUS < from || ev.TimeUS >= to {
					cs.spilled = append(cs.spilled, *ev)
					continue
				}
				cs.add(ev)
			}
			cs.dead = append(cs.dead, out.DeadLetters...)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// write hands the sums to the loader as numbers, minute by minute, so that
// a minute's rows share the sink's pages as the live stream's do. Within
// a minute they stay in the order their merchants came: the sink indexes
// the table by sorting it afterwards either way. An amount's sum past
// int64 is left to the loader's overflow path, as the text of it was.
func (cs *chunkSums) write(w bootstrap.MinuteWriter) error {
	for i, ms := range cs.minutes {
		m := cs.base + window.Minute(i)
		for j := range ms.acc {
			x := &ms.acc[j]
			if x.aaHi != 0 || x.caHi != 0 || x.aaLo > math.MaxInt64 || x.caLo > math.MaxInt64 {
				w.Overflow(x.merchant, m)
				continue
			}
			if err := w.Sums(x.merchant, m, window.Agg{Approvals: x.a, ApprovedAmount: int64(x.aaLo), Cancels: x.c, CanceledAmount: int64(x.caLo)}); err != nil {
				return err
			}
		}
	}
	return nil
}

func selectList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quote(c)
	}
	return strings.Join(q, ", ")
}

// mapRows streams q's rows through the spec's mapping, handing each batch
// of output to each.
func (snap *Snapshot) mapRows(ctx context.Context, ss *snapSpec, q string, each func(*event.Output)) error {
	commitUS := snap.at.UnixMicro()
	loc := snap.src.opts.TimeZone
	var out event.Output
	row := make([]any, len(ss.cols))
	var res mysql.Result
	err := snap.conn.ExecuteSelectStreaming(q, &res, func(vals []mysql.FieldValue) error {
		for i := range vals {
			row[i] = fieldValue(&vals[i], i == ss.timeAt, ss.kind, loc)
		}
		ss.table.Map(row, commitUS, &out)
		if len(out.Events)+len(out.DeadLetters) >= 4096 {
			each(&out)
			out.Reset()
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if err != nil {
		return err
	}
	each(&out)
	return nil
}

// fieldValue converts a result value as the binlog decoder's would be.
func fieldValue(v *mysql.FieldValue, isTime bool, k timeKind, loc *time.Location) any {
	switch v.Type {
	case mysql.FieldValueTypeNull:
		return nil
	case mysql.FieldValueTypeSigned:
		return v.AsInt64()
	case mysql.FieldValueTypeUnsigned:
		return v.AsUint64()
	case mysql.FieldValueTypeFloat:
		return v.AsFloat64()
	}
	s := string(v.AsString())
	if isTime {
		return instant(s, k, loc)
	}
	return s
}

// Leftovers maps what the aggregation left out: the rows it found invalid
// (their dead letters), events whose minute fell outside their chunk,
// rows whose time lies outside every chunk or is NULL, and the rows of the
// merchant-minutes whose sums did not fit.
func (snap *Snapshot) Leftovers(ctx context.Context, overflow []window.Key, each func(*event.Output) error) error {
	// Not collected by Aggregate: its connection is needed here.
	snap.waitAhead()
	var out event.Output
	for len(snap.dead) > 0 || len(snap.spilled) > 0 {
		n := min(len(snap.dead), 4096)
		out.DeadLetters = append(out.DeadLetters[:0], snap.dead[:n]...)
		snap.dead = snap.dead[n:]
		k := min(len(snap.spilled), 4096)
		out.Events = append(out.Events[:0], snap.spilled[:k]...)
		snap.spilled = snap.spilled[k:]
		if err := each(&out); err != nil {
			return err
		}
	}
	from, to := snap.bounds()
	for i := range snap.specs {
		ss := &snap.specs[i]
		tc := quote(ss.spec.Time)
		q := fmt.Sprintf("SELECT %s FROM %s WHERE %s IS NULL OR %s < %s OR %s >= %s", selectList(ss.cols), tableName(ss.spec.Schema, ss.spec.Table),
			tc, tc, snap.literal(from, ss.kind), tc, snap.literal(to, ss.kind))
		var failed error
		if err := snap.mapRows(ctx, ss, q, func(o *event.Output) {
			if failed == nil {
				failed = each(o)
			}
		}); err != nil {
			return fmt.Errorf("reading rows of %s outside the retention: %w", ss.spec.QualifiedTable(), err)
		}
		if failed != nil {
			return failed
		}
		for _, k := range overflow {
			q := fmt.Sprintf("SELECT %s FROM %s WHERE %s = %d AND %s >= %s AND %s < %s", selectList(ss.cols), tableName(ss.spec.Schema, ss.spec.Table),
				quote(ss.spec.Merchant), k.Merchant, tc, snap.literal(k.Minute.Start(), ss.kind), tc, snap.literal(k.Minute.End(), ss.kind))
			// Only the events: the rows' dead letters were recorded when
			// the chunk was read.
			if err := snap.mapRows(ctx, ss, q, func(o *event.Output) {
				if failed == nil && len(o.Events) > 0 {
					failed = each(&event.Output{Events: o.Events})
				}
			}); err != nil {
				return fmt.Errorf("reading the rows of merchant %d at %s: %w", k.Merchant, k.Minute, err)
			}
			if failed != nil {
				return failed
			}
		}
	}
	return nil
}
