package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/mysqltest"
)

// TestCaptureMariaDB is the scale-out on a MariaDB source: riskwatch
// capture reads the binlog (its first start snapshots the history) and
// publishes to an in-process Kafka (kfake), two workers aggregate. The
// gateway stores Korea time in DATETIME(6) columns (source.time_zone:
// Asia/Seoul) and commits single rows, multi-row INSERTs and transactions
// of a payment and its cancel, with a zero date and a negative amount now
// and then; capture is SIGKILLed mid-stream and restarted, so it
// publishes some rows twice. Afterwards export minutes equals the source's
// own GROUP BY line for line, and every bad row is one dead letter.
func TestCaptureMariaDB(t *testing.T) {
	e := newMySQLEnv(t)
	kc := startKafka(t)
	ctx := context.Background()
	// Zero dates are what a lax gateway (no strict mode) writes.
	e.myExec("SET SESSION sql_mode = ''")
	// Three days of history, Korea wall clocks (UTC+9, no daylight saving).
	e.myExec("INSERT INTO payments SELECT seq, 1 + seq % 50, 1000 + seq % 777, 'approved', UTC_TIMESTAMP(6) + INTERVAL 9 HOUR - INTERVAL seq * 86 SECOND FROM seq_1_to_3000")
	e.myExec("INSERT INTO payment_cancels SELECT id, id, merchant_id, amount DIV 3, approved_at + INTERVAL 5 MINUTE FROM payments WHERE id % 9 = 0 AND id > 10")
	e.myExec("INSERT INTO payments VALUES (9001, 7, 500, 'approved', '0000-00-00 00:00:00'), (9002, 7, -500, 'approved', UTC_TIMESTAMP(6) + INTERVAL 9 HOUR)")
	// The MySQL tests' config, in Korea time, with Kafka.
	base, err := os.ReadFile(e.writeConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(base), "time_zone: UTC\n") {
		t.Fatalf("config without time_zone: UTC:\n%s", base)
	}
	cfg := e.writeConfigRaw(strings.Replace(string(base), "time_zone: UTC\n", "time_zone: Asia/Seoul\n", 1) + kafkaConfig(kc, e.slot))

	capture := startChild(t, "capture", "--config", cfg)
	waitFor(t, 60*time.Second, "capture to snapshot and initialise 12 partitions", capture, func() bool {
		var n int
		_ = e.pool.QueryRow(ctx, `SELECT count(*) FROM riskwatch.kafka_partitions WHERE topic = $1`, e.slot).Scan(&n)
		return n == 12
	})
	workers := []*child{startChild(t, "worker", "--config", cfg, "--member", "w1"), startChild(t, "worker", "--config", cfg, "--member", "w2")}
	for _, w := range workers {
		waitReady(t, w, 60*time.Second)
	}

	ld := e.seoulLoad(t)
	time.Sleep(3 * time.Second)
	capture.kill(t)
	t.Log("capture killed")
	capture = startChild(t, "capture", "--config", cfg)
	time.Sleep(3 * time.Second)
	n := ld.halt()

	from, to := time.Now().Add(-8*24*time.Hour).Truncate(time.Minute).Add(time.Minute), time.Now().Add(time.Hour)
	want := e.seoulSourceCSV(from, to)
	// The workers catch up with what capture published: poll the sink.
	deadline := time.Now().Add(90 * time.Second)
	var got string
	for {
		out, errOut, err := runCLI(ctx, "export", "minutes", "--config", cfg, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
		if err != nil {
			t.Fatalf("export: %v\n%s", err, errOut)
		}
		if got = out; got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workers' minutes differ from the source's GROUP BY:\n%s", firstDiff(got, want))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d load transactions; %d merchant-minutes equal the source's GROUP BY", n, strings.Count(got, "\n")-1)

	// The history's and the stream's zero dates and negative amounts, each
	// once although capture published part of the stream twice.
	wantDead := fmt.Sprintf("invalid_value=%d,negative_amount=%d", 1+ld.bad.Load(), 1+ld.bad.Load())
	var dead string
	waitFor(t, 30*time.Second, "a dead letter for each bad row", capture, func() bool {
		dead = e.deadLetterCounts(t)
		return dead == wantDead
	})
	var redelivered float64
	for _, w := range workers {
		line := metricLine(scrape(t, "http://"+w.httpAddr(t, time.Second)+"/metrics"), "riskwatch_worker_duplicates_total")
		var d float64
		fmt.Sscanf(strings.TrimPrefix(line, "riskwatch_worker_duplicates_total "), "%g", &d)
		redelivered += d
	}
	t.Logf("records capture published again after its kill, dropped by the workers: %.0f", redelivered)
	if redelivered == 0 {
		t.Fatal("no record was redelivered: capture's kill did not exercise deduplication")
	}
}

// seoulLoad commits, until halted, Korea-time rows in three shapes: one
// payment; a multi-row INSERT of two payments (one binlog row event);
// a payment and its partial cancel in one transaction. Every 97th
// transaction also writes a zero-date payment and a negative one.
type seoulLoad struct {
	*load
	bad atomic.Int64
}

func (e *mysqlEnv) seoulLoad(t *testing.T) *seoulLoad {
	conn := mysqltest.Connect(t, e.my)
	if _, err := conn.Execute("SET SESSION sql_mode = ''"); err != nil {
		t.Fatal(err)
	}
	l := &seoulLoad{load: &load{stop: make(chan struct{}), done: make(chan struct{})}}
	go func() {
		defer close(l.done)
		exec := func(q string) bool {
			if _, err := conn.Execute(q); err != nil {
				t.Errorf("load: %s: %v", q, err)
				return false
			}
			return true
		}
		for i := 100_000; ; i += 10 {
			select {
			case <-l.stop:
				return
			default:
			}
			at := time.Now().UTC().Add(9*time.Hour - time.Duration(i%500)*time.Millisecond).Format("2006-01-02 15:04:05.000000")
			m := 1 + i%61
			var ok bool
			switch i / 10 % 3 {
			case 0:
				ok = exec(fmt.Sprintf("INSERT INTO payments VALUES (%d, %d, %d, 'approved', '%s')", i, m, 100+i%9000, at))
			case 1:
				ok = exec(fmt.Sprintf("INSERT INTO payments VALUES (%d, %d, %d, 'approved', '%s'), (%d, %d, %d, 'approved', '%s')",
					i, m, 100+i%9000, at, i+1, 1+(i+7)%61, 200+i%700, at))
			default:
				ok = exec("BEGIN") &&
					exec(fmt.Sprintf("INSERT INTO payments VALUES (%d, %d, %d, 'approved', '%s')", i, m, 100+i%9000, at)) &&
					exec(fmt.Sprintf("INSERT INTO payment_cancels VALUES (%d, %d, %d, %d, '%s')", i, i, m, (100+i%9000)/4, at)) &&
					exec("COMMIT")
			}
			if ok && i/10%97 == 0 {
				ok = exec(fmt.Sprintf("INSERT INTO payments VALUES (%d, 7, 10, 'approved', '0000-00-00 00:00:00'), (%d, 7, -10, 'approved', '%s')", i+2, i+3, at))
				if ok {
					l.bad.Add(1)
				}
			}
			if !ok {
				return
			}
			l.n.Add(1)
		}
	}()
	return l
}

// seoulSourceCSV is the source's GROUP BY of its valid rows as export
// minutes writes it, each line made by the server: minutes are Korea wall
// clocks less nine hours.
func (e *mysqlEnv) seoulSourceCSV(from, to time.Time) string {
	e.t.Helper()
	r, err := e.conn.Execute(`SELECT CONCAT_WS(',', merchant_id, minute, SUM(a), SUM(aa), SUM(c), SUM(ca)) FROM (
		SELECT merchant_id, DATE_FORMAT(approved_at - INTERVAL 9 HOUR, '%Y-%m-%dT%H:%i:00Z') AS minute, 1 AS a, amount AS aa, 0 AS c, 0 AS ca
		  FROM payments WHERE amount >= 0 AND approved_at > '1000-01-01'
		UNION ALL SELECT merchant_id, DATE_FORMAT(canceled_at - INTERVAL 9 HOUR, '%Y-%m-%dT%H:%i:00Z'), 0, 0, 1, cancel_amount
		  FROM payment_cancels WHERE cancel_amount >= 0 AND canceled_at > '1000-01-01') u
		WHERE minute >= ? AND minute < ? GROUP BY merchant_id, minute ORDER BY merchant_id, minute`,
		from.UTC().Format("2006-01-02T15:04:05Z"), to.UTC().Format("2006-01-02T15:04:05Z"))
	if err != nil {
		e.t.Fatal(err)
	}
	lines := []string{"merchant_id,minute,approvals,approved_amount,cancels,canceled_amount"}
	for i := range r.RowNumber() {
		line, err := r.GetString(i, 0)
		if err != nil {
			e.t.Fatal(err)
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n") + "\n"
}

// deadLetterCounts is the sink's dead letters as "reason=count,…".
func (e *mysqlEnv) deadLetterCounts(t *testing.T) string {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT reason, count(*) FROM riskwatch.dead_letters GROUP BY reason ORDER BY reason`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var dead []string
	for rows.Next() {
		var reason string
		var c int
		if err := rows.Scan(&reason, &c); err != nil {
			t.Fatal(err)
		}
		dead = append(dead, fmt.Sprintf("%s=%d", reason, c))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(dead, ",")
}
