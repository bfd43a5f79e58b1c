package binlog

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/source"
)

// tracker shares what the stream and the heartbeat saw with the engine.
type tracker struct {
	lastTxn atomic.Int64 // engine clock, Unix microseconds
	txns    atomic.Int64 // transactions delivered with rows of mapped tables
	mu      sync.Mutex
	files   []logFile
	// serverUS is the server's clock when heardAt (engine clock) was.
	serverUS, heardAtUS int64
	heard               bool
}

func (t *tracker) polled(files []logFile, server, heard time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.files, t.serverUS, t.heardAtUS, t.heard = files, server.UnixMicro(), heard.UnixMicro(), true
}

// Quiet reports whether no transaction has arrived for d.
func (s *Source) Quiet(now time.Time, d time.Duration) bool {
	return now.UnixMicro()-s.tracker.lastTxn.Load() >= d.Microseconds()
}

// Lag is how many bytes of the server's binlog lie after applied, and the
// server's clock now; ok is false until the server has been heard.
func (s *Source) Lag(now time.Time, applied string) (int64, time.Time, bool) {
	t := &s.tracker
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.heard {
		return 0, time.Time{}, false
	}
	serverNow := time.UnixMicro(t.serverUS + now.UnixMicro() - t.heardAtUS)
	p, err := ParsePosition(applied)
	if err != nil {
		return 0, serverNow, true
	}
	n, _ := behind(p, t.files)
	return n, serverNow, true
}

// Heartbeat writes this engine's heartbeat row every heartbeat interval
// (a quarter of it while the stream is busy, see busyTPS) and just after
// each minute's end + grace, and reads the server's binlog files and
// clock about once a second for the lag. Unlike PostgreSQL's, it writes
// whether or not the tables are quiet: see below.
func (s *Source) Heartbeat(ctx context.Context, _ func(time.Duration) bool) error {
	tick := max(s.opts.HeartbeatInterval/busyBeats, time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	boundary := time.NewTimer(s.untilBoundary())
	defer boundary.Stop()
	var conn *client.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var lastPoll, lastLog time.Time
	fail := func(err error) {
		if conn != nil {
			conn.Close()
			conn = nil
		}
		if ctx.Err() != nil {
			return
		}
		s.opts.Metrics.HeartbeatFailed()
		if s.now().Sub(lastLog) > 30*time.Second {
			s.log.Warn("heartbeat failed", "err", err)
			lastLog = s.now()
		}
	}
	// One statement, not a prepared one (three round trips), since it
	// runs up to twenty times a second.
	slot := strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s.opts.Slot)
	beat := fmt.Sprintf("INSERT INTO %s (slot, at_us) VALUES ('%s', CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)) ON DUPLICATE KEY UPDATE at_us = VALUES(at_us)",
		quote(HeartbeatTable), slot)
	ticks := 0
	var tickTxns int64
	for {
		write := false
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// Under load too: the binlog gives MariaDB's commit times in
			// whole seconds, and each heartbeat's microsecond server clock
			// is a tighter lower bound for every commit after it. Load is
			// judged tick by tick, so that the first commits of a burst
			// after a quiet spell are bounded as tightly as the rest.
			ticks++
			n := s.tracker.txns.Load()
			write = busyTick(n-tickTxns, tick) || ticks%busyBeats == 0
			tickTxns = n
		case <-boundary.C:
			boundary.Reset(s.untilBoundary())
			write = true
		}
		poll := s.now().Sub(lastPoll) >= time.Second
		if !write && !poll {
			continue
		}
		if conn == nil {
			var err error
			if conn, err = s.connect(ctx); err != nil {
				fail(err)
				continue
			}
		}
		if write {
			if _, err := conn.Execute(beat); err != nil {
				fail(fmt.Errorf("writing the heartbeat row: %w", err))
				continue
			}
			s.opts.Metrics.Heartbeat()
		}
		if poll {
			files, err := binaryLogs(conn)
			if err != nil {
				fail(err)
				continue
			}
			now, err := serverNow(conn)
			if err != nil {
				fail(err)
				continue
			}
			lastPoll = s.now()
			s.tracker.polled(files, now, lastPoll)
		}
	}
}

// While more than busyTPS transactions a second stream in, the heartbeat
// is written busyBeats times as often (every 50 ms by default). Each
// commit's time is known only to the newest heartbeat before it (the
// binlog's own is a whole second), so between two heartbeats the commit →
// aggregate latency reads up to a heartbeat interval too long and the
// minute clock trails by as much; under load twenty one-row writes a
// second are lost among the thousands, while on a quiet source they would
// be most of its writes. Fifty (every 20 ms) took 15 ms off the median
// commit → aggregate at 5,000 TPS but not its p99, and cost the engine
// about 0.01 core of its 0.15.
const (
	busyTPS   = 100
	busyBeats = 4
)

// busyTick reports whether txns transactions of the gateway's own (the
// heartbeat's are not counted: they would keep it busy) read in one tick
// are more than busyTPS a second.
func busyTick(txns int64, tick time.Duration) bool {
	return float64(txns) >= busyTPS*tick.Seconds()
}

// untilBoundary is how long until the next minute's end + grace (and 5 ms)
// on the engine's clock.
func (s *Source) untilBoundary() time.Duration {
	now := s.now()
	at := now.Truncate(time.Minute).Add(s.opts.Grace + 5*time.Millisecond)
	for !at.After(now) {
		at = at.Add(time.Minute)
	}
	return at.Sub(now)
}

// Deliver streams every transaction committed after start to out, whole
// and in commit order, until ctx ends or the connection fails (the engine
// then restarts it from the sink's checkpoint). Nothing is confirmed to
// the server: the position lives in the sink.
func (s *Source) Deliver(ctx context.Context, start string, _ func() string, out chan<- *source.Txn, live func()) error {
	p, err := ParsePosition(start)
	if err != nil {
		return permanent("the sink's checkpoint %q is not a binlog position (run riskwatch slot drop): %w", start, err)
	}
	if s.flavor == "" {
		conn, err := s.connect(ctx)
		if err != nil {
			return err
		}
		err = s.detect(conn)
		conn.Close()
		if err != nil {
			return err
		}
	}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: s.opts.ServerID, Flavor: s.flavor, Host: s.dsn.host, Port: s.dsn.port, User: s.dsn.user, Password: s.dsn.password,
		TimestampStringLocation: time.UTC, UseDecimal: true,
		// The server sends a heartbeat every second when it has nothing
		// else; silence is watched below rather than with a read deadline,
		// which go-mysql would set on every packet (6% of the engine's CPU
		// at 5,000 TPS).
		HeartbeatPeriod: time.Second,
		// MariaDB's GTID position is kept by the stream itself (by
		// domain); cloning the syncer's set at every commit is garbage.
		DiscardGTIDSet: s.flavor == mysql.MariaDBFlavor,
		// A broken connection ends the session; the engine resumes from
		// what the sink holds, so nothing is applied twice or skipped.
		DisableRetrySync: true,
		// The replication connection's handshake is bounded like every
		// other; its deadline is lifted before the dump starts. The
		// connection go-mysql opens to KILL the dump thread when it closes
		// keeps its deadline, so closing never hangs on a silent server.
		// Reads gather events (see gatherReads).
		Dialer: dialGathering,
		Option: func(c *client.Conn) error { return c.SetDeadline(time.Time{}) },
		Logger: s.log.With("component", "binlog").WithGroup("go-mysql"),
	})
	defer syncer.Close()
	var streamer *replication.BinlogStreamer
	if p.GTID != "" {
		set, err := mysql.ParseGTIDSet(s.flavor, p.GTID)
		if err != nil {
			return permanent("the checkpoint's GTID set %q: %w", p.GTID, err)
		}
		streamer, err = syncer.StartSyncGTID(set)
		if err != nil {
			return fmt.Errorf("starting replication at %s: %w", p, err)
		}
	} else if streamer, err = syncer.StartSync(mysql.Position{Name: p.File, Pos: p.Pos}); err != nil {
		return fmt.Errorf("starting replication at %s: %w", p, err)
	}
	s.log.Info("streaming", "from", p.String(), "server_id", s.opts.ServerID, "flavor", s.flavor)
	st := &streamState{src: s, file: p.File, gtid: p.GTID, tables: map[uint64]*boundTable{}}
	if s.flavor == mysql.MariaDBFlavor {
		st.domains = mariadbDomains(p.GTID)
	}
	once := false
	// A connection that stays silent past a few heartbeats is dead (a
	// half-open TCP connection never errors by itself). Only time spent
	// waiting for the server counts: while the engine holds the stream
	// back, nothing is read.
	watched, cancel := context.WithCancel(ctx)
	defer cancel()
	var waiting atomic.Int64 // since when GetEvent waits (engine clock µs); 0: not waiting
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-watched.Done():
				return
			case <-t.C:
				if w := waiting.Load(); w != 0 && s.now().UnixMicro()-w > silentFor.Microseconds() {
					cancel()
					return
				}
			}
		}
	}()
	for {
		waiting.Store(s.now().UnixMicro())
		ev, err := streamer.GetEvent(watched)
		waiting.Store(0)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case watched.Err() != nil:
				return fmt.Errorf("reading the binlog after %s: nothing from the server for %s although it sends a heartbeat every second", st.position(), silentFor)
			}
			return fmt.Errorf("reading the binlog after %s: %w", st.position(), err)
		}
		if !once {
			once = true
			live()
		}
		txn, err := st.handle(ev)
		if err != nil {
			return err
		}
		if txn != nil {
			s.tracker.lastTxn.Store(s.now().UnixMicro())
			if len(txn.Events) > 0 || len(txn.DeadLetters) > 0 || txn.Filtered > 0 {
				s.tracker.txns.Add(1)
			}
			select {
			case out <- txn:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// silentFor is how long the stream waits for any event, heartbeats
// included, before it takes the connection for dead.
const silentFor = 10 * time.Second

// streamState assembles transactions from the binlog's events.
type streamState struct {
	src  *Source
	file string
	pos  uint32
	gtid string
	// domains is MariaDB's GTID position by replication domain.
	domains map[string]string
	// pendingGTID is the MariaDB GTID of the transaction being read.
	pendingGTID string
	tables      map[uint64]*boundTable
	cur         *source.Txn
	// commitUS is the transaction's commit time as far as known.
	commitUS int64
	// lastBeatUS is the server clock of the newest heartbeat row read: a
	// lower bound of the commit time of everything after it.
	lastBeatUS int64
}

// boundTable is a table map event bound to the mapping.
type boundTable struct {
	schema, table string
	names         []string
	kinds         []timeKind
	// labels are an ENUM or SET column's values (nil for other columns):
	// the binlog carries an ENUM's index and a SET's bits, and a mapping
	// filter compares the labels, as the snapshot reads them.
	labels    [][]string
	isSet     []bool
	mapped    *event.TypedTable
	heartbeat int // column of at_us in the heartbeat table, else -1
}

func (st *streamState) position() Position {
	return Position{File: st.file, Pos: st.pos, GTID: st.gtid}
}

func (st *streamState) begin() {
	if st.cur == nil {
		st.cur = &source.Txn{}
		st.commitUS = 0
	}
}

// handle takes one event; it returns the transaction it ends, if any.
func (st *streamState) handle(ev *replication.BinlogEvent) (*source.Txn, error) {
	h := ev.Header
	if h.LogPos > 0 {
		st.pos = h.LogPos
	}
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		st.file, st.pos = string(e.NextLogName), uint32(e.Position)
	case *replication.MariadbGTIDEvent:
		st.begin()
		st.pendingGTID = mariadbGTID(e.GTID)
		if e.IsStandalone() {
			// A DDL: one query, no COMMIT of its own.
			st.cur.CommitUS = int64(h.Timestamp) * 1e6
		}
	case *replication.GTIDEvent:
		st.begin()
		if e.ImmediateCommitTimestamp > 0 {
			st.commitUS = int64(e.ImmediateCommitTimestamp)
		}
	case *replication.TableMapEvent:
		if err := st.bind(e); err != nil {
			return nil, err
		}
	case *replication.RowsEvent:
		st.begin()
		return nil, st.rows(h.EventType, e)
	case *replication.QueryEvent:
		q := strings.TrimSpace(string(e.Query))
		switch {
		case strings.EqualFold(q, "BEGIN"):
			st.begin()
			return nil, nil
		case strings.EqualFold(q, "COMMIT"):
			return st.end(h, e.GSet), nil
		}
		st.query(string(e.Schema), q)
		// Any other statement outside a row transaction (DDL) is a
		// transaction of its own.
		st.begin()
		return st.end(h, e.GSet), nil
	case *replication.XIDEvent:
		return st.end(h, e.GSet), nil
	}
	return nil, nil
}

// end closes the current transaction at the event h ends.
func (st *streamState) end(h *replication.EventHeader, gset mysql.GTIDSet) *source.Txn {
	st.begin()
	txn := st.cur
	st.cur = nil
	if st.pendingGTID != "" && st.domains != nil {
		if d, _, ok := strings.Cut(st.pendingGTID, "-"); ok {
			st.domains[d] = st.pendingGTID
		}
		st.gtid = joinDomains(st.domains)
		st.pendingGTID = ""
	} else if gset != nil {
		st.gtid = strings.ReplaceAll(gset.String(), "\n", "")
	}
	// Every bound known: the header's second, the transaction's own
	// (MySQL's GTID event, a heartbeat row in it), and the newest
	// heartbeat before it, which committed earlier.
	txn.CommitUS = max(txn.CommitUS, st.commitUS, int64(h.Timestamp)*1e6, st.lastBeatUS)
	st.lastBeatUS = max(st.lastBeatUS, st.commitUS)
	txn.End = st.position()
	txn.ReceivedAt = st.src.now()
	end := txn.End.String()
	for i := range txn.DeadLetters {
		txn.DeadLetters[i].Position = end
		txn.DeadLetters[i].CommitTime = time.UnixMicro(txn.CommitUS).UTC()
	}
	return txn
}

// mariadbGTID is g as domain-server-sequence, as MariadbGTID.String
// writes it but without fmt (once per transaction).
func mariadbGTID(g mysql.MariadbGTID) string {
	if g == (mysql.MariadbGTID{}) {
		return ""
	}
	b := make([]byte, 0, 32)
	b = strconv.AppendUint(b, uint64(g.DomainID), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(g.ServerID), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, g.SequenceNumber, 10)
	return string(b)
}

// mariadbDomains splits a MariaDB GTID position by domain.
func mariadbDomains(s string) map[string]string {
	out := map[string]string{}
	for _, g := range strings.Split(s, ",") {
		g = strings.TrimSpace(g)
		if d, _, ok := strings.Cut(g, "-"); ok {
			out[d] = g
		}
	}
	return out
}

func joinDomains(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = m[k]
	}
	return strings.Join(parts, ",")
}

// bind binds a table map event, reusing the binding while the table's
// columns stay the same (a table map precedes every row event).
func (st *streamState) bind(e *replication.TableMapEvent) error {
	names := e.ColumnNameString()
	if b := st.tables[e.TableID]; b != nil && b.schema == string(e.Schema) && b.table == string(e.Table) && slices.Equal(b.names, names) {
		return nil
	}
	b := &boundTable{schema: string(e.Schema), table: string(e.Table), names: names, heartbeat: -1}
	b.kinds = make([]timeKind, len(e.ColumnType))
	for i, tp := range e.ColumnType {
		b.kinds[i] = kindOf(tp)
	}
	b.labels, b.isSet = enumLabels(e)
	if b.schema == st.src.dsn.db && b.table == HeartbeatTable {
		b.heartbeat = slices.Index(names, "at_us")
	}
	if isMapped(st.src.opts.Mapping, b.schema, b.table) {
		if len(names) == 0 {
			return permanent("row events of %s.%s carry no column names: set binlog_row_metadata=FULL on the source server", b.schema, b.table)
		}
		t, err := st.src.opts.Mapping.BindTyped(b.schema, b.table, names)
		if err != nil {
			return permanent("the source table changed so that the mapping no longer fits: %w", err)
		}
		b.mapped = t
	}
	st.tables[e.TableID] = b
	return nil
}

func isMapped(m *event.Mapping, schema, table string) bool {
	for _, t := range m.Tables() {
		if t[0] == schema && t[1] == table {
			return true
		}
	}
	return false
}

// rows maps a row event's rows: inserts become events, updates and
// deletes of mapped tables are counted as ignored changes; the heartbeat
// table's rows give the server's clock at their commit.
func (st *streamState) rows(tp replication.EventType, e *replication.RowsEvent) error {
	b := st.tables[e.TableID]
	if b == nil || (b.mapped == nil && b.heartbeat < 0) {
		return nil
	}
	op := rowsOp(tp)
	if b.heartbeat >= 0 {
		for i, r := range e.Rows {
			if op == "update" && i%2 == 0 {
				continue // the before image
			}
			if v, ok := r[b.heartbeat].(int64); ok && op != "delete" {
				st.commitUS = max(st.commitUS, v)
			}
		}
		return nil
	}
	if op != "insert" {
		n := len(e.Rows)
		if op == "update" {
			n /= 2
		}
		for range n {
			st.src.opts.Metrics.Ignored(b.mapped.Name(), op)
		}
		return nil
	}
	loc := st.src.opts.TimeZone
	// Rows are mapped at commit time (the transaction's end), which the
	// binlog gives only at its end; the header's second is a lower bound.
	commitUS := max(st.commitUS, st.cur.CommitUS)
	if commitUS == 0 {
		commitUS = st.src.now().UnixMicro()
	}
	row := make([]any, len(b.names))
	for _, r := range e.Rows {
		for i := range row {
			if i < len(r) {
				row[i] = typed(b.label(i, r[i]), b.kinds[i], loc)
			} else {
				row[i] = nil
			}
		}
		events, filtered := len(st.cur.Events), st.cur.Filtered
		b.mapped.Map(row, commitUS, &st.cur.Output)
		if st.src.opts.Rows && st.cur.Filtered == filtered {
			st.keepRow(b, e.Table, r, events)
		}
	}
	return nil
}

func rowsOp(tp replication.EventType) string {
	switch tp {
	case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2, replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1:
		return "insert"
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1,
		replication.PARTIAL_UPDATE_ROWS_EVENT:
		return "update"
	}
	return "delete"
}

var truncateRE = regexp.MustCompile("(?i)^TRUNCATE\\s+(?:TABLE\\s+)?`?([^`.\\s]+)`?(?:\\.`?([^`\\s]+)`?)?")

// query counts a TRUNCATE of a mapped table as an ignored change and logs
// a DDL that touches one.
func (st *streamState) query(schema, q string) {
	if m := truncateRE.FindStringSubmatch(q); m != nil {
		db, table := schema, m[1]
		if m[2] != "" {
			db, table = m[1], m[2]
		}
		if isMapped(st.src.opts.Mapping, db, table) {
			st.src.opts.Metrics.Ignored(db+"."+table, "truncate")
		}
		return
	}
	for _, t := range st.src.opts.Mapping.Tables() {
		if strings.Contains(q, t[1]) && (t[0] == schema || strings.Contains(q, t[0])) {
			st.src.log.Info("DDL on a mapped table; its rows are decoded with the columns each row event carries", "table", t[0]+"."+t[1],
				"statement", event.Printable(q, 200))
			return
		}
	}
}

// enumLabels reads the ENUM and SET columns' values from a table map's
// full metadata.
func enumLabels(e *replication.TableMapEvent) ([][]string, []bool) {
	enums, sets := e.EnumStrValueString(), e.SetStrValueString()
	if len(enums) == 0 && len(sets) == 0 {
		return nil, nil
	}
	labels, isSet := make([][]string, len(e.ColumnType)), make([]bool, len(e.ColumnType))
	for i := range e.ColumnType {
		switch {
		case e.IsEnumColumn(i) && len(enums) > 0:
			labels[i], enums = enums[0], enums[1:]
		case e.IsSetColumn(i) && len(sets) > 0:
			labels[i], sets, isSet[i] = sets[0], sets[1:], true
		}
	}
	return labels, isSet
}

// label is column i's value as its label when it is an ENUM (1-based
// index; 0 is MySQL's ” for an invalid value) or a SET (bits, labels
// joined by commas, in definition order), else v.
func (b *boundTable) label(i int, v any) any {
	if i >= len(b.labels) || b.labels[i] == nil {
		return v
	}
	n, ok := v.(int64)
	if !ok {
		return v
	}
	names := b.labels[i]
	if !b.isSet[i] {
		if n >= 1 && int(n) <= len(names) {
			return names[n-1]
		}
		return ""
	}
	var parts []string
	for j, name := range names {
		if n&(1<<j) != 0 {
			parts = append(parts, name)
		}
	}
	return strings.Join(parts, ",")
}
