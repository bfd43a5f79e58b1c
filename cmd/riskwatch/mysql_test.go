package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/riskwatch/riskwatch/internal/binlog"
	"github.com/riskwatch/riskwatch/internal/mysqlserver"
	"github.com/riskwatch/riskwatch/internal/mysqltest"
	"github.com/riskwatch/riskwatch/internal/sim"
)

// mariadb is the package's private MariaDB, started by the first test that
// needs one and closed by TestMain.
var (
	mariadb     *mysqltest.Server
	mariadbOnce sync.Once
	mariadbErr  error
)

func mariaDB(t *testing.T) *mysqltest.Server {
	t.Helper()
	mariadbOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		mariadb, mariadbErr = mysqltest.Start(ctx, mysqlserver.Options{})
	})
	if mariadbErr != nil {
		t.Fatalf("starting MariaDB: %v", mariadbErr)
	}
	return mariadb
}

// mysqlEnv is a MariaDB source database with the default schema and a
// PostgreSQL sink.
type mysqlEnv struct {
	*cliEnv
	my   string // source DSN
	conn *client.Conn
}

func newMySQLEnv(t *testing.T) *mysqlEnv {
	t.Helper()
	c := newCLIEnv(t)
	my := mariaDB(t).NewDB(t)
	conn := mysqltest.Connect(t, my)
	for _, stmt := range strings.Split(sim.MySQLSchema, ";") {
		if strings.TrimSpace(stmt) != "" {
			if _, err := conn.Execute(stmt); err != nil {
				t.Fatal(err)
			}
		}
	}
	return &mysqlEnv{cliEnv: c, my: my, conn: conn}
}

func (e *mysqlEnv) myExec(q string) {
	e.t.Helper()
	if _, err := e.conn.Execute(q); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

func (e *mysqlEnv) writeConfig() string {
	e.t.Helper()
	return e.cliEnv.writeConfigRaw(fmt.Sprintf(`source:
  dsn: %q
  slot: %s
  time_zone: UTC
  reconnect_min: 100ms
  reconnect_max: 1s
sink:
  dsn: %q
merchant_names:
  table: ""
http:
  listen: 127.0.0.1:0
`, e.my, e.slot, e.dsn))
}

// serverEnd is the server's binlog end: file and size of the newest file.
func (e *mysqlEnv) serverEnd() binlog.Position {
	e.t.Helper()
	r, err := e.conn.Execute("SHOW BINARY LOGS")
	if err != nil {
		e.t.Fatal(err)
	}
	n := r.RowNumber()
	name, _ := r.GetString(n-1, 0)
	size, _ := r.GetInt(n-1, 1)
	return binlog.Position{File: name, Pos: uint32(size)}
}

// sinkAt is the sink checkpoint's binlog position (zero when none).
func (e *mysqlEnv) sinkAt() binlog.Position {
	var pos string
	_ = e.pool.QueryRow(context.Background(), `SELECT position FROM riskwatch.checkpoint WHERE slot = $1`, e.slot).Scan(&pos)
	p, _ := binlog.ParsePosition(pos)
	return p
}

func (e *mysqlEnv) sourceCSV(from, to time.Time) string {
	e.t.Helper()
	r, err := e.conn.Execute(`SELECT merchant_id, minute, SUM(a), SUM(aa), SUM(c), SUM(ca) FROM (
		SELECT merchant_id, DATE_FORMAT(approved_at, '%Y-%m-%dT%H:%i:00Z') AS minute, 1 AS a, amount AS aa, 0 AS c, 0 AS ca FROM payments
		UNION ALL SELECT merchant_id, DATE_FORMAT(canceled_at, '%Y-%m-%dT%H:%i:00Z'), 0, 0, 1, cancel_amount FROM payment_cancels) u
		WHERE minute >= ? AND minute < ? GROUP BY merchant_id, minute ORDER BY merchant_id, minute`,
		from.UTC().Format("2006-01-02T15:04:05Z"), to.UTC().Format("2006-01-02T15:04:05Z"))
	if err != nil {
		e.t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("merchant_id,minute,approvals,approved_amount,cancels,canceled_amount\n")
	for i := range r.RowNumber() {
		m, _ := r.GetInt(i, 0)
		minute, _ := r.GetString(i, 1)
		a, _ := r.GetInt(i, 2)
		aa, _ := r.GetString(i, 3)
		c, _ := r.GetInt(i, 4)
		ca, _ := r.GetString(i, 5)
		fmt.Fprintf(&b, "%d,%s,%d,%s,%d,%s\n", m, minute, a, aa, c, ca)
	}
	return b.String()
}

// startLoad commits single-payment transactions (a partial cancel for
// every fourth, in the same transaction) until halted.
func (e *mysqlEnv) startLoad(t *testing.T) *load {
	conn := mysqltest.Connect(t, e.my)
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := int(time.Now().UnixMicro() % 1e12); ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			at := time.Now().Add(-time.Duration(i%700) * time.Millisecond).UTC().Format("2006-01-02 15:04:05.000000")
			var err error
			if i%4 == 0 {
				if err = conn.Begin(); err == nil {
					if _, err = conn.Execute(fmt.Sprintf("INSERT INTO payments VALUES (%d, %d, %d, 'approved', '%s')", i, 1+i%97, 100+i%9000, at)); err == nil {
						if _, err = conn.Execute(fmt.Sprintf("INSERT INTO payment_cancels VALUES (%d, %d, %d, %d, '%s')", i, i, 1+i%97, (100+i%9000)/4, at)); err == nil {
							err = conn.Commit()
						}
					}
				}
			} else {
				_, err = conn.Execute(fmt.Sprintf("INSERT INTO payments VALUES (%d, %d, %d, 'approved', '%s')", i, 1+i%97, 100+i%9000, at))
			}
			if err != nil {
				t.Errorf("load: %v", err)
				return
			}
			l.n.Add(1)
		}
	}()
	return l
}

// TestMySQLCrashRecovery is TestCrashRecovery on a MariaDB source: three
// SIGKILLs of riskwatch run under a steady load, the last life also
// through a source server restart and a binlog rotation; afterwards
// export minutes equals the source's GROUP BY line for line, so nothing
// was counted twice or lost across the kills.
func TestMySQLCrashRecovery(t *testing.T) {
	e := newMySQLEnv(t)
	e.myExec("INSERT INTO payments SELECT seq, 1 + seq % 500, 1000 + seq % 77777, 'approved', UTC_TIMESTAMP(6) - INTERVAL seq * 3 SECOND FROM seq_1_to_150000")
	e.myExec("INSERT INTO payment_cancels SELECT id, id, merchant_id, amount DIV 2, LEAST(approved_at + INTERVAL 10 MINUTE, UTC_TIMESTAMP(6)) FROM payments WHERE id % 7 = 0")
	cfg := e.writeConfig()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	ld := e.startLoad(t)
	for i := range 3 {
		ch := startChild(t, "run", "--config", cfg)
		d := time.Duration(300+rng.IntN(2700)) * time.Millisecond
		time.Sleep(d)
		ch.kill(t)
		t.Logf("kill %d after %s; sink checkpoint %s", i+1, d, e.sinkAt())
	}
	ch := startChild(t, "run", "--config", cfg)
	time.Sleep(time.Second)
	n := ld.halt()
	// The source server restarts under the engine: it reconnects and
	// resumes after what the sink holds, and follows a rotation.
	ctx := context.Background()
	if err := mariaDB(t).Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.conn = mysqltest.Connect(t, e.my)
	e.myExec("FLUSH BINARY LOGS")
	ld = e.startLoad(t)
	time.Sleep(time.Second)
	n += ld.halt()
	target := e.serverEnd()
	waitFor(t, 60*time.Second, "the sink to reach the binlog's end", ch, func() bool {
		at := e.sinkAt()
		return at.File > target.File || (at.File == target.File && at.Pos >= target.Pos)
	})
	t.Logf("load: %d payment transactions through 4 engine lives and a server restart; sink at %s", n, e.sinkAt())

	from, to := time.Now().Add(-8*24*time.Hour).Truncate(time.Minute).Add(time.Minute), time.Now().Add(time.Hour)
	out, errOut, err := runCLI(ctx, "export", "minutes", "--config", cfg, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	if want := e.sourceCSV(from, to); out != want {
		t.Fatalf("export differs from the source GROUP BY after 3 kills:\n%s", firstDiff(out, want))
	}
	t.Logf("export matches the source: %d merchant-minutes", strings.Count(out, "\n")-1)

	status, errOut, err := runCLI(ctx, "slot", "status", "--config", cfg)
	if err != nil || !strings.Contains(status, "binlog_held") || !strings.Contains(status, "sink_checkpoint_position") {
		t.Fatalf("slot status: %v\n%s\n%s", err, status, errOut)
	}
	t.Logf("slot status:\n%s", status)
}
