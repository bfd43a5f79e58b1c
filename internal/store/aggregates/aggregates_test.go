package aggregates

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
	"github.com/riskwatch/riskwatch/internal/window"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

func seoul(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func openStore(t *testing.T, loc *time.Location) *Store {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, cluster.NewDB(t), "rw_sink", loc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	s := New(db)
	applied, err := db.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 {
		t.Fatal("first migrate applied nothing")
	}
	again, err := db.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate: %v %v", again, err)
	}
	return s
}

func minute(t *testing.T, s string) window.Minute {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return window.MinuteOf(tm)
}

// lsn is a position as the PostgreSQL source writes it.
func lsn(n uint64) string { return fmt.Sprintf("%X/%X", uint32(n>>32), uint32(n)) }

// bootstrapEmpty loads nothing at position n and returns the checkpoint
// claimed for writing.
func bootstrapEmpty(t *testing.T, s *Store, n uint64) Checkpoint {
	t.Helper()
	err := s.Bootstrap(context.Background(), Checkpoint{Slot: "s1", Position: lsn(n), LastClosed: minute(t, "2026-11-25T14:00:00Z"), Progress: time.Date(2026, 11, 25, 14, 1, 1, 0, time.UTC)},
		func(ctx context.Context, l *Loader) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.Claim(context.Background(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestCheckpointMissing(t *testing.T) {
	t.Parallel()
	s := openStore(t, seoul(t))
	if _, err := s.Checkpoint(context.Background(), "nope"); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("err = %v, want ErrNoCheckpoint", err)
	}
}

// TestApplyRollupsAndExport: deltas accumulate per minute, and the rollups
// follow the Seoul day (14:59 UTC is 23:59 on the 25th there, 15:00 UTC is
// the 26th).
func TestApplyRollupsAndExport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	w := bootstrapEmpty(t, s, 100)
	m1459, m1500 := minute(t, "2026-11-25T14:59:00Z"), minute(t, "2026-11-25T15:00:00Z")
	batches := []Batch{
		{Deltas: []window.Delta{
			{Key: window.Key{Merchant: 7, Minute: m1459}, Agg: window.Agg{Approvals: 2, ApprovedAmount: 3000}},
			{Key: window.Key{Merchant: 7, Minute: m1500}, Agg: window.Agg{Approvals: 1, ApprovedAmount: 500, Cancels: 1, CanceledAmount: 200}},
		}, Position: w.At(lsn(200), m1459, m1500.Start())},
		{Deltas: []window.Delta{
			// A late event for 14:59 lands in the stored minute.
			{Key: window.Key{Merchant: 7, Minute: m1459}, Agg: window.Agg{Cancels: 1, CanceledAmount: 1000}},
			{Key: window.Key{Merchant: 3, Minute: m1500}, Agg: window.Agg{Approvals: 1, ApprovedAmount: 9_000_000_000}},
		}, DeadLetters: []event.DeadLetter{{Table: "public.payments", Kind: event.Approval, Reason: event.ReasonNegativeAmount, Detail: "amount -5",
			Row: map[string]any{"id": 1, "amount": -5}, Position: lsn(250), CommitTime: m1500.Start()}},
			Position: w.At(lsn(300), m1500, m1500.End())},
	}
	for i := range batches {
		if err := s.Apply(ctx, &batches[i]); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := s.Checkpoint(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Position != lsn(300) || cp.LastClosed != m1500 || !cp.Progress.Equal(m1500.End()) || cp.SnapshotPosition != lsn(100) || cp.BusinessTimezone != "Asia/Seoul" {
		t.Fatalf("checkpoint = %+v", cp)
	}
	var out bytes.Buffer
	if _, err := s.ExportMinutes(ctx, m1459.Start(), m1500.End(), &out); err != nil {
		t.Fatal(err)
	}
	want := ExportHeader + "\n" +
		"3,2026-11-25T15:00:00Z,1,9000000000,0,0\n" +
		"7,2026-11-25T14:59:00Z,2,3000,1,1000\n" +
		"7,2026-11-25T15:00:00Z,1,500,1,200\n"
	if out.String() != want {
		t.Fatalf("export:\n%s\nwant:\n%s", out.String(), want)
	}
	type day struct {
		merchant int64
		day      string
		a, aa    int64
		c, ca    int64
	}
	rows, err := s.db.Pool().Query(ctx, `SELECT merchant_id, day::text, approvals, approved_amount, cancels, canceled_amount FROM rw_sink.day_agg ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	var days []day
	for rows.Next() {
		var d day
		if err := rows.Scan(&d.merchant, &d.day, &d.a, &d.aa, &d.c, &d.ca); err != nil {
			t.Fatal(err)
		}
		days = append(days, d)
	}
	wantDays := []day{{3, "2026-11-26", 1, 9_000_000_000, 0, 0}, {7, "2026-11-25", 2, 3000, 1, 1000}, {7, "2026-11-26", 1, 500, 1, 200}}
	if len(days) != len(wantDays) {
		t.Fatalf("days = %v, want %v", days, wantDays)
	}
	for i := range days {
		if days[i] != wantDays[i] {
			t.Fatalf("days = %v, want %v", days, wantDays)
		}
	}
	// Platform totals: the sums over merchants, per minute, late event included.
	plat, err := dashboard.New(s.db).PlatformMinutes(ctx, m1459, m1500+1)
	if err != nil {
		t.Fatal(err)
	}
	wantPlat := []dashboard.Point{
		{At: m1459.Start(), Agg: window.Agg{Approvals: 2, ApprovedAmount: 3000, Cancels: 1, CanceledAmount: 1000}},
		{At: m1500.Start(), Agg: window.Agg{Approvals: 2, ApprovedAmount: 9_000_000_500, Cancels: 1, CanceledAmount: 200}},
	}
	if len(plat) != 2 || !plat[0].At.Equal(wantPlat[0].At) || plat[0].Agg != wantPlat[0].Agg || !plat[1].At.Equal(wantPlat[1].At) || plat[1].Agg != wantPlat[1].Agg {
		t.Fatalf("platform minutes = %+v, want %+v", plat, wantPlat)
	}
	var n int
	var reason string
	if err := s.db.Pool().QueryRow(ctx, `SELECT count(*), min(reason) FROM rw_sink.dead_letters WHERE origin = 'stream' AND position = '0/FA'`).Scan(&n, &reason); err != nil {
		t.Fatal(err)
	}
	if n != 1 || reason != "negative_amount" {
		t.Fatalf("dead letters = %d %s", n, reason)
	}
}

// TestFencedWriterRefused: once another writer claimed the checkpoint, a
// batch of the one before is refused whole (nothing of it is applied), and
// so is a position for a slot never bootstrapped.
func TestFencedWriterRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, time.UTC)
	w := bootstrapEmpty(t, s, 500)
	if _, err := s.Claim(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	m := minute(t, "2026-11-25T10:00:00Z")
	err := s.Apply(ctx, &Batch{Deltas: []window.Delta{{Key: window.Key{Merchant: 1, Minute: m}, Agg: window.Agg{Approvals: 1, ApprovedAmount: 1}}},
		Position: w.At(lsn(600), m, m.End())})
	if !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "another engine") {
		t.Fatalf("err = %v", err)
	}
	var n int
	if err := s.db.Pool().QueryRow(ctx, `SELECT count(*) FROM rw_sink.minute_agg`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("refused batch left %d rows", n)
	}
	if cp, err := s.Checkpoint(ctx, "s1"); err != nil || cp.Position != lsn(500) {
		t.Fatalf("checkpoint after the refused batch: %+v %v", cp, err)
	}
	unknown := Checkpoint{Slot: "unknown", Epoch: 1}
	if err := s.Apply(ctx, &Batch{Position: unknown.At(lsn(900), m, m.End())}); err == nil {
		t.Fatal("a checkpoint for a slot never bootstrapped was accepted")
	}
}

// TestBootstrapIsAtomic: a failing load leaves the previous sink untouched;
// a successful one replaces it and builds rollups in the business zone.
func TestBootstrapIsAtomic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	load := func(rows string) func(ctx context.Context, l *Loader) error {
		return func(ctx context.Context, l *Loader) error {
			if _, err := l.CopyMinutes(ctx, func(w *MinuteWriter) error {
				_, err := io.WriteString(w, rows)
				return err
			}); err != nil {
				return err
			}
			_, err := l.Leftovers(ctx, &event.Output{DeadLetters: []event.DeadLetter{
				{Table: "public.payments", Kind: event.Approval, Reason: event.ReasonNullTime, Detail: "found by the first snapshot", Row: map[string]any{"id": 9}},
			}})
			return err
		}
	}
	cp := Checkpoint{Slot: "s1", Position: lsn(1000), LastClosed: minute(t, "2026-11-25T15:00:00Z"), Progress: time.Date(2026, 11, 25, 15, 1, 2, 0, time.UTC)}
	good := "7\t2026-11-25 14:59:00+00\t2\t3000\t1\t1000\n7\t2026-11-25 15:00:00+00\t1\t500\t0\t0\n"
	if err := s.Bootstrap(ctx, cp, load(good), nil); err != nil {
		t.Fatal(err)
	}
	// The producer fails midway: nothing of this attempt may remain.
	failing := func(ctx context.Context, l *Loader) error {
		_, err := l.CopyMinutes(ctx, func(w *MinuteWriter) error {
			io.WriteString(w, "8\t2026-11-25 10:00:00+00\t1\t1\t0\t0\n")
			return errors.New("source went away")
		})
		return err
	}
	cp2 := cp
	cp2.Position = lsn(2000)
	if err := s.Bootstrap(ctx, cp2, failing, nil); err == nil || !strings.Contains(err.Error(), "source went away") {
		t.Fatalf("failing bootstrap: %v", err)
	}
	got, err := s.Checkpoint(ctx, "s1")
	if err != nil || got.Position != lsn(1000) {
		t.Fatalf("checkpoint after failed bootstrap = %+v, %v", got, err)
	}
	var minutes, hours, days, dead int
	err = s.db.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM rw_sink.minute_agg), (SELECT count(*) FROM rw_sink.hour_agg),
		(SELECT count(*) FROM rw_sink.day_agg), (SELECT count(*) FROM rw_sink.dead_letters WHERE origin = 'snapshot')`).Scan(&minutes, &hours, &days, &dead)
	if err != nil {
		t.Fatal(err)
	}
	// 14:59 and 15:00 UTC: two hours, and two Seoul days (23:59 on the 25th, 00:00 on the 26th).
	if minutes != 2 || hours != 2 || days != 2 || dead != 1 {
		t.Fatalf("after bootstrap: %d minutes, %d hours, %d days, %d dead letters; want 2, 2, 2, 1", minutes, hours, days, dead)
	}
	// A second successful bootstrap replaces, not adds.
	if err := s.Bootstrap(ctx, cp2, load(good), nil); err != nil {
		t.Fatal(err)
	}
	var sum int64
	if err := s.db.Pool().QueryRow(ctx, `SELECT sum(approvals) FROM rw_sink.day_agg`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Pool().QueryRow(ctx, `SELECT count(*) FROM rw_sink.dead_letters`).Scan(&dead); err != nil {
		t.Fatal(err)
	}
	if sum != 3 || dead != 1 {
		t.Fatalf("after re-bootstrap: %d approvals, %d dead letters; want 3, 1", sum, dead)
	}
	// Loaded frozen: every page is all-visible already (ANALYZE counted
	// them), so the first autovacuum has nothing to rewrite under the
	// live stream.
	for _, table := range []string{"minute_agg", "hour_agg", "day_agg", "platform_minute"} {
		var pages, visible int
		if err := s.db.Pool().QueryRow(ctx, `SELECT relpages, relallvisible FROM pg_class WHERE oid = $1::regclass`, "rw_sink."+table).Scan(&pages, &visible); err != nil {
			t.Fatal(err)
		}
		if pages == 0 || visible != pages {
			t.Errorf("%s after bootstrap: %d of %d pages all-visible, want all", table, visible, pages)
		}
	}
	plat, err := dashboard.New(s.db).PlatformMinutes(ctx, minute(t, "2026-11-25T14:59:00Z"), minute(t, "2026-11-25T15:01:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	if len(plat) != 2 || plat[0].Agg != (window.Agg{Approvals: 2, ApprovedAmount: 3000, Cancels: 1, CanceledAmount: 1000}) ||
		plat[1].Agg != (window.Agg{Approvals: 1, ApprovedAmount: 500}) {
		t.Fatalf("platform minutes after bootstrap = %+v", plat)
	}
	if old, ok, err := dashboard.New(s.db).OldestMinute(ctx); err != nil || !ok || old != minute(t, "2026-11-25T14:59:00Z") {
		t.Fatalf("oldest minute = %v %v %v", old, ok, err)
	}
}

// TestRebuildRollups: changing the business zone rebuilds days from minutes.
func TestRebuildRollups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := cluster.NewDB(t)
	db, err := store.Open(ctx, dsn, "rw_sink", seoul(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s := New(db)
	w := bootstrapEmpty(t, s, 1)
	m := minute(t, "2026-11-25T15:30:00Z") // the 26th in Seoul, the 25th in UTC
	if err := s.Apply(ctx, &Batch{Deltas: []window.Delta{{Key: window.Key{Merchant: 1, Minute: m}, Agg: window.Agg{Approvals: 1, ApprovedAmount: 10}}},
		Position: w.At(lsn(2), m, m.End())}); err != nil {
		t.Fatal(err)
	}
	utcDB, err := store.Open(ctx, dsn, "rw_sink", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	defer utcDB.Close()
	utc := New(utcDB)
	if err := utc.RebuildRollups(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	var day string
	if err := utcDB.Pool().QueryRow(ctx, `SELECT day::text FROM rw_sink.day_agg WHERE merchant_id = 1`).Scan(&day); err != nil {
		t.Fatal(err)
	}
	cp, err := utc.Checkpoint(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if day != "2026-11-25" || cp.BusinessTimezone != "UTC" {
		t.Fatalf("after rebuild in UTC: day %s, zone %s", day, cp.BusinessTimezone)
	}
}

func TestPruneMinutes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, time.UTC)
	w := bootstrapEmpty(t, s, 1)
	base := minute(t, "2026-11-01T00:00:00Z")
	var deltas []window.Delta
	for i := window.Minute(0); i < 120; i++ {
		deltas = append(deltas, window.Delta{Key: window.Key{Merchant: 1, Minute: base + i}, Agg: window.Agg{Approvals: 1, ApprovedAmount: 10}})
	}
	if err := s.Apply(ctx, &Batch{Deltas: deltas, Position: w.At(lsn(2), base+119, (base + 119).End())}); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneMinutes(ctx, (base + 45).Start())
	if err != nil || n != 45 {
		t.Fatalf("pruned %d, %v; want the 45 minutes before 00:45", n, err)
	}
	var left, hourSum int64
	if err := s.db.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM rw_sink.minute_agg), (SELECT sum(approvals) FROM rw_sink.hour_agg)`).Scan(&left, &hourSum); err != nil {
		t.Fatal(err)
	}
	if left != 75 || hourSum != 120 {
		t.Fatalf("after pruning: %d minutes left, hourly rollup sums to %d; want 75 and the untouched 120", left, hourSum)
	}
	if old, ok, err := dashboard.New(s.db).OldestMinute(ctx); err != nil || !ok || old != base+45 {
		t.Fatalf("oldest platform minute after pruning = %v %v %v; want 00:45", old, ok, err)
	}
}
