package sim

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// myLines runs q, whose one column is text, on a MySQL DB.
func myLines(t *testing.T, db DB, q string) []string {
	t.Helper()
	var out []string
	err := db.(*myDB).withConn(context.Background(), func(c *myConn) error {
		r, err := c.exec(context.Background(), q)
		if err != nil {
			return err
		}
		for i := range r.RowNumber() {
			s, err := r.GetString(i, 0)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// pgLines runs q, whose one column is text, on PostgreSQL.
func pgLines(t *testing.T, pool *pgxpool.Pool, q string) []string {
	t.Helper()
	rows, _ := pool.Query(context.Background(), q)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// sameLines fails unless got and want hold the same lines, naming the
// first that differs.
func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: PostgreSQL holds nothing to compare", what)
	}
	if slices.Equal(got, want) {
		t.Logf("%s: %d lines alike", what, len(want))
		return
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("%s: line %d is %q on MariaDB, %q on PostgreSQL (%d and %d lines)", what, i, got[i], want[i], len(got), len(want))
		}
	}
	t.Fatalf("%s: %d lines on MariaDB, %d on PostgreSQL", what, len(got), len(want))
}

// TestMySQLHistoryMatchesPostgres loads the same history, incidents
// included, into PostgreSQL and MariaDB, the latter as Korea-time wall
// clocks, and compares the tables: per-merchant per-minute sums, counts,
// and every row with its time to the microsecond.
func TestMySQLHistoryMatchesPostgres(t *testing.T) {
	ctx := context.Background()
	loc := seoul(t)
	pool := newSource(t, 4)
	my, _ := newMySQLSource(t, 4, loc)
	pop := NewPopulation(testSeed, 2000)
	now := time.Date(2026, 11, 25, 15, 4, 5, 0, loc)
	base := newGen(t, Options{Seed: testSeed, Population: pop, PaymentsPerDay: 20_000})
	// Placed on the history, so that their rows are in it.
	g := newGen(t, Options{Seed: testSeed, Population: pop, PaymentsPerDay: 20_000, Scenarios: base.DefaultScenarios(now.Add(-3 * time.Hour))})
	from := now.AddDate(0, 0, -2)

	pp, pc, err := LoadHistory(ctx, pool, g, from, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var last, calls int64
	mp, mc, err := LoadHistoryInto(ctx, my, g, from, now, func(done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		if done > total || done < last {
			t.Errorf("progress %d of %d after %d", done, total, last)
		}
		last = done
		calls++
	})
	if err != nil {
		t.Fatal(err)
	}
	if mp != pp || mc != pc {
		t.Fatalf("MariaDB took %d payments and %d cancels, PostgreSQL %d and %d", mp, mc, pp, pc)
	}
	if last != mp || calls < 3 {
		t.Errorf("%d progress calls ending at %d; want several, ending at %d", calls, last, mp)
	}
	t.Logf("%d payments, %d cancels", mp, mc)

	// PostgreSQL's instants as Korea-time wall clocks, MariaDB's DATETIMEs as written.
	const pgMinute, myMinute = `to_char(%s AT TIME ZONE 'Asia/Seoul', 'YYYY-MM-DD HH24:MI')`, `DATE_FORMAT(%s, '%%Y-%%m-%%d %%H:%%i')`
	const pgMicro, myMicro = `to_char(%s AT TIME ZONE 'Asia/Seoul', 'YYYY-MM-DD HH24:MI:SS.US')`, `DATE_FORMAT(%s, '%%Y-%%m-%%d %%H:%%i:%%s.%%f')`
	for _, c := range []struct{ what, pg, my string }{
		{"counts",
			`SELECT concat_ws('|', (SELECT count(*) FROM payments), (SELECT count(*) FROM payment_cancels), (SELECT count(*) FROM merchants))`,
			`SELECT CONCAT_WS('|', (SELECT COUNT(*) FROM payments), (SELECT COUNT(*) FROM payment_cancels), (SELECT COUNT(*) FROM merchants))`},
		{"payments per merchant and minute",
			`SELECT concat_ws('|', merchant_id, ` + fmt.Sprintf(pgMinute, "approved_at") + `, count(*), sum(amount)) FROM payments GROUP BY merchant_id, ` + fmt.Sprintf(pgMinute, "approved_at"),
			`SELECT CONCAT_WS('|', merchant_id, ` + fmt.Sprintf(myMinute, "approved_at") + `, COUNT(*), SUM(amount)) FROM payments
				GROUP BY merchant_id, ` + fmt.Sprintf(myMinute, "approved_at")},
		{"cancels per merchant and minute",
			`SELECT concat_ws('|', merchant_id, ` + fmt.Sprintf(pgMinute, "canceled_at") + `, count(*), sum(cancel_amount)) FROM payment_cancels GROUP BY merchant_id, ` + fmt.Sprintf(pgMinute, "canceled_at"),
			`SELECT CONCAT_WS('|', merchant_id, ` + fmt.Sprintf(myMinute, "canceled_at") + `, COUNT(*), SUM(cancel_amount)) FROM payment_cancels
				GROUP BY merchant_id, ` + fmt.Sprintf(myMinute, "canceled_at")},
		{"payments",
			`SELECT concat_ws('|', id, merchant_id, amount, status, ` + fmt.Sprintf(pgMicro, "approved_at") + `) FROM payments`,
			`SELECT CONCAT_WS('|', id, merchant_id, amount, status, ` + fmt.Sprintf(myMicro, "approved_at") + `) FROM payments ORDER BY id`},
		{"cancels",
			`SELECT concat_ws('|', id, payment_id, merchant_id, cancel_amount, ` + fmt.Sprintf(pgMicro, "canceled_at") + `) FROM payment_cancels`,
			`SELECT CONCAT_WS('|', id, payment_id, merchant_id, cancel_amount, ` + fmt.Sprintf(myMicro, "canceled_at") + `) FROM payment_cancels ORDER BY id`},
		{"merchants",
			`SELECT concat_ws('|', id, name, ` + fmt.Sprintf(pgMicro, "created_at") + `) FROM merchants`,
			`SELECT CONCAT_WS('|', id, name, ` + fmt.Sprintf(myMicro, "created_at") + `) FROM merchants ORDER BY id`},
	} {
		// Sorted here: the servers' collations need not agree.
		want, got := pgLines(t, pool, c.pg), myLines(t, my, c.my)
		slices.Sort(want)
		slices.Sort(got)
		sameLines(t, c.what, got, want)
	}
}

// TestMySQLLive commits at 100 TPS for 3 s into MariaDB after a short
// history, one payment per transaction, then in batches, and checks the
// rate, the rows, the wall clocks, and that a history payment's cancel
// falling due during the run is committed.
func TestMySQLLive(t *testing.T) {
	ctx := context.Background()
	loc := seoul(t)
	my, _ := newMySQLSource(t, 6, loc)
	g, tiny, now, histFrom := liveHistory(t, my)
	const tps, run = 100.0, 3 * time.Second
	until := time.Now().Add(run)
	var reports int
	st, err := LiveInto(ctx, my, g, LiveOptions{TPS: tps, BurstTPS: -1, Workers: 4, From: now, HistoryFrom: histFrom, Until: until,
		ReportEvery: time.Second, Report: func(LiveStats) { reports++ }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("live: %+v", st)
	if want := tps * run.Seconds(); math.Abs(float64(st.Payments)-want) > 0.2*want || math.Abs(st.AchievedTPS-tps) > 0.2*tps {
		t.Errorf("%d payments at %.1f TPS, want %.0f at %.0f ± 20%%", st.Payments, st.AchievedTPS, want, tps)
	}
	if reports < 3 {
		t.Errorf("%d reports", reports)
	}
	wall := func(t time.Time) string { return t.In(loc).Format(myDatetime) }
	got := myLines(t, my, `SELECT CONCAT_WS('|', COUNT(*), SUM(id % 10000000 >= 5000000), SUM(merchant_id = `+fmt.Sprint(tiny)+`), SUM(approved_at >= '`+wall(until)+`'))
		FROM payments WHERE approved_at >= '`+wall(now)+`'`)
	if want := fmt.Sprint(st.Payments) + "|" + fmt.Sprint(st.Filler) + "|0|0"; got[0] != want {
		t.Errorf("live payments, filler, of the tiny merchant, dated at or after Until: %s; want %s", got[0], want)
	}
	if got := myLines(t, my, `SELECT COUNT(*) FROM payment_cancels WHERE merchant_id = `+fmt.Sprint(tiny)); got[0] != "1" {
		t.Errorf("the tiny merchant's pending cancel: %s rows, want 1", got[0])
	}

	// Batches of ten in a transaction each.
	before := st.Payments
	bctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	bt, err := LiveInto(bctx, my, g, LiveOptions{TPS: 200, BurstTPS: -1, Batch: 10, Workers: 2})
	if err != nil {
		t.Fatalf("stopping by context: %v", err)
	}
	t.Logf("batched: %+v", bt)
	if math.Abs(float64(bt.Payments)-300) > 90 {
		t.Errorf("%d batched payments, want about 300", bt.Payments)
	}
	if got, want := myLines(t, my, `SELECT COUNT(*) FROM payments WHERE approved_at >= '`+wall(now)+`'`)[0], fmt.Sprint(before+bt.Payments); got != want {
		t.Errorf("%s live payments in the table, stats say %s", got, want)
	}
}

// TestMySQLInsertSkipsExisting: the live writer's inserts skip ids that
// exist, alone and in a batch, as ON CONFLICT DO NOTHING does on
// PostgreSQL; the history's are errors, as COPY's are.
func TestMySQLInsertSkipsExisting(t *testing.T) {
	ctx := context.Background()
	my, _ := newMySQLSource(t, 2, time.UTC)
	at := time.Date(2026, 11, 25, 6, 4, 5, 123456000, time.UTC)
	ps := []Payment{{ID: 1, MerchantID: 7, Amount: 1000, ApprovedAt: at}, {ID: 2, MerchantID: 7, Amount: 2000, ApprovedAt: at}}
	cs := []Cancel{{ID: 1, PaymentID: 1, MerchantID: 7, Amount: 500, CanceledAt: at.Add(time.Minute)}}
	c, err := my.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.release()
	for _, step := range []struct {
		ps           []Payment
		cs           []Cancel
		wantP, wantC int64
	}{
		{ps[:1], nil, 1, 0},
		{ps[:1], nil, 0, 0},
		{ps, cs, 1, 1},
		{ps, cs, 0, 0},
		{nil, cs, 0, 0},
	} {
		np, nc, err := c.insert(ctx, step.ps, step.cs)
		if err != nil || np != step.wantP || nc != step.wantC {
			t.Fatalf("insert(%d payments, %d cancels) = %d, %d, %v; want %d, %d", len(step.ps), len(step.cs), np, nc, err, step.wantP, step.wantC)
		}
	}
	if _, err := c.copyCancels(ctx, cs); err == nil {
		t.Error("the history's insert of an existing cancel succeeded")
	}
	got := myLines(t, my, `SELECT CONCAT_WS('|', id, amount, status, approved_at) FROM payments ORDER BY id`)
	if want := []string{"1|1000|approved|2026-11-25 06:04:05.123456", "2|2000|approved|2026-11-25 06:04:05.123456"}; !slices.Equal(got, want) {
		t.Errorf("payments %q, want %q", got, want)
	}
}

// TestMySQLMeta: sim_meta round-trips in the zone it records, which a
// later Open without a zone adopts; written_until only moves forward;
// Empty clears the tables.
func TestMySQLMeta(t *testing.T) {
	ctx := context.Background()
	loc := seoul(t)
	my, dsn := newMySQLSource(t, 2, loc)
	if m, err := my.ReadMeta(ctx); err != nil || m != nil {
		t.Fatalf("before history: %+v, %v", m, err)
	}
	at := time.Date(2026, 11, 25, 15, 4, 5, 123456000, loc)
	want := &Meta{Seed: 1<<63 + 5, Merchants: 2000, PaymentsDay: 20_000, Anchor: at, HistoryFrom: at.AddDate(0, 0, -8), Incidents: true,
		LargeAmount: 6_666_666, WrittenUntil: at, Profile: ProfileRealistic, ScoredDay: time.Date(2026, 11, 24, 0, 0, 0, 0, loc), TimeZone: "Asia/Seoul"}
	if err := my.WriteMeta(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got := myLines(t, my, `SELECT CONCAT_WS('|', anchor, time_zone) FROM sim_meta`); got[0] != "2026-11-25 15:04:05.123456|Asia/Seoul" {
		t.Errorf("sim_meta holds %q", got)
	}
	if err := my.MarkWritten(ctx, at.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	again, err := Open(ctx, dsn, OpenOptions{Conns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	got, err := again.ReadMeta(ctx)
	if err != nil {
		t.Fatal(err)
	}
	same := func(a, b time.Time) bool { return a.Equal(b) }
	if got == nil || got.Seed != want.Seed || got.Merchants != want.Merchants || got.PaymentsDay != want.PaymentsDay ||
		!same(got.Anchor, want.Anchor) || !same(got.HistoryFrom, want.HistoryFrom) || got.Incidents != want.Incidents ||
		got.LargeAmount != want.LargeAmount || !same(got.WrittenUntil, want.WrittenUntil) || got.Profile != want.Profile ||
		!same(got.ScoredDay, want.ScoredDay) || got.TimeZone != want.TimeZone {
		t.Fatalf("read back %+v\nwrote %+v", got, want)
	}
	if z := again.(*myDB).loc.String(); z != "Asia/Seoul" {
		t.Errorf("a DB opened without a zone writes in %s, want the recorded Asia/Seoul", z)
	}
	if err := again.MarkWritten(ctx, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, err := my.ReadMeta(ctx); err != nil || !got.WrittenUntil.Equal(at.Add(time.Hour)) {
		t.Errorf("written_until %v (%v), want %v", got.WrittenUntil, err, at.Add(time.Hour))
	}
	if err := my.Empty(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := my.ReadMeta(ctx); err != nil || m != nil {
		t.Fatalf("after Empty: %+v, %v", m, err)
	}
}
