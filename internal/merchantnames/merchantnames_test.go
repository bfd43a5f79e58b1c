package merchantnames

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// TestSync: the first pass copies every merchant; later passes write only
// new and renamed ones; a missing table is an error for Once (Run logs it
// and retries), never a panic or a stop.
func TestSync(t *testing.T) {
	ctx := context.Background()
	dsn := cluster.NewDB(t)
	// One connection, so that every read's statistics are this backend's
	// and scans can flush them.
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st, err := store.Open(ctx, dsn, "riskwatch", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Schema: "crm", Table: "Shops", ID: "shop id", Name: "title", Names: dashboard.New(st),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := s.Once(ctx, pool); err == nil {
		t.Fatal("a missing table must be an error")
	}
	// Quoted identifiers with a space and capitals: the configured names
	// are used as written.
	for _, q := range []string{
		`CREATE SCHEMA crm`,
		`CREATE TABLE crm."Shops" ("shop id" bigint PRIMARY KEY, title text)`,
		`INSERT INTO crm."Shops" SELECT g, 'Shop ' || g FROM generate_series(1, 2500) g`,
		`INSERT INTO crm."Shops" VALUES (9999, NULL)`,
		// As autovacuum would have: the planner needs the id range.
		`ANALYZE crm."Shops"`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Once(ctx, pool); err != nil || n != 2501 {
		t.Fatalf("first pass wrote %d (%v); want 2501", n, err)
	}
	if n, err := s.Once(ctx, pool); err != nil || n != 0 {
		t.Fatalf("unchanged pass wrote %d (%v); want 0", n, err)
	}
	// A restarted engine starts from what the sink holds.
	restarted := New(s.opts)
	if n, err := restarted.Once(ctx, pool); err != nil || n != 0 {
		t.Fatalf("a restarted sync's first pass wrote %d (%v); want 0", n, err)
	}
	// A rename and a new merchant: a refresh asks only for ids above the
	// highest known, through the primary key, so it copies the new one
	// and not the rename.
	if _, err := pool.Exec(ctx, `UPDATE crm."Shops" SET title = 'Renamed' WHERE "shop id" = 7; INSERT INTO crm."Shops" VALUES (10500, 'New')`); err != nil {
		t.Fatal(err)
	}
	seq0, idx0 := scans(t, pool)
	if n, err := s.Newer(ctx, pool); err != nil || n != 1 {
		t.Fatalf("refresh after a rename and an insert wrote %d (%v); want 1", n, err)
	}
	if n, err := s.Newer(ctx, pool); err != nil || n != 0 {
		t.Fatalf("second refresh wrote %d (%v); want 0", n, err)
	}
	// (The planner's own probe of the index for the id range counts as an
	// index scan too, so more than two.)
	if seq, idx := scans(t, pool); seq != seq0 || idx < idx0+2 {
		t.Fatalf("two refreshes: seq_scan %d -> %d, idx_scan %d -> %d; want no sequential scan and index scans", seq0, seq, idx0, idx)
	}
	names, err := dashboard.New(st).MerchantNames(ctx, []int64{7, 10500})
	if err != nil {
		t.Fatal(err)
	}
	if names[7] != "Shop 7" || names[10500] != "New" {
		t.Fatalf("after refreshes: names = %v; want 7 still 'Shop 7', 10500 'New'", names)
	}
	// An id issued below the highest one waits for the full read, which
	// also copies the rename.
	if _, err := pool.Exec(ctx, `INSERT INTO crm."Shops" VALUES (4000, 'Late')`); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Newer(ctx, pool); err != nil || n != 0 {
		t.Fatalf("refresh after a lower id wrote %d (%v); want 0", n, err)
	}
	if n, err := s.Once(ctx, pool); err != nil || n != 2 {
		t.Fatalf("full read wrote %d (%v); want 2 (the rename and id 4000)", n, err)
	}
	names, err = dashboard.New(st).MerchantNames(ctx, []int64{7, 10500, 4000, 9999, 1})
	if err != nil {
		t.Fatal(err)
	}
	if names[7] != "Renamed" || names[10500] != "New" || names[4000] != "Late" || names[9999] != "" || names[1] != "Shop 1" {
		t.Fatalf("names = %v", names)
	}
}

// scans reads the test table's sequential and index scan counters, after
// the (only) backend has flushed its own: it does so when it goes idle.
func scans(t *testing.T, pool *pgxpool.Pool) (seq, idx int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
		t.Fatal(err)
	}
	err := pool.QueryRow(ctx, `SELECT pg_stat_clear_snapshot(), seq_scan, idx_scan FROM pg_stat_user_tables WHERE schemaname = 'crm' AND relname = 'Shops'`).Scan(nil, &seq, &idx)
	if err != nil {
		t.Fatal(err)
	}
	return seq, idx
}
