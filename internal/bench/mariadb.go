package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/riskwatch/riskwatch/internal/binlog"
	"github.com/riskwatch/riskwatch/internal/mysqlserver"
)

// engineUser is the account riskwatch reads the MariaDB source with. It
// has only the privileges the README lists, and it is how the engine's
// connections are told apart from the simulator's and the bench's (root)
// on the server.
const engineUser = "riskwatch"

// mariaSource is a private MariaDB as the transaction database, read
// through its row-based binlog; the sink is a private PostgreSQL.
//
// Every connection of MariaDB is a thread of mariadbd (one thread per
// connection, the default): its CPU is read from
// /proc/<mariadbd>/task/<THREAD_OS_ID>/stat, the thread found in
// performance_schema.threads. The thread cache is turned off, so that a
// thread never carries another connection's CPU into the one measured.
type mariaSource struct {
	srv      *mysqlserver.Server
	opts     mysqlserver.Options
	password string // engineUser's
	res      *MariaDB
}

// mariaOptions size the server as scripts/demo.sh does at full scale
// (a 1 GiB buffer pool), the redo log large enough that loading the
// history does not stall on checkpoints; the quick run's data is a tenth.
func mariaOptions(quick bool) mysqlserver.Options {
	if quick {
		return mysqlserver.Options{BufferPoolSize: 256 << 20, LogFileSize: 128 << 20, PerformanceSchema: true}
	}
	return mysqlserver.Options{BufferPoolSize: 1 << 30, LogFileSize: 512 << 20, PerformanceSchema: true}
}

func (s *mariaSource) start(ctx context.Context, r *runner) error {
	s.res = r.res.MariaDB
	s.opts = mariaOptions(r.opts.Quick)
	srv, err := mysqlserver.Start(ctx, s.opts)
	if err != nil {
		return err
	}
	s.srv = srv
	s.password = rand.Text()
	s.res.Server = fmt.Sprintf("private mariadbd: binlog ROW, row image and metadata FULL, innodb_buffer_pool_size %d MiB, innodb_log_file_size %d MiB, "+
		"innodb_flush_log_at_trx_commit 2, sync_binlog 0, performance_schema ON, thread_cache_size 0", s.opts.BufferPoolSize>>20, s.opts.LogFileSize>>20)
	account := engineUser + "@'%'"
	for _, stmt := range []string{
		"SET GLOBAL thread_cache_size = 0",
		"CREATE DATABASE payments",
		"CREATE USER " + account + " IDENTIFIED BY '" + s.password + "'",
		"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO " + account,
		"GRANT SELECT ON payments.* TO " + account,
		fmt.Sprintf("GRANT CREATE, INSERT, UPDATE ON payments.%s TO %s", binlog.HeartbeatTable, account),
	} {
		if err := srv.Exec(ctx, "", stmt); err != nil {
			verb, _, _ := strings.Cut(stmt, " IDENTIFIED")
			return fmt.Errorf("preparing the source (%s): %w", verb, err)
		}
	}
	return nil
}

func (s *mariaSource) close() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}

func (s *mariaSource) simDSN() string { return s.srv.DSN("payments") }

func (s *mariaSource) engineDSN() string {
	return fmt.Sprintf("mysql://%s:%s@%s/payments", engineUser, url.PathEscape(s.password), s.srv.Addr())
}

func (s *mariaSource) machine(ctx context.Context, m *Machine) {
	if v, err := s.value(ctx, "SELECT VERSION()"); err == nil {
		m.MariaDB = "MariaDB " + v
	}
}

func (s *mariaSource) slots(res *Results) slots {
	m := res.MariaDB
	return slots{
		peakReaderCores:     &m.DumpThreadCores,
		catchUpFloorSeconds: &m.BinlogReadSeconds, catchUpFloorRate: &m.BinlogReadEventsPerS,
		averageReaderCPU: &m.DumpThreadCPU,
		streamFloors:     []floorSlot{{&m.FloorDumpThreadCPU, &m.FloorRatio}},
		logBytesPerMin:   &m.BinlogBytesPerMin,
	}
}

// query runs one statement as root in the payments database.
func (s *mariaSource) query(ctx context.Context, sql string, args ...any) (*mysql.Result, error) {
	return s.srv.Query(ctx, "payments", sql, args...)
}

// value is the first column of the first row of sql, as text.
func (s *mariaSource) value(ctx context.Context, sql string, args ...any) (string, error) {
	r, err := s.query(ctx, sql, args...)
	if err != nil {
		return "", err
	}
	defer r.Close()
	if r.RowNumber() == 0 {
		return "", fmt.Errorf("%s: no rows", sql)
	}
	return r.GetString(0, 0)
}

func (s *mariaSource) int(ctx context.Context, sql string, args ...any) (int64, error) {
	v, err := s.value(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q: %w", sql, v, err)
	}
	return n, nil
}

func (s *mariaSource) payments(ctx context.Context) (int64, error) {
	return s.int(ctx, "SELECT COUNT(*) FROM payments")
}

// inserted is performance_schema's count of rows inserted into the two
// tables since the server started, the counterpart of PostgreSQL's
// n_tup_ins.
func (s *mariaSource) inserted(ctx context.Context) (int64, error) {
	return s.int(ctx, `SELECT COALESCE(SUM(COUNT_INSERT), 0) FROM performance_schema.table_io_waits_summary_by_table
		WHERE OBJECT_SCHEMA = 'payments' AND OBJECT_NAME IN ('payments', 'payment_cancels')`)
}

// dumpThread is the condition on performance_schema.threads for a binlog
// dump thread (Binlog Dump, or Binlog Dump GTID on MySQL).
const dumpThread = "PROCESSLIST_COMMAND LIKE 'Binlog Dump%'"

// thread finds the OS thread of user's binlog dump connection, waiting a
// minute for it (a reader that just connected).
func (s *mariaSource) thread(ctx context.Context, user string) (cpuClock, error) {
	pid := s.srv.PID()
	deadline := time.Now().Add(time.Minute)
	for {
		tid, err := s.int(ctx, "SELECT COALESCE(MAX(THREAD_OS_ID), 0) FROM performance_schema.threads WHERE PROCESSLIST_USER = ? AND "+dumpThread, user)
		if err != nil {
			return nil, fmt.Errorf("finding %s's binlog dump thread: %w", user, err)
		}
		if tid > 0 {
			return func() (time.Duration, error) { return ThreadCPU(pid, int(tid)) }, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no binlog dump thread of %s after a minute", user)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *mariaSource) reader(ctx context.Context) (cpuClock, error) { return s.thread(ctx, engineUser) }

// others are the engine's connections but its binlog dump (the heartbeat,
// the merchant-name copy), by connection id.
func (s *mariaSource) others(ctx context.Context) (map[int]time.Duration, error) {
	r, err := s.query(ctx, "SELECT PROCESSLIST_ID, THREAD_OS_ID FROM performance_schema.threads WHERE PROCESSLIST_USER = ? AND NOT "+dumpThread, engineUser)
	if err != nil {
		return nil, fmt.Errorf("listing riskwatch's source connections: %w", err)
	}
	defer r.Close()
	pid := s.srv.PID()
	out := make(map[int]time.Duration)
	for i := range r.RowNumber() {
		id, _ := r.GetInt(i, 0)
		tid, _ := r.GetInt(i, 1)
		// A connection that ends between the listing and the read is
		// simply not counted.
		if cpu, err := ThreadCPU(pid, int(tid)); err == nil {
			out[int(id)] = cpu
		}
	}
	return out, nil
}

func (s *mariaSource) insertBustOut(ctx context.Context, merchant, row int64) error {
	values := make([]string, 30)
	for g := range int64(len(values)) {
		values[g] = fmt.Sprintf("(%d, 0, %d, 30000, UTC_TIMESTAMP(6))", row+g, merchant+g/10)
	}
	r, err := s.query(ctx, "INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at) VALUES "+strings.Join(values, ", "))
	if err != nil {
		return err
	}
	r.Close()
	return nil
}

// The first snapshot's tables and mapped columns (the default mapping), and
// the span it reads: the retention before now to max_future after it.
var snapshotTables = []struct{ table, merchant, amount, at, sums string }{
	{"payments", "merchant_id", "amount", "approved_at", "1 AS a, amount AS aa, 0 AS c, 0 AS ca"},
	{"payment_cancels", "merchant_id", "cancel_amount", "canceled_at", "0, 0, 1, cancel_amount"},
}

const snapshotSpan = "BETWEEN UTC_TIMESTAMP(6) - INTERVAL 8 DAY AND UTC_TIMESTAMP(6) + INTERVAL 5 MINUTE"

// bootstrapFloors times two floors on the same data, each inside a
// consistent snapshot as the engine's first start reads it:
//   - the snapshot's SELECTs of the mapped rows (and the primary key),
//     one per business day of Asia/Seoul and table as the engine runs
//     them (the day's key range from the time index, then that range of
//     the table), read by a client that throws each row away: what
//     reading the history costs before riskwatch maps or sums a row;
//   - the same per-merchant-minute GROUP BY PostgreSQL's floor runs, done
//     by the server in one statement, its rows read and thrown away.
func (s *mariaSource) bootstrapFloors(ctx context.Context, res *Results) error {
	c, err := client.Connect(s.srv.Addr(), "root", s.srv.RootPassword(), "payments")
	if err != nil {
		return fmt.Errorf("connecting for the bootstrap floors: %w", err)
	}
	defer c.Close()
	for _, stmt := range []string{"SET time_zone = '+00:00'", "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
		"START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"} {
		if _, err := c.Execute(stmt); err != nil {
			return fmt.Errorf("the bootstrap floors: %s: %w", stmt, err)
		}
	}
	var rows int64
	discard := func([]mysql.FieldValue) error { rows++; return nil }
	now := time.Now().UTC()
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		return err
	}
	t0 := time.Now()
	for _, d := range businessDays(now.Add(-8*24*time.Hour), now.Add(5*time.Minute), loc) {
		for _, t := range snapshotTables {
			span := fmt.Sprintf("%s >= '%s' AND %s < '%s'", t.at, d[0].Format(myDatetime), t.at, d[1].Format(myDatetime))
			keys, err := c.Execute(fmt.Sprintf("SELECT MIN(id), MAX(id) FROM %s WHERE %s", t.table, span))
			if err != nil {
				return fmt.Errorf("the snapshot's key range: %w", err)
			}
			if v, _ := keys.GetValue(0, 0); v == nil {
				continue
			}
			lo, _ := keys.GetInt(0, 0)
			hi, _ := keys.GetInt(0, 1)
			var r mysql.Result
			q := fmt.Sprintf("SELECT id, %s, %s, %s FROM %s FORCE INDEX (PRIMARY) WHERE id BETWEEN %d AND %d AND %s", t.merchant, t.amount, t.at, t.table,
				lo, hi, span)
			if err := c.ExecuteSelectStreaming(q, &r, discard, nil); err != nil {
				return fmt.Errorf("the snapshot's SELECT: %w", err)
			}
		}
	}
	sel := time.Since(t0)
	m := res.MariaDB
	m.SelectRows, m.SelectSeconds, m.SelectRatio = rows, sel.Seconds(), res.Bootstrap.Seconds/sel.Seconds()

	var parts []string
	for _, t := range snapshotTables {
		parts = append(parts, fmt.Sprintf("SELECT %s AS m, TIMESTAMPDIFF(MINUTE, '1970-01-01', %s) AS minute, %s FROM %s WHERE %s %s",
			t.merchant, t.at, t.sums, t.table, t.at, snapshotSpan))
	}
	t0 = time.Now()
	var r mysql.Result
	q := "SELECT m, minute, SUM(a), SUM(aa), SUM(c), SUM(ca) FROM (" + strings.Join(parts, " UNION ALL ") +
		") AS u GROUP BY m, minute ORDER BY NULL"
	if err := c.ExecuteSelectStreaming(q, &r, func([]mysql.FieldValue) error { return nil }, nil); err != nil {
		return fmt.Errorf("the bare GROUP BY: %w", err)
	}
	gb := time.Since(t0)
	res.Bootstrap.GroupBySeconds, res.Bootstrap.Ratio = gb.Seconds(), res.Bootstrap.Seconds/gb.Seconds()
	return nil
}

// myDatetime is a DATETIME(6) literal's layout.
const myDatetime = "2006-01-02 15:04:05.000000"

// businessDays cuts [from, to) at the midnights of loc, as the first
// snapshot reads the history: one range a day, in UTC.
func businessDays(from, to time.Time, loc *time.Location) [][2]time.Time {
	var out [][2]time.Time
	for a := from; a.Before(to); {
		y, m, d := a.In(loc).Date()
		b := time.Date(y, m, d+1, 0, 0, 0, 0, loc).UTC()
		if b.After(to) {
			b = to
		}
		out = append(out, [2]time.Time{a.UTC(), b})
		a = b
	}
	return out
}

// binlogFile is one of SHOW BINARY LOGS.
type binlogFile struct {
	name string
	size int64
}

func (s *mariaSource) binlogs(ctx context.Context) ([]binlogFile, error) {
	r, err := s.query(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []binlogFile
	for i := range r.RowNumber() {
		name, _ := r.GetString(i, 0)
		size, _ := r.GetInt(i, 1)
		out = append(out, binlogFile{name, int64(size)})
	}
	return out, nil
}

// position is where the server's binlog ends now.
func (s *mariaSource) position(ctx context.Context) (file string, pos int64, err error) {
	r, err := s.query(ctx, "SHOW MASTER STATUS")
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	if r.RowNumber() == 0 {
		return "", 0, fmt.Errorf("SHOW MASTER STATUS: no binlog")
	}
	file, _ = r.GetString(0, 0)
	p, _ := r.GetInt(0, 1)
	return file, int64(p), nil
}

func (s *mariaSource) logBytes(ctx context.Context) (int64, error) {
	files, err := s.binlogs(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the binlog's size: %w", err)
	}
	var n int64
	for _, f := range files {
		n += f.size
	}
	return n, nil
}

// mariaBacklog is the binlog range from where the engine stopped to the
// backlog's end.
type mariaBacklog struct {
	s                  *mariaSource
	fromFile, toFile   string
	fromPos, toPos     int64
	files              []string
	bytesFrom, bytesTo int64
}

func (s *mariaSource) beginBacklog(ctx context.Context) (backlog, error) {
	b := &mariaBacklog{s: s}
	var err error
	if b.fromFile, b.fromPos, err = s.position(ctx); err != nil {
		return nil, fmt.Errorf("reading the backlog's start: %w", err)
	}
	if b.bytesFrom, err = s.logBytes(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *mariaBacklog) written(ctx context.Context) error {
	var err error
	if b.toFile, b.toPos, err = b.s.position(ctx); err != nil {
		return fmt.Errorf("reading the backlog's end: %w", err)
	}
	if b.bytesTo, err = b.s.logBytes(ctx); err != nil {
		return err
	}
	files, err := b.s.binlogs(ctx)
	if err != nil {
		return err
	}
	for _, f := range files {
		if f.name >= b.fromFile && f.name <= b.toFile {
			b.files = append(b.files, f.name)
		}
	}
	return nil
}

// mariadbBinlog is mariadb-binlog reading from the server as root with
// args; --base64-output=decode-rows prints no row images (only each
// event's header), so the client does the least with what it reads.
func (s *mariaSource) mariadbBinlog(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "mariadb-binlog", append([]string{"--read-from-remote-server", "--host=127.0.0.1",
		"--port=" + strconv.Itoa(s.srv.Port), "--user=root", "--base64-output=decode-rows", "--result-file=" + os.DevNull}, args...)...)
	cmd.Env = append(os.Environ(), "MYSQL_PWD="+s.srv.RootPassword())
	return cmd
}

// drain times mariadb-binlog reading the backlog's range: how fast the
// server sends the backlog to a client that does nothing with it.
func (b *mariaBacklog) drain(ctx context.Context) (time.Duration, error) {
	cmd := b.s.mariadbBinlog(ctx, append([]string{"--start-position=" + strconv.FormatInt(b.fromPos, 10),
		"--stop-position=" + strconv.FormatInt(b.toPos, 10)}, b.files...)...)
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("mariadb-binlog reading %s:%d to %s:%d: %w: %s", b.fromFile, b.fromPos, b.toFile, b.toPos, err, out)
	}
	d := time.Since(t0)
	b.s.res.BacklogBytes = b.bytesTo - b.bytesFrom
	return d, nil
}

func (b *mariaBacklog) close(context.Context) {}

// mariaFloor is mariadb-binlog following the binlog as the engine does,
// beside it: what a binlog dump thread costs the server for a client that
// does nothing with what it is sent.
type mariaFloor struct {
	p        *proc
	cpuClock cpuClock
}

func (s *mariaSource) startStreamFloors(ctx context.Context, r *runner) (streamFloors, error) {
	file, pos, err := s.position(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the binlog's end: %w", err)
	}
	// Not bound to ctx: stop ends it.
	cmd := s.mariadbBinlog(context.WithoutCancel(ctx), "--stop-never", "--start-position="+strconv.FormatInt(pos, 10), file)
	p, err := r.startProc(cmd, "mariadb-binlog", "")
	if err != nil {
		return nil, err
	}
	f := &mariaFloor{p: p}
	if f.cpuClock, err = s.thread(ctx, "root"); err != nil {
		f.stop(ctx)
		return nil, fmt.Errorf("%w (see %s)", err, r.opts.Out)
	}
	return f, nil
}

func (f *mariaFloor) cpu() ([]time.Duration, error) {
	d, err := f.cpuClock()
	return []time.Duration{d}, err
}

func (f *mariaFloor) stop(context.Context) { f.p.kill() }

// minuteLoad: a MySQL source always streams (source.delivery: minute is
// PostgreSQL's).
func (s *mariaSource) minuteLoad(context.Context, *runner) error { return nil }
