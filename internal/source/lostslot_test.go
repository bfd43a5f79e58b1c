package source

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/pgtest"
)

// TestInvalidatedSlotIsRebuilt: when the server invalidates the slot
// (max_slot_wal_keep_size exceeded while riskwatch was away), the stream
// fails saying so, and the next start drops the slot and takes a new
// snapshot, as after a dropped slot, instead of retrying for ever.
// A private server: the setting is server-wide and would invalidate the
// slots of tests running beside it.
func TestInvalidatedSlotIsRebuilt(t *testing.T) {
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
	err = s.Stream(ctx, StreamOptions{Start: start, Flushed: func() LSN { return start }, Out: make(chan *Txn, 1)})
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "invalidated") {
		t.Fatalf("Stream from an invalidated slot: %v (permanent %v), want a retried error saying the slot was invalidated", err, IsPermanent(err))
	}
	// The next session's bootstrap asks Resumable: not resumable, and the
	// slot is out of the way of the new snapshot, which sees every row.
	if ok, err := s.Resumable(ctx, start.String()); ok || err != nil {
		t.Fatalf("invalidated slot: resumable %v, %v; want false, nil", ok, err)
	}
	if si, err := s.Slot(ctx); si != nil || err != nil {
		t.Fatalf("invalidated slot left in place: %+v %v", si, err)
	}
	var rows int64
	err = s.CreateSlotWithSnapshot(ctx, func(ctx context.Context, snap *Snapshot) error {
		return snap.tx.QueryRow(ctx, `SELECT count(*) FROM payments`).Scan(&rows)
	})
	if err != nil || rows != 3000 {
		t.Fatalf("new snapshot: %d rows, %v; want 3000", rows, err)
	}
}
