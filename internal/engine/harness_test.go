package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/source"
	"github.com/riskwatch/riskwatch/internal/store"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// env is one test's source database (also its sink) with the default schema.
type env struct {
	t    *testing.T
	dsn  string
	pool *pgxpool.Pool
	slot string
}

var slotSeq atomic.Int64

// newEnv creates a database and runs ddl in it (the default source schema
// is sim.Schema; "" for none).
func newEnv(t *testing.T, ddl string) *env {
	t.Helper()
	dsn := cluster.NewDB(t)
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if ddl != "" {
		if _, err := pool.Exec(context.Background(), ddl); err != nil {
			t.Fatalf("creating source schema: %v", err)
		}
	}
	return &env{t: t, dsn: dsn, pool: pool, slot: fmt.Sprintf("rw_test_%d_%d", os.Getpid(), slotSeq.Add(1))}
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) config(mutate func(*config.Config)) *config.Config {
	e.t.Helper()
	cfg := config.Default()
	cfg.Source.DSN, cfg.Sink.DSN = e.dsn, e.dsn
	cfg.Source.Slot, cfg.Source.Publication = e.slot, e.slot
	cfg.Source.ReconnectMin = config.Duration(100 * time.Millisecond)
	cfg.Source.ReconnectMax = config.Duration(time.Second)
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		e.t.Fatalf("test config: %v", err)
	}
	return cfg
}

// running is an engine started by a test.
type running struct {
	eng   *Node
	st    *store.DB
	reg   *prometheus.Registry
	logs  *syncBuffer
	stop  context.CancelFunc
	done  chan error
	cfg   *config.Config
	t     *testing.T
	pool  *pgxpool.Pool
	start time.Time
}

type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newSyncBuffer() *syncBuffer { b := &syncBuffer{mu: make(chan struct{}, 1)}; return b }
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}
func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

func (e *env) start(cfg *config.Config, hook func(ctx context.Context) error) *running {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, cfg.Sink.DSN, cfg.Sink.Schema, cfg.Location)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		e.t.Fatal(err)
	}
	logs := newSyncBuffer()
	reg := prometheus.NewRegistry()
	src, err := source.FromConfig(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), reg)
	if err != nil {
		e.t.Fatal(err)
	}
	eng, err := NewNode(NodeOptions{
		Config: cfg, DB: st, Source: src, Registry: reg, SnapshotHook: hook,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ProgressOut: logs,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	r := &running{eng: eng, st: st, reg: reg, logs: logs, stop: cancel, done: make(chan error, 1), cfg: cfg, t: e.t, pool: e.pool, start: time.Now()}
	go func() { r.done <- eng.Run(ctx) }()
	e.t.Cleanup(func() {
		r.shutdown()
		if e.t.Failed() {
			e.t.Logf("engine log:\n%s", logs.String())
		}
	})
	return r
}

// st0 opens a fresh store on the engine's sink (after shutdown closed its own).
func (r *running) st0(t *testing.T) *store.DB {
	t.Helper()
	st, err := store.Open(context.Background(), r.cfg.Sink.DSN, r.cfg.Sink.Schema, r.cfg.Location)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func (r *running) shutdown() {
	if r.stop == nil {
		return
	}
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("engine: %v", err)
		}
	case <-time.After(20 * time.Second):
		r.t.Errorf("engine did not stop within 20s")
	}
	r.stop = nil
	r.st.Close()
}

// waitFor polls cond until it holds or the timeout passes.
func (r *running) waitFor(what string, timeout time.Duration, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case err := <-r.done:
			r.t.Fatalf("engine stopped while waiting for %s: %v\n%s", what, err, r.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %s waiting for %s; status %+v\n%s", timeout, what, r.eng.Status(), r.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// caughtUp waits until the sink holds everything committed so far.
func (r *running) caughtUp(timeout time.Duration) {
	r.t.Helper()
	var s string
	if err := r.pool.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		r.t.Fatal(err)
	}
	target, err := pglogrepl.ParseLSN(s)
	if err != nil {
		r.t.Fatal(err)
	}
	r.waitFor("the sink to pass "+s, timeout, func() bool { return r.applied() >= target })
}

// applied is the LSN the sink holds everything up to.
func (r *running) applied() source.LSN {
	r.t.Helper()
	lsn, err := source.ParseLSN(r.eng.Status().Position)
	if err != nil {
		r.t.Fatal(err)
	}
	return lsn
}

func (r *running) counter(name string, labels ...string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
		}
	}
	return 0
}

// sourceMinutesSQL is SPEC §4's reference: the same GROUP BY over the source
// tables, limited to rows that are events (valid and within retention of
// when they were written; the tests write no row near those limits except
// on purpose).
const sourceMinutesSQL = `
	SELECT merchant_id, minute, sum(a)::int AS approvals, sum(aa)::bigint AS approved_amount, sum(c)::int AS cancels, sum(ca)::bigint AS canceled_amount
	FROM (
		SELECT merchant_id, date_trunc('minute', approved_at) AS minute, 1 AS a, amount AS aa, 0 AS c, 0::bigint AS ca FROM payments
		WHERE amount >= 0 AND approved_at <= now() + interval '5 minutes' AND approved_at >= now() - interval '8 days'
		UNION ALL
		SELECT merchant_id, date_trunc('minute', canceled_at), 0, 0, 1, cancel_amount FROM payment_cancels
		WHERE cancel_amount >= 0 AND canceled_at <= now() + interval '5 minutes' AND canceled_at >= now() - interval '8 days'
	) u GROUP BY 1, 2`

// assertMatches checks the SPEC §4 invariant: every stored minute equals the
// GROUP BY over the source, row for row, and the rollups equal the sums of
// the minutes in the business time zone.
func (r *running) assertMatches(reference string) {
	r.t.Helper()
	ctx := context.Background()
	schema := pgx.Identifier{r.cfg.Sink.Schema}.Sanitize()
	q := fmt.Sprintf(`WITH src AS (%s), snk AS (
			SELECT merchant_id, minute, approvals, approved_amount, cancels, canceled_amount FROM %s.minute_agg)
		SELECT 'missing in sink' AS side, * FROM (SELECT * FROM src EXCEPT SELECT * FROM snk) a
		UNION ALL
		SELECT 'extra in sink', * FROM (SELECT * FROM snk EXCEPT SELECT * FROM src) b
		ORDER BY 2, 3 LIMIT 20`, reference, schema)
	rows, err := r.pool.Query(ctx, q)
	if err != nil {
		r.t.Fatal(err)
	}
	var diffs []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			r.t.Fatal(err)
		}
		diffs = append(diffs, fmt.Sprint(vals...))
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	if len(diffs) > 0 {
		r.t.Fatalf("sink minutes differ from the source GROUP BY (first %d):\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
	var n int
	if err := r.pool.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s.minute_agg", schema)).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	if n == 0 {
		r.t.Fatal("sink holds no minutes at all")
	}
	tz := r.cfg.Location.String()
	for _, rollup := range []struct{ table, bucket string }{
		{"hour_agg", "date_trunc('hour', minute, $1)"},
		{"day_agg", "(minute AT TIME ZONE $1)::date"},
	} {
		q := fmt.Sprintf(`WITH m AS (SELECT merchant_id, %[2]s AS b, sum(approvals)::bigint, sum(approved_amount)::bigint, sum(cancels)::bigint, sum(canceled_amount)::bigint
				FROM %[1]s.minute_agg GROUP BY 1, 2),
			r AS (SELECT * FROM %[1]s.%[3]s)
			SELECT count(*) FROM ((SELECT * FROM m EXCEPT SELECT * FROM r) UNION ALL (SELECT * FROM r EXCEPT SELECT * FROM m)) d`,
			schema, rollup.bucket, rollup.table)
		var bad int
		if err := r.pool.QueryRow(ctx, q, tz).Scan(&bad); err != nil {
			r.t.Fatal(err)
		}
		if bad != 0 {
			r.t.Fatalf("%s differs from the sum of the minutes in %d rows", rollup.table, bad)
		}
	}
	r.t.Logf("sink matches the source: %d merchant-minutes", n)
}

// inserter commits payments (and a cancel for every fifth) one per
// transaction until stopped, tolerating a source that is briefly down.
type inserter struct {
	stop  chan struct{}
	done  chan struct{}
	count atomic.Int64
	errs  atomic.Int64
}

func startInserter(t *testing.T, dsn string, merchants int, pause time.Duration) *inserter {
	ins := &inserter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(ins.done)
		ctx := context.Background()
		var conn *pgx.Conn
		for i := 0; ; i++ {
			select {
			case <-ins.stop:
				if conn != nil {
					conn.Close(ctx)
				}
				return
			default:
			}
			if conn == nil {
				c, err := pgx.Connect(ctx, dsn)
				if err != nil {
					ins.errs.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				conn = c
			}
			m := 1 + i%merchants
			_, err := conn.Exec(ctx, `WITH p AS (
					INSERT INTO payments (id, merchant_id, amount, status, approved_at)
					VALUES (nextval('ids'), $1, 1000 + $2, 'approved', clock_timestamp() - ($2 % 1500) * interval '1 millisecond')
					RETURNING id, merchant_id, amount, approved_at)
				INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
				SELECT nextval('ids'), id, merchant_id, amount / 2, approved_at + interval '1 millisecond' FROM p WHERE $2 % 5 = 0`, m, i)
			if err != nil {
				ins.errs.Add(1)
				conn.Close(ctx)
				conn = nil
				time.Sleep(50 * time.Millisecond)
				continue
			}
			ins.count.Add(1)
			if pause > 0 {
				time.Sleep(pause)
			}
		}
	}()
	return ins
}

func (ins *inserter) halt() int64 {
	close(ins.stop)
	<-ins.done
	return ins.count.Load()
}
