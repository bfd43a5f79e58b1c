package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/sim"
)

var cluster *pgtest.Cluster

// TestMain doubles as the riskwatch binary: the crash tests start this test
// executable with RISKWATCH_TEST_MAIN=1 as a child process and SIGKILL it,
// which exercises the real main, flags, signals and exit codes.
func TestMain(m *testing.M) {
	if os.Getenv("RISKWATCH_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	code := pgtest.Main(m, &cluster)
	if mariadb != nil {
		if err := mariadb.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "closing MariaDB: %v\n", err)
		}
	}
	os.Exit(code)
}

type cliEnv struct {
	t    *testing.T
	dsn  string
	pool *pgxpool.Pool
	dir  string
	slot string
}

var slotSeq atomic.Int64

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	dsn := cluster.NewDB(t)
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), sim.Schema); err != nil {
		t.Fatal(err)
	}
	return &cliEnv{t: t, dsn: dsn, pool: pool, dir: t.TempDir(), slot: fmt.Sprintf("rw_cli_%d_%d", os.Getpid(), slotSeq.Add(1))}
}

// writeConfig writes riskwatch.yaml for this env and returns its path.
func (c *cliEnv) writeConfig(extra string) string {
	c.t.Helper()
	body := fmt.Sprintf(`source:
  dsn: %q
  slot: %s
  publication: %s
  reconnect_min: 100ms
  reconnect_max: 1s
http:
  listen: 127.0.0.1:0
%s`, c.dsn, c.slot, c.slot, extra)
	return c.writeConfigRaw(body)
}

// writeConfigRaw writes body as riskwatch.yaml and returns its path.
func (c *cliEnv) writeConfigRaw(body string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, "riskwatch.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *cliEnv) exec(sql string, args ...any) {
	c.t.Helper()
	if _, err := c.pool.Exec(context.Background(), sql, args...); err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
}

// runCLI runs a command in-process and returns stdout, stderr and the error.
func runCLI(ctx context.Context, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := run(ctx, args, &out, &errb, func(string) string { return "" })
	return out.String(), errb.String(), err
}

// child is the engine running as a separate process.
type child struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan error
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "RISKWATCH_TEST_MAIN=1")
	c := &child{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = c.stderr
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	return c
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	c.exited <- nil // for the cleanup
}

// httpAddr waits for the child's "http listening" log line.
func (c *child) httpAddr(t *testing.T, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(c.stderr.String()))
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "msg=\"http listening\" addr="); i >= 0 {
				return strings.TrimSpace(line[i+len("msg=\"http listening\" addr="):])
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("child did not start its HTTP server:\n%s", c.stderr.String())
	return ""
}

// sinkLSN is the checkpoint the sink holds for the slot (0 when none).
func (c *cliEnv) sinkLSN() pglogrepl.LSN {
	var pos string
	if err := c.pool.QueryRow(context.Background(), `SELECT position FROM riskwatch.checkpoint WHERE slot = $1`, c.slot).Scan(&pos); err != nil {
		return 0
	}
	lsn, err := pglogrepl.ParseLSN(pos)
	if err != nil {
		return 0
	}
	return lsn
}

func (c *cliEnv) walLSN() pglogrepl.LSN {
	var s string
	if err := c.pool.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		c.t.Fatal(err)
	}
	l, err := pglogrepl.ParseLSN(s)
	if err != nil {
		c.t.Fatal(err)
	}
	return l
}

func (c *cliEnv) waitSink(target pglogrepl.LSN, timeout time.Duration, ch *child) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for c.sinkLSN() < target {
		if time.Now().After(deadline) {
			c.t.Fatalf("sink checkpoint %s never reached %s\n%s", c.sinkLSN(), target, ch.stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// sourceCSV is the expected export: the GROUP BY over the source, rendered
// in the export's CSV format, for minutes in [from, to).
func (c *cliEnv) sourceCSV(from, to time.Time) string {
	c.t.Helper()
	rows, err := c.pool.Query(context.Background(), `
		SELECT merchant_id, minute, sum(a), sum(aa), sum(cc), sum(ca) FROM (
			SELECT merchant_id, date_trunc('minute', approved_at) AS minute, 1 AS a, amount AS aa, 0 AS cc, 0::bigint AS ca FROM payments
			UNION ALL SELECT merchant_id, date_trunc('minute', canceled_at), 0, 0, 1, cancel_amount FROM payment_cancels) u
		WHERE minute >= $1 AND minute < $2 GROUP BY 1, 2 ORDER BY 1, 2`, from, to)
	if err != nil {
		c.t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("merchant_id,minute,approvals,approved_amount,cancels,canceled_amount\n")
	for rows.Next() {
		var m, a, aa, cc, ca int64
		var minute time.Time
		if err := rows.Scan(&m, &minute, &a, &aa, &cc, &ca); err != nil {
			c.t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d,%s,%d,%d,%d,%d\n", m, minute.UTC().Format(time.RFC3339), a, aa, cc, ca)
	}
	if err := rows.Err(); err != nil {
		c.t.Fatal(err)
	}
	return b.String()
}

// load commits single-payment transactions (a partial cancel for every
// fourth) until stopped.
type load struct {
	stop, done chan struct{}
	n          atomic.Int64
}

func startLoad(t *testing.T, dsn string) *load {
	return runLoad(t, dsn, `WITH p AS (
			INSERT INTO payments VALUES (nextval('ids'), 1 + $1 % 97, 100 + $1 % 9000, 'approved', clock_timestamp() - ($1 % 700) * interval '1 millisecond')
			RETURNING id, merchant_id, amount, approved_at)
		INSERT INTO payment_cancels SELECT nextval('ids'), id, merchant_id, amount / 4, approved_at FROM p WHERE $1 % 4 = 0`,
		func(i int) []any { return []any{i} })
}

// runLoad commits sql, one transaction per call, with args(i) for the i-th,
// from one connection until halted.
func runLoad(t *testing.T, dsn, sql string, args func(i int) []any) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			if _, err := conn.Exec(ctx, sql, args(i)...); err != nil {
				t.Error(err)
				return
			}
			l.n.Add(1)
		}
	}()
	return l
}

func (l *load) halt() int64 {
	close(l.stop)
	<-l.done
	return l.n.Load()
}

// TestCrashRecovery is SPEC §4's invariant under kill -9: the engine runs as
// a child process under a steady insert load, is killed with SIGKILL three
// times at random moments (the first may land inside the first snapshot) and
// restarted; afterwards every stored minute equals the GROUP BY over the
// source, row for row.
func TestCrashRecovery(t *testing.T) {
	c := newCLIEnv(t)
	// History so that the first snapshot takes a moment.
	c.exec(`INSERT INTO payments SELECT nextval('ids'), 1 + g % 500, 1000 + g % 77777, 'approved', now() - g * interval '3 seconds' FROM generate_series(1, 150000) g`)
	c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), id, merchant_id, amount / 2, least(approved_at + interval '10 minutes', now()) FROM payments WHERE id % 7 = 0`)
	var history int64
	if err := c.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM payments) + (SELECT count(*) FROM payment_cancels)`).Scan(&history); err != nil {
		t.Fatal(err)
	}
	cfg := c.writeConfig("")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	ld := startLoad(t, c.dsn)
	started := time.Now()
	for i := 0; i < 3; i++ {
		ch := startChild(t, "run", "--config", cfg)
		d := time.Duration(300+rng.IntN(2700)) * time.Millisecond
		time.Sleep(d)
		ch.kill(t)
		t.Logf("kill %d after %s; sink checkpoint %s", i+1, d, c.sinkLSN())
	}
	ch := startChild(t, "run", "--config", cfg)
	time.Sleep(time.Second)
	n := ld.halt()
	target := c.walLSN()
	c.waitSink(target, 60*time.Second, ch)
	elapsed := time.Since(started)
	var events int64
	if err := c.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM payments) + (SELECT count(*) FROM payment_cancels)`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	t.Logf("live load: %d payment transactions in %s; %d events streamed through 4 engine lives, %.0f events/s end to end",
		n, elapsed.Round(time.Millisecond), events-history, float64(events-history)/elapsed.Seconds())
	metrics := scrape(t, "http://"+ch.httpAddr(t, 10*time.Second)+"/metrics")
	for _, name := range []string{"riskwatch_replication_lag_seconds", "riskwatch_replication_lag_bytes", "riskwatch_commit_to_aggregate_seconds_count"} {
		t.Logf("final engine: %s", metricLine(metrics, name))
	}

	// Compare over the whole retention through the operator's own tool.
	from, to := time.Now().Add(-8*24*time.Hour).Truncate(time.Minute).Add(time.Minute), time.Now().Add(time.Hour)
	out, errOut, err := runCLI(context.Background(), "export", "minutes", "--config", cfg, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	want := c.sourceCSV(from, to)
	if out != want {
		t.Fatalf("export differs from the source GROUP BY after 3 kills:\n%s", firstDiff(out, want))
	}
	t.Logf("export matches the source: %d merchant-minutes", strings.Count(out, "\n")-1)
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func metricLine(metrics, name string) string {
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			return l
		}
	}
	return name + " (absent)"
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: got %q, want %q (got %d lines, want %d)", i+1, gl, wl, len(g), len(w))
		}
	}
	return "identical"
}
