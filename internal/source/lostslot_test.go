package source

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/pgtest"
)

// TestInvalidatedSlotStopsWithTheFix: when the server invalidates the slot
// (max_slot_wal_keep_size exceeded while riskwatch was away), resuming
// must stop with a permanent error that names the fix, from Resumable and
// from the stream alike, rather than retry for ever or rebuild silently.
// A private server: the setting is server-wide and would invalidate the
// slots of tests running beside it.
func TestInvalidatedSlotStopsWithTheFix(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	dsn := c.NewDB(t)
	db := dbOf(dsn)
	if err := c.Exec(ctx, db, ddl); err != nil {
		t.Fatal(err)
	}
	s := newTestSource(t, dsn, "lost", defaultSpecs())
	if err := s.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	var start LSN
	if err := s.CreateSlotWithSnapshot(ctx, func(_ context.Context, snap *Snapshot) error { start = snap.LSN; return nil }); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Resumable(ctx, start.String()); !ok || err != nil {
		t.Fatalf("fresh slot: resumable %v, %v", ok, err)
	}
	for _, q := range []string{`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`, `ALTER SYSTEM SET wal_keep_size = 0`, `SELECT pg_reload_conf()`} {
		if err := c.Exec(ctx, "postgres", q); err != nil {
			t.Fatal(err)
		}
	}
	// Three segments of WAL past the slot, then a checkpoint, which is
	// when the server invalidates slots that retain too much.
	for i := range 3 {
		if err := c.Exec(ctx, db, `INSERT INTO payments SELECT g, 1, 100, 'a', now() FROM generate_series($1::bigint, $1::bigint + 999) g`, int64(i)*1000); err != nil {
			t.Fatal(err)
		}
		if err := c.Exec(ctx, db, `SELECT pg_switch_wal()`); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Exec(ctx, db, `CHECKPOINT`); err != nil {
		t.Fatal(err)
	}
	si, err := s.Slot(ctx)
	if err != nil || si == nil || si.WALStatus != "lost" {
		t.Fatalf("slot after exceeding max_slot_wal_keep_size: %+v %v, want wal_status lost", si, err)
	}
	wantFix := func(what string, err error) {
		t.Helper()
		if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "invalidated") || !strings.Contains(err.Error(), "riskwatch slot drop") {
			t.Fatalf("%s: %v (permanent %v), want a permanent error naming riskwatch slot drop", what, err, IsPermanent(err))
		}
	}
	ok, err := s.Resumable(ctx, start.String())
	if ok {
		t.Fatal("an invalidated slot reported resumable")
	}
	wantFix("Resumable", err)
	err = s.Stream(ctx, StreamOptions{Start: start, Flushed: func() LSN { return start }, Out: make(chan *Txn, 1)})
	wantFix("Stream", err)
}
