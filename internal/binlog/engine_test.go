package binlog_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/binlog"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/mysqlserver"
	"github.com/riskwatch/riskwatch/internal/mysqltest"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/sim"
	"github.com/riskwatch/riskwatch/internal/source"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
)

var (
	pg      *pgtest.Cluster
	mariadb *mysqltest.Server
)

// TestMain starts a private PostgreSQL (the sink) and a private MariaDB
// (the source, binlog on) for the package's tests.
func TestMain(m *testing.M) {
	os.Exit(func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var err error
		if pg, err = pgtest.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer pg.Close()
		if mariadb, err = mysqltest.Start(ctx, mysqlserver.Options{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer mariadb.Close()
		return m.Run()
	}())
}

// schema is SPEC §2's default schema in MariaDB, with nullable columns so
// that tests can write the bad rows a lax gateway might.
const schema = `
CREATE TABLE merchants (id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, created_at DATETIME(6) NOT NULL);
CREATE TABLE payments (id BIGINT PRIMARY KEY AUTO_INCREMENT, merchant_id BIGINT, amount BIGINT, status VARCHAR(20) NOT NULL DEFAULT 'approved',
  approved_at DATETIME(6), KEY (approved_at));
CREATE TABLE payment_cancels (id BIGINT PRIMARY KEY AUTO_INCREMENT, payment_id BIGINT NOT NULL DEFAULT 0, merchant_id BIGINT, cancel_amount DECIMAL(20,2),
  canceled_at TIMESTAMP(6) NULL, KEY (canceled_at));`

type mysqlEnv struct {
	t    *testing.T
	dsn  string
	conn *client.Conn
	sink string
	slot string
}

var seq atomic.Int64

func newMySQLEnv(t *testing.T) *mysqlEnv {
	t.Helper()
	return newMySQLEnvOn(t, mariadb)
}

func newMySQLEnvOn(t *testing.T, server *mysqltest.Server) *mysqlEnv {
	t.Helper()
	dsn := server.NewDB(t)
	conn := mysqltest.Connect(t, dsn)
	e := &mysqlEnv{t: t, dsn: dsn, conn: conn, sink: pg.NewDB(t), slot: fmt.Sprintf("rw_my_%d_%d", os.Getpid(), seq.Add(1))}
	// Zero dates and times outside strict mode: what a lax gateway writes.
	e.exec("SET SESSION sql_mode = ''")
	for _, stmt := range strings.Split(schema, ";") {
		if strings.TrimSpace(stmt) != "" {
			e.exec(stmt)
		}
	}
	return e
}

func (e *mysqlEnv) exec(q string, args ...any) {
	e.t.Helper()
	if _, err := e.conn.Execute(q, args...); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

func (e *mysqlEnv) config(mutate func(*config.Config)) *config.Config {
	e.t.Helper()
	cfg := config.Default()
	cfg.Source.DSN, cfg.Sink.DSN, cfg.Source.Slot = e.dsn, e.sink, e.slot
	cfg.Source.TimeZone = "Asia/Seoul"
	cfg.Source.TimeLocation, _ = time.LoadLocation("Asia/Seoul")
	cfg.MerchantNames.Table = ""
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		e.t.Fatalf("test config: %v", err)
	}
	return cfg
}

// running is an engine on the MariaDB source.
type running struct {
	t    *testing.T
	node *engine.Node
	st   *store.DB
	logs *strings.Builder
	done chan error
	stop context.CancelFunc
}

type lockedLog struct {
	mu  chan struct{}
	buf strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.buf.String()
}

func start(t *testing.T, cfg *config.Config, hook func(ctx context.Context) error) (*engine.Node, *lockedLog, func()) {
	t.Helper()
	return startWith(t, cfg, func(log *slog.Logger, reg prometheus.Registerer) (engine.Source, error) {
		return binlog.FromConfig(cfg, log, reg)
	}, hook)
}

func startWith(t *testing.T, cfg *config.Config, newSource func(*slog.Logger, prometheus.Registerer) (engine.Source, error), hooks ...func(ctx context.Context) error) (*engine.Node, *lockedLog, func()) {
	t.Helper()
	var hook func(ctx context.Context) error
	if len(hooks) > 0 {
		hook = hooks[0]
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, cfg.Sink.DSN, cfg.Sink.Schema, cfg.Location)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	logs := &lockedLog{mu: make(chan struct{}, 1)}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	src, err := newSource(log, reg)
	if err != nil {
		t.Fatal(err)
	}
	node, err := engine.NewNode(engine.NodeOptions{Config: cfg, DB: st, Source: src, Logger: log, Registry: reg, SnapshotHook: hook})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("engine: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("engine did not stop")
		}
		st.Close()
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("engine log:\n%s", logs.String())
		}
	})
	return node, logs, stop
}

// seoul renders an instant as the DATETIME wall clock the gateway stores.
func seoul(t time.Time) string {
	loc, _ := time.LoadLocation("Asia/Seoul")
	return t.In(loc).Format("2006-01-02 15:04:05.000000")
}

// utc renders an instant as a TIMESTAMP literal in the UTC session.
func utc(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") }

// sourceCSV is the source's own GROUP BY of the valid rows, in export
// minutes' CSV: DATETIME minutes are Korea time turned to UTC here,
// TIMESTAMP minutes are UTC already (the session is UTC).
func (e *mysqlEnv) sourceCSV(from, to time.Time) string {
	e.t.Helper()
	e.exec("SET time_zone = '+00:00'")
	// Valid rows: not NULL, not negative, not fractional, not a zero date,
	// not beyond max_future (5 minutes) of now.
	soon := time.Now().Add(5 * time.Minute)
	r, err := e.conn.Execute(`SELECT merchant_id, minute, SUM(a), SUM(aa), SUM(c), SUM(ca) FROM (
		SELECT merchant_id, DATE_FORMAT(approved_at, '%Y-%m-%d %H:%i:00') AS minute, 1 AS a, amount AS aa, 0 AS c, 0 AS ca, 'kst' AS zone FROM payments
		  WHERE merchant_id > 0 AND amount >= 0 AND approved_at > '1000-01-01' AND approved_at < ?
		UNION ALL SELECT merchant_id, DATE_FORMAT(canceled_at, '%Y-%m-%d %H:%i:00'), 0, 0, 1, cancel_amount, 'utc' FROM payment_cancels
		  WHERE merchant_id > 0 AND cancel_amount >= 0 AND cancel_amount = FLOOR(cancel_amount) AND canceled_at > '1000-01-01' AND canceled_at < ?) u
		GROUP BY merchant_id, minute, zone`, seoul(soon), utc(soon))
	if err != nil {
		e.t.Fatal(err)
	}
	loc, _ := time.LoadLocation("Asia/Seoul")
	type key struct {
		m      int64
		minute time.Time
	}
	sums := map[key]*[4]int64{}
	for i := range r.RowNumber() {
		m, _ := r.GetInt(i, 0)
		ms, _ := r.GetString(i, 1)
		a, _ := r.GetInt(i, 2)
		aa, _ := r.GetString(i, 3)
		c, _ := r.GetInt(i, 4)
		ca, _ := r.GetString(i, 5)
		_ = aa
		var minute time.Time
		if a > 0 {
			minute, err = time.ParseInLocation("2006-01-02 15:04:05", ms, loc)
		} else {
			minute, err = time.ParseInLocation("2006-01-02 15:04:05", ms, time.UTC)
		}
		if err != nil {
			e.t.Fatal(err)
		}
		k := key{m, minute.UTC()}
		s := sums[k]
		if s == nil {
			s = &[4]int64{}
			sums[k] = s
		}
		s[0] += a
		s[1] += atoi(e.t, aa)
		s[2] += c
		s[3] += atoi(e.t, ca)
	}
	var keys []key
	for k := range sums {
		if !k.minute.Before(from) && k.minute.Before(to) {
			keys = append(keys, k)
		}
	}
	sortKeys := func(a, b key) int {
		if a.m != b.m {
			return int(a.m - b.m)
		}
		return a.minute.Compare(b.minute)
	}
	slices.SortFunc(keys, sortKeys)
	var b strings.Builder
	b.WriteString("merchant_id,minute,approvals,approved_amount,cancels,canceled_amount\n")
	for _, k := range keys {
		s := sums[k]
		fmt.Fprintf(&b, "%d,%s,%d,%d,%d,%d\n", k.m, k.minute.Format(time.RFC3339), s[0], s[1], s[2], s[3])
	}
	return b.String()
}

// export is the sink's minutes through export minutes' own code.
func export(t *testing.T, cfg *config.Config, from, to time.Time) string {
	t.Helper()
	st, err := store.Open(context.Background(), cfg.Sink.DSN, cfg.Sink.Schema, cfg.Location)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var b strings.Builder
	if _, err := aggregates.New(st).ExportMinutes(context.Background(), from, to, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return fmt.Sprintf("line %d (of %d / %d):\n got  %q\n want %q", i+1, len(g), len(w), a, b)
		}
	}
	return "equal"
}

// TestMariaDBSnapshotStreamAndDeadLetters is the first start and the
// stream on a real MariaDB: history in Korea-time DATETIMEs and UTC
// TIMESTAMPs, rows committed during the snapshot counted once, bad rows
// dead-lettered by the snapshot and the stream alike, updates and deletes
// ignored, an ALTER TABLE that moves the mapped columns mid-stream, and a
// binlog rotation; the sink's minutes then equal the source's GROUP BY
// line for line.
func TestMariaDBSnapshotStreamAndDeadLetters(t *testing.T) {
	t.Parallel()
	e := newMySQLEnv(t)
	now := time.Now()
	// Ids fall as times go back: each day's range of keys spans the
	// other days' rows, which the snapshot must leave to their own day.
	for i := range 400 {
		at := now.Add(-time.Duration(i) * 7 * time.Minute)
		e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (%d, %d, '%s')", 1+i%13, 1000+i, seoul(at)))
		if i%5 == 0 {
			e.exec(fmt.Sprintf("INSERT INTO payment_cancels (merchant_id, cancel_amount, canceled_at) VALUES (%d, %d.00, '%s')", 1+i%13, 500+i, utc(at.Add(time.Minute))))
		}
	}
	// Bad history: one of each reason the snapshot must dead-letter.
	e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (NULL, 10, '%s')", seoul(now)))
	e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (5, -10, '%s')", seoul(now)))
	e.exec("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (5, 10, '0000-00-00 00:00:00')")
	e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (5, 10, '%s')", seoul(now.Add(time.Hour))))
	e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (5, 10, '%s')", seoul(now.Add(-30*24*time.Hour))))
	e.exec(fmt.Sprintf("INSERT INTO payment_cancels (merchant_id, cancel_amount, canceled_at) VALUES (5, 12.50, '%s')", utc(now)))
	e.exec("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (5, 10, NULL)")

	cfg := e.config(nil)
	// Rows committed while the snapshot is open, on another connection:
	// they are after the snapshot's position and arrive through the stream.
	hook := func(ctx context.Context) error {
		c, err := mysqltest.Dial(e.dsn)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range 30 {
			if _, err := c.Execute(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (%d, 777, '%s')", 100+i%3, seoul(time.Now()))); err != nil {
				return err
			}
		}
		return nil
	}
	node, _, stop := start(t, cfg, hook)
	waitFor(t, 60*time.Second, "the engine to stream", func() bool { return node.Status().Ready })

	// The stream: good rows, bad rows, ignored changes, a rotation, and an
	// ALTER TABLE that puts a column before the mapped ones.
	for i := range 50 {
		e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (%d, %d, '%s')", 200+i%7, 3000+i, seoul(time.Now())))
	}
	e.exec("BEGIN")
	e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (NULL, 1, '%s')", seoul(time.Now())))
	e.exec("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (7, 1, '0000-00-00 00:00:00')")
	e.exec(fmt.Sprintf("INSERT INTO payment_cancels (merchant_id, cancel_amount, canceled_at) VALUES (7, -3.00, '%s')", utc(time.Now())))
	e.exec(fmt.Sprintf("INSERT INTO payment_cancels (merchant_id, cancel_amount, canceled_at) VALUES (7, 3.00, '%s')", utc(time.Now())))
	e.exec("COMMIT")
	e.exec("UPDATE payments SET status = 'refunded' WHERE id <= 3")
	// Deleting a row that was never an event keeps the GROUP BY comparable.
	e.exec("DELETE FROM payments WHERE merchant_id IS NULL LIMIT 1")
	e.exec("FLUSH BINARY LOGS")
	e.exec("ALTER TABLE payments ADD COLUMN note VARCHAR(20) NULL FIRST, MODIFY amount DECIMAL(20,0)")
	for i := range 20 {
		e.exec(fmt.Sprintf("INSERT INTO payments (note, merchant_id, amount, approved_at) VALUES ('after', %d, %d, '%s')", 300+i%4, 5000+i, seoul(time.Now())))
	}

	// Everything committed is in the sink once its position reaches the
	// server's binlog end (the heartbeat keeps writing, so compare files).
	waitFor(t, 60*time.Second, "the sink to catch up with the binlog", func() bool {
		st := node.Status()
		return st.LagBytes == 0 && st.Position != "" && strings.Contains(st.Position, "gtid=")
	})
	time.Sleep(500 * time.Millisecond)
	stop()

	from, to := now.Add(-8*24*time.Hour).Truncate(time.Minute), time.Now().Add(2*time.Hour)
	got, want := export(t, cfg, from, to), e.sourceCSV(from, to)
	if got != want {
		t.Fatalf("sink minutes differ from the source GROUP BY:\n%s", firstDiff(got, want))
	}
	t.Logf("%d merchant-minutes equal the source's GROUP BY", strings.Count(got, "\n")-1)

	sink, err := pgxpool.New(context.Background(), cfg.Sink.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	rows, err := sink.Query(context.Background(), `SELECT reason, count(*), count(*) FILTER (WHERE origin = 'stream' AND position LIKE 'binlog.%') FROM riskwatch.dead_letters GROUP BY 1 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var gotDead []string
	for rows.Next() {
		var reason string
		var n, streamed int
		if err := rows.Scan(&reason, &n, &streamed); err != nil {
			t.Fatal(err)
		}
		gotDead = append(gotDead, fmt.Sprintf("%s=%d/%d", reason, n, streamed))
	}
	// reason=all/streamed: the snapshot's six (NULL merchant, negative,
	// zero date, future, too old, fractional DECIMAL, NULL time), the
	// stream's three.
	wantDead := "future_time=1/0,invalid_value=3/1,negative_amount=2/1,null_merchant=2/1,null_time=1/0,older_than_retention=1/0"
	if strings.Join(gotDead, ",") != wantDead {
		t.Fatalf("dead letters by reason (all/streamed) = %s, want %s", strings.Join(gotDead, ","), wantDead)
	}
}

// TestMariaDBSnapshotSumOverflow: 9,300 payments of 10^15 KRW (max_amount
// at its largest) in one merchant-minute of the history, whose sum passes
// int64. The first snapshot leaves that merchant-minute to the stream's
// own code, row by row, as the PostgreSQL path does: the minute holds the
// 9,223 that fit, the other 77 are dead letters, and the merchant beside it
// in the same minute is summed as usual.
func TestMariaDBSnapshotSumOverflow(t *testing.T) {
	t.Parallel()
	e := newMySQLEnv(t)
	at := seoul(time.Now().Add(-20 * time.Minute).Truncate(time.Minute).Add(30 * time.Second))
	var b strings.Builder
	for i := range 9300 {
		if i%500 == 0 {
			if b.Len() > 0 {
				e.exec(b.String())
			}
			b.Reset()
			b.WriteString("INSERT INTO payments (merchant_id, amount, approved_at) VALUES ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(20, 1000000000000000, '%s')", at)
	}
	e.exec(b.String())
	e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (21, 5, '%s'), (21, 7, '%s')", at, at))
	cfg := e.config(func(c *config.Config) { c.MaxAmount = 1_000_000_000_000_000 })
	node, _, stop := start(t, cfg, nil)
	waitFor(t, 60*time.Second, "the engine to stream", func() bool { return node.Status().Ready })
	stop()

	sink, err := pgxpool.New(context.Background(), cfg.Sink.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var got string
	err = sink.QueryRow(context.Background(), `SELECT string_agg(format('%s:%s/%s', merchant_id, approvals, approved_amount), ' ' ORDER BY merchant_id)
		|| format(' dead=%s', (SELECT count(*) FROM riskwatch.dead_letters WHERE reason = 'amount_out_of_range' AND origin = 'snapshot'))
		FROM riskwatch.minute_agg`).Scan(&got)
	if err != nil {
		t.Fatal(err)
	}
	if want := "20:9223/9223000000000000000 21:2/12 dead=77"; got != want {
		t.Fatalf("after the first snapshot: %s, want %s", got, want)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	whole, _, _ := strings.Cut(s, ".")
	var n int64
	if _, err := fmt.Sscan(whole, &n); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestMariaDBIdleClosingAndPurgedBinlog: on a quiet source the heartbeat
// row keeps the position and the minute clock moving, so minutes close;
// a checkpoint whose binlog the server purged stops the engine with an
// error that names slot drop, and after it a new snapshot rebuilds the
// sink exactly. The server is the test's own: PURGE BINARY LOGS is
// server-wide.
func TestMariaDBIdleClosingAndPurgedBinlog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	own, err := mysqltest.Start(ctx, mysqlserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	e := newMySQLEnvOn(t, own)
	e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (1, 100, '%s')", seoul(time.Now().Add(-time.Hour))))
	cfg := e.config(nil)

	node, idleLogs, stop := start(t, cfg, nil)
	waitFor(t, 60*time.Second, "the engine to stream", func() bool { return node.Status().Ready })
	before := node.Status().LastClosed
	waitFor(t, 75*time.Second, "an idle minute to close", func() bool { return node.Status().LastClosed > before })
	st := node.Status()
	if lag := st.LagSeconds; lag > 3 {
		t.Errorf("idle lag %.1f s", lag)
	}
	if since := time.Since(st.LastClosed.End()); since > 62*time.Second {
		t.Errorf("idle source: last closed minute %s ends %s ago", st.LastClosed, since)
	}
	t.Logf("idle: minute %s closed, lag %.2f s, position %s", st.LastClosed, st.LagSeconds, st.Position)
	// A minute of streaming on one connection: it never dropped.
	if n := strings.Count(idleLogs.String(), "pipeline stopped"); n != 0 {
		t.Errorf("the stream restarted %d times while idle:\n%s", n, idleLogs.String())
	}
	stop()

	// Behind the engine's back the server rotates and purges the binlog
	// the checkpoint resumes from.
	e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (2, 200, '%s')", seoul(time.Now())))
	e.exec("FLUSH BINARY LOGS")
	e.exec("FLUSH BINARY LOGS")
	// The stopped engine's dump thread may linger a moment on the server,
	// which keeps the files it reads from being purged (with only a
	// warning): purge until the newest file is the oldest.
	waitFor(t, 30*time.Second, "the server to purge its old binlogs", func() bool {
		r, err := e.conn.Execute("SHOW BINARY LOGS")
		if err != nil {
			t.Fatal(err)
		}
		if r.RowNumber() == 1 {
			return true
		}
		newest, _ := r.GetString(r.RowNumber()-1, 0)
		e.exec(fmt.Sprintf("PURGE BINARY LOGS TO '%s'", newest))
		return false
	})

	err = runUntilStopped(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "slot drop") || !strings.Contains(err.Error(), "no longer holds binlog") {
		t.Fatalf("engine on a purged binlog: %v, want an error that names slot drop", err)
	}

	// The operator's fix: forget the position; the next start snapshots.
	st0, err := store.Open(ctx, cfg.Sink.DSN, cfg.Sink.Schema, cfg.Location)
	if err != nil {
		t.Fatal(err)
	}
	if had, err := aggregates.New(st0).ForgetCheckpoint(ctx, cfg.Source.Slot); err != nil || !had {
		t.Fatalf("ForgetCheckpoint = %v, %v", had, err)
	}
	st0.Close()
	node, _, stop = start(t, cfg, nil)
	waitFor(t, 60*time.Second, "the rebuilt engine to stream", func() bool { return node.Status().Ready })
	stop()
	from, to := time.Now().Add(-8*24*time.Hour).Truncate(time.Minute), time.Now().Add(time.Hour)
	if got, want := export(t, cfg, from, to), e.sourceCSV(from, to); got != want {
		t.Fatalf("after slot drop and a new snapshot:\n%s", firstDiff(got, want))
	}
}

// runUntilStopped runs an engine until Run returns (a permanent error) or
// 60 s pass.
func runUntilStopped(t *testing.T, cfg *config.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.Open(ctx, cfg.Sink.DSN, cfg.Sink.Schema, cfg.Location)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logs := &lockedLog{mu: make(chan struct{}, 1)}
	log := slog.New(slog.NewTextHandler(logs, nil))
	src, err := binlog.FromConfig(cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	node, err := engine.NewNode(engine.NodeOptions{Config: cfg, DB: st, Source: src, Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	err = node.Run(ctx)
	if err == nil {
		t.Logf("engine log:\n%s", logs.String())
	}
	return err
}

// TestMariaDBAlertsEqualPostgres runs the same transactions through a
// MariaDB source (Korea-time DATETIMEs) and a PostgreSQL source
// (timestamptz) into two sinks: three days of history with a platform
// cancel rate of about 1%, then, live, a bust-out (one merchant's cancels
// surge) and a new merchant canceling on the platform baseline. Both
// engines raise the same alerts at the same minute with the same values.
func TestMariaDBAlertsEqualPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	my := newMySQLEnv(t)
	pgSrc := pg.NewDB(t)
	pgPool, err := pgxpool.New(ctx, pgSrc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pgPool.Close)
	if _, err := pgPool.Exec(ctx, sim.Schema); err != nil {
		t.Fatal(err)
	}
	type row struct {
		cancel   bool
		merchant int64
		amount   int64
		at       time.Time
	}
	write := func(rows []row) {
		t.Helper()
		var myP, myC, pgP, pgC []string
		for _, r := range rows {
			if r.cancel {
				myC = append(myC, fmt.Sprintf("(%d, %d, '%s')", r.merchant, r.amount, utc(r.at)))
				pgC = append(pgC, fmt.Sprintf("(nextval('ids'), 0, %d, %d, '%s+00')", r.merchant, r.amount, utc(r.at)))
			} else {
				myP = append(myP, fmt.Sprintf("(%d, %d, '%s')", r.merchant, r.amount, seoul(r.at)))
				pgP = append(pgP, fmt.Sprintf("(nextval('ids'), %d, %d, 'approved', '%s+00')", r.merchant, r.amount, utc(r.at)))
			}
		}
		for len(myP)+len(myC) > 0 {
			n, k := min(len(myP), 1000), min(len(myC), 1000)
			if n > 0 {
				my.exec("INSERT INTO payments (merchant_id, amount, approved_at) VALUES " + strings.Join(myP[:n], ","))
				if _, err := pgPool.Exec(ctx, "INSERT INTO payments VALUES "+strings.Join(pgP[:n], ",")); err != nil {
					t.Fatal(err)
				}
			}
			if k > 0 {
				my.exec("INSERT INTO payment_cancels (merchant_id, cancel_amount, canceled_at) VALUES " + strings.Join(myC[:k], ","))
				if _, err := pgPool.Exec(ctx, "INSERT INTO payment_cancels VALUES "+strings.Join(pgC[:k], ",")); err != nil {
					t.Fatal(err)
				}
			}
			myP, pgP, myC, pgC = myP[n:], pgP[n:], myC[k:], pgC[k:]
		}
	}
	now := time.Now()
	var hist []row
	for i := range 3 * 24 * 30 { // every 2 minutes for 3 days
		at := now.Add(-2*time.Hour - time.Duration(i)*2*time.Minute)
		for m := int64(1); m <= 12; m++ {
			hist = append(hist, row{merchant: m, amount: 10_000 + m*100 + int64(i%7), at: at})
			if (i+int(m))%97 == 0 {
				hist = append(hist, row{cancel: true, merchant: m, amount: 5_000, at: at.Add(time.Minute)})
			}
		}
	}
	// The last two hours: steady sales, a few cancels.
	for i := range 60 {
		at := now.Add(-time.Duration(i) * 2 * time.Minute)
		for m := int64(1); m <= 12; m++ {
			hist = append(hist, row{merchant: m, amount: 20_000, at: at})
		}
	}
	write(hist)

	myCfg := my.config(nil)
	pgCfg := config.Default()
	pgCfg.Source.DSN, pgCfg.Sink.DSN = pgSrc, pg.NewDB(t)
	pgCfg.Source.Slot, pgCfg.Source.Publication = my.slot+"_pg", my.slot+"_pg"
	pgCfg.MerchantNames.Table = ""
	if err := pgCfg.Validate(); err != nil {
		t.Fatal(err)
	}
	myNode, _, myStop := start(t, myCfg, nil)
	pgNode, _, pgStop := startPG(t, pgCfg)
	waitFor(t, 60*time.Second, "both engines to stream", func() bool { return myNode.Status().Ready && pgNode.Status().Ready })

	// Live: merchant 7's bust-out, and merchant 500, new, selling and
	// canceling (its baseline is the platform's).
	burst := time.Now()
	var live []row
	for i := range 30 {
		live = append(live, row{merchant: 7, amount: 20_000, at: burst.Add(-time.Duration(i) * time.Second)})
		live = append(live, row{merchant: 500, amount: 30_000, at: burst.Add(-time.Duration(i) * time.Second)})
	}
	for i := range 12 {
		live = append(live, row{cancel: true, merchant: 7, amount: 19_000, at: burst.Add(-time.Duration(i) * time.Second)})
		live = append(live, row{cancel: true, merchant: 500, amount: 29_000, at: burst.Add(-time.Duration(i) * time.Second)})
	}
	write(live)
	burstMinute := burst.UTC().Truncate(time.Minute)
	waitFor(t, 75*time.Second, "both engines to close the burst's minute", func() bool {
		return !myNode.Status().LastClosed.Start().Before(burstMinute) && !pgNode.Status().LastClosed.Start().Before(burstMinute)
	})
	myStop()
	pgStop()

	alerts := func(dsn string) []string {
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		rows, err := pool.Query(ctx, `SELECT a.rule || ' ' || a.merchant_id || ' ' || to_char(a.active_at AT TIME ZONE 'UTC', 'HH24:MI') || ' ' || e."values"::text
			FROM riskwatch.alerts a JOIN riskwatch.alert_evaluations e ON e.alert_id = a.id AND e.minute = a.active_at ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	gotMy, gotPG := alerts(myCfg.Sink.DSN), alerts(pgCfg.Sink.DSN)
	if strings.Join(gotMy, "\n") != strings.Join(gotPG, "\n") {
		t.Fatalf("alerts differ\nMariaDB:\n%s\nPostgreSQL:\n%s", strings.Join(gotMy, "\n"), strings.Join(gotPG, "\n"))
	}
	fired := map[string]bool{}
	for _, a := range gotMy {
		f := strings.Fields(a)
		fired[f[0]+" "+f[1]] = true
	}
	if !fired["cancel_rate_spike 7"] || !fired["cancel_rate_spike 500"] {
		t.Fatalf("want merchant 7's bust-out and merchant 500 on the platform baseline firing; got\n%s", strings.Join(gotMy, "\n"))
	}
	t.Logf("both sources raised the same %d alerts:\n%s", len(gotMy), strings.Join(gotMy, "\n"))
}

// startPG runs an engine on a PostgreSQL source, for comparison.
func startPG(t *testing.T, cfg *config.Config) (*engine.Node, *lockedLog, func()) {
	t.Helper()
	return startWith(t, cfg, func(log *slog.Logger, reg prometheus.Registerer) (engine.Source, error) {
		return source.FromConfig(cfg, log, reg)
	})
}

// TestMariaDBLedgerEnumFilter: one ledger table feeds both kinds through
// filters on an ENUM column, whose labels the binlog carries only as
// indexes; the snapshot and the stream select the same rows.
func TestMariaDBLedgerEnumFilter(t *testing.T) {
	t.Parallel()
	e := newMySQLEnv(t)
	// No index on at: the snapshot reads each day by the time column
	// alone, not as a range of the key.
	e.exec("CREATE TABLE ledger (id BIGINT PRIMARY KEY AUTO_INCREMENT, kind ENUM('PAY','CANCEL','REFUND') NOT NULL, tags SET('web','app') NOT NULL DEFAULT '', merchant_id BIGINT NOT NULL, amount BIGINT NOT NULL, at DATETIME(6) NOT NULL)")
	insert := func(at time.Time) {
		for m := 1; m <= 3; m++ {
			e.exec(fmt.Sprintf("INSERT INTO ledger (kind, tags, merchant_id, amount, at) VALUES ('PAY', 'web', %d, 1000, '%[2]s'), ('PAY', 'app,web', %[1]d, 2000, '%[2]s'), ('CANCEL', '', %[1]d, 500, '%[2]s'), ('REFUND', 'app', %[1]d, 700, '%[2]s')", m, seoul(at)))
		}
	}
	hist := time.Now().Add(-time.Hour)
	insert(hist)
	cfg := e.config(func(c *config.Config) {
		c.Mapping = []config.TableMapping{
			{Table: "ledger", Kind: config.KindApproval, Merchant: "merchant_id", Amount: "amount", Time: "at", Filter: &config.Filter{Column: "kind", In: []string{"PAY"}}},
			{Table: "ledger", Kind: config.KindCancel, Merchant: "merchant_id", Amount: "amount", Time: "at", Filter: &config.Filter{Column: "kind", In: []string{"CANCEL"}}},
		}
	})
	node, _, stop := start(t, cfg, nil)
	waitFor(t, 60*time.Second, "the engine to stream", func() bool { return node.Status().Ready })
	live := time.Now()
	insert(live)
	waitFor(t, 30*time.Second, "the sink to catch up", func() bool { return node.Status().LagBytes == 0 && strings.Contains(node.Status().Position, "gtid=") })
	time.Sleep(300 * time.Millisecond)
	stop()
	var want strings.Builder
	want.WriteString("merchant_id,minute,approvals,approved_amount,cancels,canceled_amount\n")
	for m := 1; m <= 3; m++ {
		for _, at := range []time.Time{hist, live} {
			fmt.Fprintf(&want, "%d,%s,2,3000,1,500\n", m, at.UTC().Truncate(time.Minute).Format(time.RFC3339))
		}
	}
	got := export(t, cfg, time.Now().Add(-2*time.Hour), time.Now().Add(time.Hour))
	// export orders by merchant, then minute, as want is written.
	wantLines := strings.Split(strings.TrimSpace(want.String()), "\n")
	if strings.TrimSpace(got) != strings.Join(wantLines, "\n") {
		t.Fatalf("ledger minutes:\n%s\nwant\n%s", got, strings.Join(wantLines, "\n"))
	}
}

// TestMariaDBSilentServer: a server that stops answering without closing
// the connection (SIGSTOP: the socket stays open, no heartbeat comes) is
// taken for dead after a few heartbeats' silence; the engine reconnects
// once it answers again and misses nothing.
func TestMariaDBSilentServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	own, err := mysqltest.Start(ctx, mysqlserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	e := newMySQLEnvOn(t, own)
	cfg := e.config(nil)
	node, logs, stop := start(t, cfg, nil)
	waitFor(t, 60*time.Second, "the engine to stream", func() bool { return node.Status().Ready })
	raw, err := os.ReadFile(own.Dir + "/mariadbd.pid")
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(string(raw)), &pid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the silence to be noticed", func() bool {
		return strings.Contains(logs.String(), "nothing from the server for 10s")
	})
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	e.conn = mysqltest.Connect(t, e.dsn)
	e.exec(fmt.Sprintf("INSERT INTO payments (merchant_id, amount, approved_at) VALUES (9, 900, '%s')", seoul(time.Now())))
	waitFor(t, 60*time.Second, "the engine to stream again and catch up", func() bool {
		st := node.Status()
		return st.Ready && st.LagBytes == 0 && strings.Contains(export(t, cfg, time.Now().Add(-time.Hour), time.Now().Add(time.Hour)), "\n9,")
	})
	stop()
}
