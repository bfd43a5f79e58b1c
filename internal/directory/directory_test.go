package directory

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
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// TestSync: the first pass copies every merchant; later passes write only
// new and renamed ones; a missing table is an error for Once (Run logs it
// and retries), never a panic or a stop.
func TestSync(t *testing.T) {
	ctx := context.Background()
	dsn := cluster.NewDB(t)
	pool, err := pgxpool.New(ctx, dsn)
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
	s := New(Options{Schema: "crm", Table: "Shops", ID: "shop id", Name: "title", Store: st,
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
	if _, err := pool.Exec(ctx, `UPDATE crm."Shops" SET title = 'Renamed' WHERE "shop id" = 7; INSERT INTO crm."Shops" VALUES (3000, 'New')`); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Once(ctx, pool); err != nil || n != 2 {
		t.Fatalf("pass after a rename and an insert wrote %d (%v); want 2", n, err)
	}
	names, err := st.MerchantNames(ctx, []int64{7, 3000, 9999, 1})
	if err != nil {
		t.Fatal(err)
	}
	if names[7] != "Renamed" || names[3000] != "New" || names[9999] != "" || names[1] != "Shop 1" {
		t.Fatalf("names = %v", names)
	}
}
