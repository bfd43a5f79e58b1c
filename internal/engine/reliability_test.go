package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/sim"
)

// dropSlot drops the test's slot once the server has seen its last
// walsender go (a stopped engine's connection can outlive it by a moment).
func (e *env) dropSlot() {
	e.t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var active bool
		err := e.pool.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&active)
		if errors.Is(err, pgx.ErrNoRows) {
			return
		}
		if err != nil {
			e.t.Fatalf("reading slot %s: %v", e.slot, err)
		}
		if !active {
			if _, err := e.pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, e.slot); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("slot %s still active after 20s", e.slot)
		}
	}
}

// failMinutes makes every insert into the sink's minute table fail, so
// every flush fails at the same position; the returned func undoes it.
func failMinutes(e *env, schema string) func() {
	e.exec(fmt.Sprintf(`CREATE FUNCTION %[1]s.fail() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'injected failure'; END$$;
		CREATE TRIGGER fail BEFORE INSERT ON %[1]s.minute_agg FOR EACH ROW EXECUTE FUNCTION %[1]s.fail()`, schema))
	return func() { e.exec(fmt.Sprintf(`DROP TRIGGER fail ON %s.minute_agg`, schema)) }
}

// TestStuckPipeline: a flush the sink refuses every time marks the pipeline
// stuck after pipeline.stuck_after identical failures — not ready, the
// metric at 1, the lag growing, an alert with its notification in the
// outbox — and once the sink takes the data again everything clears, the
// alert resolves and the sink equals the source.
func TestStuckPipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sim.Schema)
	cfg := e.config(func(c *config.Config) {
		c.Pipeline.StuckAfter = 3
		c.Pipeline.StuckNotifyAfter = 0
		c.Notify.Receivers = []config.Receiver{{Name: "hook", Type: "webhook", URL: "http://127.0.0.1:1/hook"}}
	})
	r := e.start(cfg, nil)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	r.caughtUp(30 * time.Second)
	if r.eng.Status().Stuck != nil || r.counter("riskwatch_pipeline_stuck") != 0 {
		t.Fatal("stuck before anything failed")
	}

	undo := failMinutes(e, cfg.Sink.Schema)
	e.exec(`INSERT INTO payments VALUES (1, 10, 7000, 'approved', now())`)
	r.waitFor("the pipeline to be stuck", 60*time.Second, func() bool { return r.eng.Status().Stuck != nil })
	st := r.eng.Status()
	if st.Ready {
		t.Error("stuck pipeline reports ready")
	}
	if st.Stuck.Failures < 3 || !strings.Contains(st.Stuck.Error, "injected failure") || st.Stuck.Position != st.Position {
		t.Errorf("stuck = %+v, applied %s", st.Stuck, st.Position)
	}
	if got := r.counter("riskwatch_pipeline_stuck"); got != 1 {
		t.Errorf("riskwatch_pipeline_stuck = %v, want 1", got)
	}
	lag := st.LagSeconds
	time.Sleep(1500 * time.Millisecond)
	if st2 := r.eng.Status(); st2.LagSeconds < lag+1 || st2.Stuck == nil || st2.Stuck.Failures < st.Stuck.Failures {
		t.Errorf("while stuck: lag %.2fs then %.2fs (want growing), stuck %+v", lag, st2.LagSeconds, st2.Stuck)
	}
	ctx := context.Background()
	q := fmt.Sprintf(`SELECT a.state, a."values"->>'error', string_agg(n.kind || ':' || d.receiver, ',' ORDER BY n.id)
		FROM %[1]s.alerts a JOIN %[1]s.notifications n ON n.alert_id = a.id JOIN %[1]s.deliveries d ON d.notification_id = n.id
		WHERE a.rule = 'pipeline_stuck' AND a.merchant_id = 0 GROUP BY a.id, a.state, a."values"`, cfg.Sink.Schema)
	var state, errText, sent string
	r.waitFor("the stuck alert in the outbox", 10*time.Second, func() bool {
		return e.pool.QueryRow(ctx, q).Scan(&state, &errText, &sent) == nil
	})
	if state != "firing" || !strings.Contains(errText, "injected failure") || sent != "firing:hook" {
		t.Errorf("stuck alert: state %s, error %q, notifications %s", state, errText, sent)
	}

	undo()
	r.waitFor("the pipeline to move again", 60*time.Second, func() bool { return r.eng.Status().Stuck == nil && r.eng.Status().Ready })
	r.caughtUp(30 * time.Second)
	if got := r.counter("riskwatch_pipeline_stuck"); got != 0 {
		t.Errorf("riskwatch_pipeline_stuck = %v after recovery, want 0", got)
	}
	if err := e.pool.QueryRow(ctx, q).Scan(&state, &errText, &sent); err != nil {
		t.Fatal(err)
	}
	if state != "resolved" || sent != "firing:hook,resolved:hook" {
		t.Errorf("after recovery: state %s, notifications %s", state, sent)
	}
	r.assertMatches(sourceMinutesSQL)
}

// TestRowsThatCannotStop: rows that used to halt the pipeline or be
// counted wrong — a fractional amount once the amount column is numeric
// (its dead letter's detail held the binary numeric's NUL bytes), amounts
// at int64's limit (their sum wrapped), NaN, a year past 9999 (no JSON
// for it), binary bytes — are dead letters while the stream goes on. After
// the slot is lost and the sink rebuilt from a new snapshot, the same rows
// give the same aggregates and each is recorded once.
func TestRowsThatCannotStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sim.Schema)
	cfg := e.config(nil)
	r := e.start(cfg, nil)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	r.caughtUp(30 * time.Second)

	e.exec(`ALTER TABLE payments ALTER COLUMN amount TYPE numeric; ALTER TABLE payments ADD COLUMN note bytea`)
	e.exec(`INSERT INTO payments VALUES (1, 10, 1234.5, 'approved', now(), '\x00ff')`)
	e.exec(`INSERT INTO payments VALUES (2, 11, 9223372036854775807, 'approved', now()), (3, 11, 9223372036854775807, 'approved', now())`)
	e.exec(`INSERT INTO payments VALUES (4, 12, 'NaN', 'approved', now())`)
	e.exec(`INSERT INTO payments VALUES (5, 12, 1000000000001, 'approved', now())`)
	e.exec(`INSERT INTO payments VALUES (6, 14, 5, 'approved', '294276-01-01')`)
	e.exec(`INSERT INTO payments VALUES (7, 13, 1000.000, 'approved', now()), (8, 13, 1000000000000, 'approved', now())`)
	r.caughtUp(30 * time.Second)
	if st := r.eng.Status(); st.Stuck != nil || !st.Ready {
		t.Fatalf("status after the bad rows: %+v", st)
	}

	ctx := context.Background()
	deadLetters := func() map[string]int {
		t.Helper()
		rows, err := e.pool.Query(ctx, fmt.Sprintf(`SELECT reason, count(*) FROM %s.dead_letters GROUP BY 1`, cfg.Sink.Schema))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for rows.Next() {
			var reason string
			var n int
			if err := rows.Scan(&reason, &n); err != nil {
				t.Fatal(err)
			}
			out[reason] = n
		}
		return out
	}
	want := map[string]int{"invalid_value": 3, "amount_out_of_range": 3}
	if got := deadLetters(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dead letters by reason %v, want %v", got, want)
	}
	var detail, row string
	if err := e.pool.QueryRow(ctx, fmt.Sprintf(`SELECT detail, row::text FROM %s.dead_letters WHERE row->>'id' = '1'`, cfg.Sink.Schema)).Scan(&detail, &row); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(detail, `column "amount"`) || !strings.Contains(row, `"note": "\\x00ff"`) || !strings.Contains(row, `"amount": 1234.5`) {
		t.Errorf("fractional amount's dead letter: detail %q row %s", detail, row)
	}
	// Integral numeric amounts up to max_amount are events.
	reference := `SELECT merchant_id, date_trunc('minute', approved_at) AS minute, count(*)::int, sum(amount)::bigint, 0, 0::bigint FROM payments
		WHERE amount >= 0 AND amount <= 1000000000000 AND amount = trunc(amount) AND approved_at <= now() + interval '5 minutes' GROUP BY 1, 2`
	r.assertMatches(reference)

	// The slot is lost: the next start rebuilds the sink from a snapshot.
	r.shutdown()
	e.dropSlot()
	r2 := e.start(cfg, nil)
	r2.waitFor("ready after the rebuild", 60*time.Second, func() bool { return r2.eng.Status().Ready })
	r2.caughtUp(30 * time.Second)
	if !strings.Contains(r2.logs.String(), "rebuilt from a new snapshot") {
		t.Fatalf("no rebuild:\n%s", r2.logs.String())
	}
	r2.assertMatches(reference)
	if got := deadLetters(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the rebuild, dead letters by reason %v, want each row once: %v", got, want)
	}
}

// TestSumOverflowBothPaths: 9,300 payments of 10^15 KRW (max_amount at its
// largest) in one merchant-minute sum past int64. Streamed, the 9,224th
// and later are dead letters and the minute holds the 9,223 that fit;
// rebuilt from a snapshot, whose GROUP BY sum does not fit the sink, the
// same rows go through the stream's code and give the same minute and the
// same dead letters, recorded once.
func TestSumOverflowBothPaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sim.Schema)
	cfg := e.config(func(c *config.Config) { c.MaxAmount = 1_000_000_000_000_000 })
	r := e.start(cfg, nil)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	r.caughtUp(30 * time.Second)
	e.exec(`INSERT INTO payments SELECT g, 20, 1000000000000000, 'approved', date_trunc('minute', now()) + interval '30 seconds' FROM generate_series(1, 9300) g`)
	e.exec(`INSERT INTO payments VALUES (9301, 21, 5, 'approved', now())`)
	r.caughtUp(30 * time.Second)

	ctx := context.Background()
	check := func(when string) {
		t.Helper()
		var a, aa int64
		var dead int
		err := e.pool.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT sum(approvals)::bigint FROM %[1]s.minute_agg WHERE merchant_id = 20),
			(SELECT sum(approved_amount)::bigint FROM %[1]s.minute_agg WHERE merchant_id = 20),
			(SELECT count(*) FROM %[1]s.dead_letters WHERE reason = 'amount_out_of_range')`, cfg.Sink.Schema)).Scan(&a, &aa, &dead)
		if err != nil {
			t.Fatal(err)
		}
		if a != 9223 || aa != 9223*1_000_000_000_000_000 || dead != 77 {
			t.Errorf("%s: merchant 20 has %d approvals, %d KRW; %d dead letters; want 9223, %d, 77", when, a, aa, dead, int64(9223*1_000_000_000_000_000))
		}
	}
	check("streamed")
	// Merchant 20 is checked above; the source's own GROUP BY cannot hold it.
	r.assertMatches(`SELECT merchant_id, date_trunc('minute', approved_at), count(*)::int, sum(amount)::bigint, 0, 0::bigint FROM payments
		WHERE merchant_id <> 20 GROUP BY 1, 2 UNION ALL SELECT merchant_id, minute, approvals, approved_amount, cancels, canceled_amount FROM ` +
		cfg.Sink.Schema + ".minute_agg WHERE merchant_id = 20")
	r.shutdown()
	e.dropSlot()
	r2 := e.start(cfg, nil)
	r2.waitFor("ready after the rebuild", 60*time.Second, func() bool { return r2.eng.Status().Ready })
	r2.caughtUp(30 * time.Second)
	check("rebuilt")
}

// TestSinkOutage: with the sink on its own server, stopped for a while,
// the pipeline keeps retrying, becomes stuck (the same refusal at the same
// position), its lag grows the whole time, nothing can be written about it
// to the sink; when the sink is back it catches up exactly.
func TestSinkOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sink, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	e := newEnv(t, sim.Schema)
	sinkDSN := sink.NewDB(t)
	cfg := e.config(func(c *config.Config) {
		c.Sink.DSN = sinkDSN
		c.Pipeline.StuckNotifyAfter = 0
	})
	r := e.start(cfg, nil)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	ins := startInserter(t, e.dsn, 20, 20*time.Millisecond)
	time.Sleep(time.Second)
	r.caughtUp(30 * time.Second)

	if err := sink.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the pipeline to be stuck with the sink down", 60*time.Second, func() bool { return r.eng.Status().Stuck != nil })
	st := r.eng.Status()
	if st.Ready || r.counter("riskwatch_pipeline_stuck") != 1 {
		t.Errorf("sink down: ready %v, stuck metric %v", st.Ready, r.counter("riskwatch_pipeline_stuck"))
	}
	lag := st.LagSeconds
	time.Sleep(2 * time.Second)
	if now := r.eng.Status().LagSeconds; now < lag+1.5 {
		t.Errorf("lag went from %.2fs to %.2fs in 2s with the sink down; it must keep growing", lag, now)
	}
	if !strings.Contains(r.logs.String(), "could not record the stuck-pipeline alert") {
		t.Error("no word that the stuck alert could not be recorded")
	}

	if err := sink.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	n := ins.halt()
	r.waitFor("the pipeline to move again", 60*time.Second, func() bool { return r.eng.Status().Stuck == nil && r.eng.Status().Ready })
	r.caughtUp(60 * time.Second)
	t.Logf("%d payments committed around the outage", n)

	// The sink is another server: compare the two sides row by row here.
	rowsOf := func(pool *pgxpool.Pool, q string) map[string]bool {
		t.Helper()
		rows, err := pool.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]bool{}
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			out[fmt.Sprint(v...)] = true
		}
		return out
	}
	src := rowsOf(e.pool, `SELECT merchant_id, extract(epoch FROM minute)::bigint, approvals::bigint, approved_amount, cancels::bigint, canceled_amount FROM (`+sourceMinutesSQL+`) s`)
	snk := rowsOf(r.st0(t).Pool(), fmt.Sprintf(`SELECT merchant_id, extract(epoch FROM minute)::bigint, approvals::bigint, approved_amount, cancels::bigint, canceled_amount FROM %s.minute_agg`, cfg.Sink.Schema))
	if len(src) == 0 || !maps.Equal(src, snk) {
		t.Errorf("after the outage the sink holds %d merchant-minutes, the source %d, and they differ", len(snk), len(src))
	}
	var alerts int
	if err := r.st0(t).Pool().QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.alerts WHERE rule = 'pipeline_stuck'`, cfg.Sink.Schema)).Scan(&alerts); err != nil || alerts != 0 {
		t.Errorf("%d stuck alerts recorded in a sink that was down (%v)", alerts, err)
	}
}
