package engine

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/sim"
	"github.com/riskwatch/riskwatch/internal/window"
)

// TestSnapshotStreamHandoff: history loaded by the first snapshot and rows
// committed while it runs (from a steady writer, and inside the snapshot
// itself) are each counted exactly once.
func TestSnapshotStreamHandoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sim.Schema)
	// Two days of history over 300 merchants: 60,000 payments, every third
	// partially cancelled an hour later.
	e.exec(`INSERT INTO payments (id, merchant_id, amount, status, approved_at)
		SELECT nextval('ids'), 1 + g % 300, 500 + (g * 7919) % 100000, 'approved', now() - interval '2 days' + g * interval '2.88 seconds'
		FROM generate_series(1, 60000) g`)
	e.exec(`INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
		SELECT nextval('ids'), id, merchant_id, amount / 3, least(approved_at + interval '1 hour', now()) FROM payments WHERE id % 3 = 0`)

	ins := startInserter(t, e.dsn, 50, 2*time.Millisecond)
	var during atomic.Int64
	hook := func(ctx context.Context) error {
		// The slot exists and the snapshot is imported: these commits are
		// after the consistent point and must arrive through the stream only.
		conn, err := pgx.Connect(ctx, e.dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		for i := 0; i < 50; i++ {
			if _, err := conn.Exec(ctx, `INSERT INTO payments VALUES (nextval('ids'), 999, 12345, 'approved', now())`); err != nil {
				return err
			}
			during.Add(1)
		}
		time.Sleep(300 * time.Millisecond) // let the steady writer commit during the snapshot too
		return nil
	}
	r := e.start(e.config(nil), hook)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	time.Sleep(time.Second)
	n := ins.halt()
	r.caughtUp(30 * time.Second)
	if during.Load() != 50 {
		t.Fatalf("snapshot hook inserted %d rows", during.Load())
	}
	t.Logf("steady writer committed %d payments around the snapshot", n)
	r.assertMatches(sourceMinutesSQL)
	var m999 int64
	if err := e.pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT coalesce(sum(approvals), 0) FROM %s.minute_agg WHERE merchant_id = 999`, r.cfg.Sink.Schema)).Scan(&m999); err != nil {
		t.Fatal(err)
	}
	if m999 != 50 {
		t.Fatalf("merchant 999 has %d approvals in the sink, want the 50 committed during the snapshot", m999)
	}
	if got := r.counter("riskwatch_events_total", "kind", "approval"); got < 50 {
		t.Fatalf("streamed approvals = %v, want at least the 50 committed during the snapshot", got)
	}
}

// TestInvalidLateIgnoredAndIdle runs one engine through late events, every
// kind of dead letter, ignored updates and deletes, and an idle source that
// must still close minutes.
func TestInvalidLateIgnoredAndIdle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sim.Schema)
	// A table whose columns may be NULL, mapped as approvals, for the NULL
	// dead letters the default schema's constraints cannot produce.
	e.exec(`CREATE TABLE loose (id bigserial PRIMARY KEY, merchant bigint, amount bigint, at timestamptz)`)
	cfg := e.config(func(c *config.Config) {
		c.Mapping = append(config.DefaultMapping(), config.TableMapping{Table: "loose", Kind: "approval", Merchant: "merchant", Amount: "amount", Time: "at"})
	})
	r := e.start(cfg, nil)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	r.caughtUp(30 * time.Second)

	// Late: three minutes ago is closed (grace 1s) once the engine runs.
	e.exec(`INSERT INTO payments VALUES (1, 10, 7000, 'approved', now() - interval '3 minutes')`)
	e.exec(`INSERT INTO payment_cancels VALUES (2, 1, 10, 3000, now() - interval '3 minutes')`)
	// On time.
	e.exec(`INSERT INTO payments VALUES (3, 10, 5000, 'approved', now())`)
	// Invalid rows, one per reason.
	e.exec(`INSERT INTO payments VALUES (4, 11, -5, 'approved', now())`)                          // negative_amount
	e.exec(`INSERT INTO payments VALUES (5, 11, 100, 'approved', now() + interval '10 minutes')`) // future_time
	e.exec(`INSERT INTO payment_cancels VALUES (6, 5, 11, 100, now() - interval '9 days')`)       // older_than_retention
	e.exec(`INSERT INTO loose (merchant, amount, at) VALUES (NULL, 1, now())`)                    // null_merchant
	e.exec(`INSERT INTO loose (merchant, amount, at) VALUES (12, NULL, now())`)                   // null_amount
	e.exec(`INSERT INTO loose (merchant, amount, at) VALUES (12, 1, NULL)`)                       // null_time
	e.exec(`INSERT INTO loose (merchant, amount, at) VALUES (0, 1, now())`)                       // invalid_value
	e.exec(`INSERT INTO loose (merchant, amount, at) VALUES (12, 1, 'infinity')`)                 // invalid_value
	e.exec(`INSERT INTO loose (merchant, amount, at) VALUES (12, 40, now())`)                     // valid
	// Not events: counted as ignored.
	e.exec(`UPDATE payments SET status = 'settled' WHERE id = 3`)
	e.exec(`DELETE FROM payments WHERE id = 4`)
	r.caughtUp(30 * time.Second)

	if got := r.counter("riskwatch_late_events_total"); got != 2 {
		t.Errorf("late events = %v, want 2", got)
	}
	wantDead := map[string]int{"negative_amount": 1, "future_time": 1, "older_than_retention": 1, "null_merchant": 1, "null_amount": 1, "null_time": 1, "invalid_value": 2}
	for reason, n := range wantDead {
		if got := r.counter("riskwatch_dead_letters_total", "reason", reason); got != float64(n) {
			t.Errorf("dead letters metric %s = %v, want %d", reason, got, n)
		}
	}
	rows, err := e.pool.Query(context.Background(), fmt.Sprintf(`SELECT reason, source_table, count(*), bool_and(position IS NOT NULL AND commit_time IS NOT NULL AND origin = 'stream')
		FROM %s.dead_letters GROUP BY 1, 2`, cfg.Sink.Schema))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for rows.Next() {
		var reason, table string
		var n int
		var positioned bool
		if err := rows.Scan(&reason, &table, &n, &positioned); err != nil {
			t.Fatal(err)
		}
		if !positioned {
			t.Errorf("dead letters %s/%s lack their source position", reason, table)
		}
		got[reason] += n
	}
	for reason, n := range wantDead {
		if got[reason] != n {
			t.Errorf("dead_letters table has %d %s rows, want %d (all: %v)", got[reason], reason, n, got)
		}
	}
	var detail, rowJSON string
	if err := e.pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT detail, row::text FROM %s.dead_letters WHERE reason = 'negative_amount'`, cfg.Sink.Schema)).Scan(&detail, &rowJSON); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(detail, "-5") || !strings.Contains(rowJSON, `"amount": -5`) {
		t.Errorf("negative amount dead letter: detail %q row %s", detail, rowJSON)
	}
	if got := r.counter("riskwatch_ignored_changes_total", "table", "public.payments", "op", "update"); got != 1 {
		t.Errorf("ignored updates = %v, want 1", got)
	}
	if got := r.counter("riskwatch_ignored_changes_total", "table", "public.payments", "op", "delete"); got != 1 {
		t.Errorf("ignored deletes = %v, want 1", got)
	}
	// Merchant 10 in the late minute: 7000 approved, 3000 canceled, merged
	// into that stored minute.
	var a, aa, c, ca int64
	err = e.pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT approvals, approved_amount, cancels, canceled_amount FROM %s.minute_agg
		WHERE merchant_id = 10 AND minute = (SELECT date_trunc('minute', approved_at) FROM payments WHERE id = 1)`, cfg.Sink.Schema)).Scan(&a, &aa, &c, &ca)
	if err != nil {
		t.Fatal(err)
	}
	if a != 1 || aa != 7000 || c != 1 || ca != 3000 {
		t.Errorf("late minute = %d/%d/%d/%d, want 1/7000/1/3000", a, aa, c, ca)
	}
	r.assertMatches(sourceMinutesSQL + ` UNION ALL SELECT merchant, date_trunc('minute', at), 1, amount, 0, 0 FROM loose WHERE merchant > 0 AND amount IS NOT NULL AND isfinite(at)`)

	// Idle: no more writes. Minutes must keep closing from heartbeats alone,
	// up to the one the source clock says is over, and the slot must keep
	// advancing so the server does not hold WAL for it.
	before := r.eng.Status().LastClosed
	flushedBefore := slotFlushed(t, e)
	r.waitFor("an idle minute to close", 75*time.Second, func() bool { return r.eng.Status().LastClosed > before })
	var srcNow time.Time
	if err := e.pool.QueryRow(context.Background(), "SELECT clock_timestamp()").Scan(&srcNow); err != nil {
		t.Fatal(err)
	}
	// Allow one heartbeat interval plus a flush of slack.
	want := window.New(time.Second, 0).ClosableThrough(srcNow.Add(-time.Second).UnixMicro())
	if got := r.eng.Status().LastClosed; got < want {
		t.Errorf("idle source: last closed minute %s, want at least %s at source time %s", got, want, srcNow)
	}
	if lag := r.eng.Status().LagSeconds; lag > 5 {
		t.Errorf("idle lag %.1fs", lag)
	}
	r.waitFor("the slot to advance while idle", 10*time.Second, func() bool { return slotFlushed(t, e) > flushedBefore })
}

// slotFlushed is the slot's confirmed_flush_lsn as the server sees it.
func slotFlushed(t *testing.T, e *env) uint64 {
	t.Helper()
	var lsn int64
	err := e.pool.QueryRow(context.Background(), `SELECT (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&lsn)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(lsn)
}

// TestBusinessDayBoundary: the minutes either side of midnight in Asia/Seoul
// land in different days and hours of the rollups.
func TestBusinessDayBoundary(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sim.Schema)
	r := e.start(e.config(nil), nil)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	// The latest Seoul midnight at least two hours ago: within retention
	// whatever the hour the test runs at.
	seoul := r.cfg.Location
	ref := time.Now().In(seoul).Add(-2 * time.Hour)
	midnight := time.Date(ref.Year(), ref.Month(), ref.Day(), 0, 0, 0, 0, seoul)
	before, after := midnight.Add(-time.Microsecond), midnight
	e.exec(`INSERT INTO payments VALUES (1, 77, 100, 'approved', $1), (2, 77, 200, 'approved', $2), (3, 77, 400, 'approved', $2)`, before, after)
	r.caughtUp(30 * time.Second)

	rows, err := e.pool.Query(context.Background(), fmt.Sprintf(`SELECT day::text, approvals, approved_amount FROM %s.day_agg WHERE merchant_id = 77 ORDER BY day`, r.cfg.Sink.Schema))
	if err != nil {
		t.Fatal(err)
	}
	type day struct {
		day    string
		n, amt int64
	}
	var got []day
	for rows.Next() {
		var d day
		if err := rows.Scan(&d.day, &d.n, &d.amt); err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	want := []day{{before.In(seoul).Format(time.DateOnly), 1, 100}, {after.Format(time.DateOnly), 2, 600}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("day_agg for merchant 77 = %v, want %v", got, want)
	}
	var hours []time.Time
	rows, err = e.pool.Query(context.Background(), fmt.Sprintf(`SELECT hour FROM %s.hour_agg WHERE merchant_id = 77 ORDER BY hour`, r.cfg.Sink.Schema))
	if err != nil {
		t.Fatal(err)
	}
	hours, err = pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		t.Fatal(err)
	}
	if len(hours) != 2 || !hours[0].Equal(midnight.Add(-time.Hour)) || !hours[1].Equal(midnight) {
		t.Fatalf("hour_agg for merchant 77 = %v, want the hours starting %s and %s", hours, midnight.Add(-time.Hour), midnight)
	}
	r.assertMatches(sourceMinutesSQL)
}

// TestLedgerMapping: one table with a type column feeds both kinds through
// filters, in the snapshot and in the stream; other types are not events.
func TestLedgerMapping(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.exec(`CREATE TABLE ledger (id bigserial PRIMARY KEY, shop integer NOT NULL, type text NOT NULL, krw numeric(18,0) NOT NULL, created timestamp NOT NULL)`)
	e.exec(`INSERT INTO ledger (shop, type, krw, created)
		SELECT 1 + g % 40, (ARRAY['pay','pay','pay','refund','fee'])[1 + g % 5], 100 + g, (now() AT TIME ZONE 'UTC') - g * interval '7 seconds'
		FROM generate_series(1, 5000) g`)
	cfg := e.config(func(c *config.Config) {
		c.Mapping = []config.TableMapping{
			{Table: "public.ledger", Kind: "approval", Merchant: "shop", Amount: "krw", Time: "created", Filter: &config.Filter{Column: "type", In: []string{"pay"}}},
			{Table: "public.ledger", Kind: "cancel", Merchant: "shop", Amount: "krw", Time: "created", Filter: &config.Filter{Column: "type", In: []string{"refund"}}},
		}
	})
	r := e.start(cfg, nil)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	e.exec(`INSERT INTO ledger (shop, type, krw, created)
		SELECT 1 + g % 40, (ARRAY['pay','refund','fee'])[1 + g % 3], 7 * g, now() AT TIME ZONE 'UTC' FROM generate_series(1, 300) g`)
	r.caughtUp(30 * time.Second)
	r.assertMatches(`SELECT shop::bigint AS merchant_id, date_trunc('minute', created AT TIME ZONE 'UTC') AS minute,
			count(*) FILTER (WHERE type = 'pay')::int, coalesce(sum(krw) FILTER (WHERE type = 'pay'), 0)::bigint,
			count(*) FILTER (WHERE type = 'refund')::int, coalesce(sum(krw) FILTER (WHERE type = 'refund'), 0)::bigint
		FROM ledger WHERE type IN ('pay', 'refund') GROUP BY 1, 2`)
	if got := r.counter("riskwatch_filtered_rows_total"); got != 100 {
		t.Fatalf("filtered rows = %v, want the 100 streamed 'fee' rows", got)
	}
}

// TestSourceRestart: the source server restarts mid-stream; the engine
// reconnects by itself and the totals still match. Not parallel: it restarts
// the server every test of this package shares (Go runs the sequential tests
// before the parallel ones).
func TestSourceRestart(t *testing.T) {
	e := newEnv(t, sim.Schema)
	r := e.start(e.config(nil), nil)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	ins := startInserter(t, e.dsn, 30, time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	if err := cluster.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the pipeline to restart", 30*time.Second, func() bool { return r.counter("riskwatch_pipeline_restarts_total") >= 1 })
	afterRestart := ins.count.Load()
	r.waitFor("writes after the restart", 30*time.Second, func() bool { return ins.count.Load() > afterRestart+200 })
	n := ins.halt()
	r.caughtUp(60 * time.Second)
	t.Logf("%d payments committed, %d insert errors while the server was down, %v pipeline restarts",
		n, ins.errs.Load(), r.counter("riskwatch_pipeline_restarts_total"))
	r.assertMatches(sourceMinutesSQL)
	if !r.eng.Status().Ready {
		t.Fatal("engine not ready after the source came back")
	}
}

// TestMinuteDelivery: with source.delivery minute the engine holds no
// replication connection between minutes and reads nothing before a
// minute's end + grace; at that moment it applies everything committed in
// the minute, closes it and raises its alerts, and confirms the slot. After
// a restart it reads what was committed while it was down at once.
func TestMinuteDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sim.Schema)
	seedAlertHistory(e)
	cfg := e.config(func(c *config.Config) { c.Source.Delivery = config.DeliveryMinute })
	// awayFromBoundary waits until the wall clock is well inside a minute,
	// so that what follows happens between two drains.
	awayFromBoundary := func() {
		if s := time.Now().Second(); s < 3 || s >= 45 {
			time.Sleep(time.Until(time.Now().Truncate(time.Minute).Add(time.Minute + 3*time.Second)))
		}
	}
	awayFromBoundary()
	r := e.start(cfg, nil)
	r.waitFor("ready", 60*time.Second, func() bool { return r.eng.Status().Ready })
	awayFromBoundary()
	m := window.MinuteOf(time.Now())
	// The rows of TestAlertsLiveThenBacktest: merchant 100's surge and
	// merchant 200's bust-out fire; merchant 300 stays within its rate.
	e.exec(`INSERT INTO payments SELECT nextval('ids'), 100, 10000, 'approved', now() FROM generate_series(1, 30)`)
	e.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 100, 10000, now() FROM generate_series(1, 12)`)
	e.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 200, 50000, now() FROM generate_series(1, 8)`)
	e.exec(`INSERT INTO payments SELECT nextval('ids'), 300, 10000, 'approved', now() FROM generate_series(1, 50)`)
	e.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 300, 10000, now() FROM generate_series(1, 6)`)
	time.Sleep(2 * time.Second)
	if window.MinuteOf(time.Now()) != m {
		t.Fatal("the test's minute ended before it could check the time between drains")
	}
	var active bool
	if err := e.pool.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&active); err != nil {
		t.Fatal(err)
	}
	if active {
		t.Fatal("the slot is in use between drains")
	}
	if got := r.counter("riskwatch_events_total", "kind", "approval"); got != 0 {
		t.Fatalf("%v approvals applied before the minute ended, want 0", got)
	}
	if got := r.eng.Status().LastClosed; got >= m {
		t.Fatalf("minute %s closed while it was running (last closed %s)", m, got)
	}

	r.waitFor("the minute to close at its drain", 90*time.Second, func() bool { return r.eng.Status().LastClosed >= m })
	if got := r.counter("riskwatch_events_total", "kind", "approval"); got != 80 {
		t.Fatalf("%v approvals applied at the drain, want 80", got)
	}
	if got := r.counter("riskwatch_events_total", "kind", "cancel"); got != 26 {
		t.Fatalf("%v cancels applied at the drain, want 26", got)
	}
	r.assertMatches(sourceMinutesSQL)
	// 100's batch is P2 as in TestAlertsLiveThenBacktest; 200's is P3
	// here, against the platform's 4% without merchant 500's week.
	want := []string{"cancel_rate_spike 100 firing " + m.String() + " P2", "cancel_rate_spike 200 firing " + m.String() + " P3"}
	if got := liveTransitions(t, r.st); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
	applied := r.applied()
	r.waitFor("the drain to confirm what the sink holds", 10*time.Second, func() bool { return slotFlushed(t, e) >= uint64(applied) })
	// One heartbeat per drain, none while quiet (streaming commits one
	// every 200 ms of quiet).
	if hb, drains := r.counter("riskwatch_heartbeats_total"), r.counter("riskwatch_drain_seconds"); hb > drains || drains < 2 {
		t.Fatalf("%v heartbeats for %v drains, want one per drain and at least 2 drains", hb, drains)
	}

	// Down for a moment: the first drain of the next run reads it at once.
	r.shutdown()
	awayFromBoundary()
	e.exec(`INSERT INTO payments SELECT nextval('ids'), 300, 10000, 'approved', now() FROM generate_series(1, 5)`)
	r2 := e.start(cfg, nil)
	r2.waitFor("ready", 60*time.Second, func() bool { return r2.eng.Status().Ready })
	if got := r2.counter("riskwatch_events_total", "kind", "approval"); got != 5 {
		t.Fatalf("%v approvals read by the first drain after the restart, want 5", got)
	}
	r2.waitFor("the restart's rows in the sink", 10*time.Second, func() bool {
		return r2.applied() > applied
	})
	r2.assertMatches(sourceMinutesSQL)
}
