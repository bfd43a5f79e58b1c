package merchantnames

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/mysqlserver"
	"github.com/riskwatch/riskwatch/internal/mysqltest"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// source is a source database in one dialect: statements that build and
// change the test's merchants table, and the counters that tell a full
// read of it from an index lookup.
type source struct {
	exec func(t *testing.T, q string)
	// create makes the table, quoted "shop id" and title columns, with
	// shops 1..2500 and shop 9999 without a name.
	create []string
	// renameAndAdd renames shop 7 and adds shop 10500; addLate adds shop
	// 4000.
	renameAndAdd, addLate []string
	// scans reads how many full reads and index reads of the table (on
	// MySQL, rows the server read so) there were so far; noise is how far
	// full may move without a full read of the table.
	scans func(t *testing.T) (full, index int64)
	noise int64
}

// checkSync: the first pass copies every merchant; later passes write only
// new and renamed ones through the primary key; a missing table is an
// error for Once (Run logs it and retries), never a panic or a stop.
func checkSync(t *testing.T, src Reader, db source, schema string) {
	ctx := context.Background()
	st, err := store.Open(ctx, cluster.NewDB(t), "riskwatch", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Quoted identifiers with a space and capitals: the configured names
	// are used as written.
	s := New(Options{Schema: schema, Table: "Shops", ID: "shop id", Name: "title", Names: dashboard.New(st),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := s.Once(ctx, src); err == nil {
		t.Fatal("a missing table must be an error")
	}
	for _, q := range db.create {
		db.exec(t, q)
	}
	if got, err := s.Once(ctx, src); err != nil || got != 2501 {
		t.Fatalf("first pass wrote %d (%v); want 2501", got, err)
	}
	if got, err := s.Once(ctx, src); err != nil || got != 0 {
		t.Fatalf("unchanged pass wrote %d (%v); want 0", got, err)
	}
	// A restarted engine starts from what the sink holds.
	restarted := New(s.opts)
	if got, err := restarted.Once(ctx, src); err != nil || got != 0 {
		t.Fatalf("a restarted sync's first pass wrote %d (%v); want 0", got, err)
	}
	// A rename and a new merchant: a refresh asks only for ids above the
	// highest known, through the primary key, so it copies the new one
	// and not the rename.
	for _, q := range db.renameAndAdd {
		db.exec(t, q)
	}
	full0, idx0 := db.scans(t)
	if got, err := s.Newer(ctx, src); err != nil || got != 1 {
		t.Fatalf("refresh after a rename and an insert wrote %d (%v); want 1", got, err)
	}
	if got, err := s.Newer(ctx, src); err != nil || got != 0 {
		t.Fatalf("second refresh wrote %d (%v); want 0", got, err)
	}
	full, idx := db.scans(t)
	if full-full0 > db.noise || idx <= idx0 {
		t.Fatalf("two refreshes: full reads %d -> %d, index reads %d -> %d; want no full read and index reads", full0, full, idx0, idx)
	}
	t.Logf("two refreshes: full reads %d -> %d, index reads %d -> %d", full0, full, idx0, idx)
	names, err := dashboard.New(st).MerchantNames(ctx, []int64{7, 10500})
	if err != nil {
		t.Fatal(err)
	}
	if names[7] != "Shop 7" || names[10500] != "New" {
		t.Fatalf("after refreshes: names = %v; want 7 still 'Shop 7', 10500 'New'", names)
	}
	// An id issued below the highest one waits for the full read, which
	// also copies the rename.
	for _, q := range db.addLate {
		db.exec(t, q)
	}
	if got, err := s.Newer(ctx, src); err != nil || got != 0 {
		t.Fatalf("refresh after a lower id wrote %d (%v); want 0", got, err)
	}
	if got, err := s.Once(ctx, src); err != nil || got != 2 {
		t.Fatalf("full read wrote %d (%v); want 2 (the rename and id 4000)", got, err)
	}
	names, err = dashboard.New(st).MerchantNames(ctx, []int64{7, 10500, 4000, 9999, 1})
	if err != nil {
		t.Fatal(err)
	}
	if names[7] != "Renamed" || names[10500] != "New" || names[4000] != "Late" || names[9999] != "" || names[1] != "Shop 1" {
		t.Fatalf("names = %v", names)
	}
}

func TestSyncPostgres(t *testing.T) {
	ctx := context.Background()
	// One connection, so that every read's statistics are this backend's
	// and scans can flush them.
	pcfg, err := pgxpool.ParseConfig(cluster.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	exec := func(t *testing.T, q string) {
		t.Helper()
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	checkSync(t, Postgres(pool), source{
		exec: exec,
		create: []string{
			`CREATE SCHEMA crm`,
			`CREATE TABLE crm."Shops" ("shop id" bigint PRIMARY KEY, title text)`,
			`INSERT INTO crm."Shops" SELECT g, 'Shop ' || g FROM generate_series(1, 2500) g`,
			`INSERT INTO crm."Shops" VALUES (9999, NULL)`,
			// As autovacuum would have: the planner needs the id range.
			`ANALYZE crm."Shops"`,
		},
		renameAndAdd: []string{`UPDATE crm."Shops" SET title = 'Renamed' WHERE "shop id" = 7; INSERT INTO crm."Shops" VALUES (10500, 'New')`},
		addLate:      []string{`INSERT INTO crm."Shops" VALUES (4000, 'Late')`},
		// The backend flushes its statistics when it goes idle; the
		// planner's own probe of the index for the id range counts as an
		// index scan too.
		scans: func(t *testing.T) (seq, idx int64) {
			t.Helper()
			exec(t, `SELECT pg_stat_force_next_flush()`)
			err := pool.QueryRow(ctx, `SELECT pg_stat_clear_snapshot(), seq_scan, idx_scan FROM pg_stat_user_tables WHERE schemaname = 'crm' AND relname = 'Shops'`).Scan(nil, &seq, &idx)
			if err != nil {
				t.Fatal(err)
			}
			return seq, idx
		},
	}, "crm")
}

// TestSyncMySQL reads a MariaDB source, the table unqualified (schema
// "public", as config gives it): the DSN's database.
func TestSyncMySQL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	server, err := mysqltest.Start(ctx, mysqlserver.Options{})
	cancel()
	if err != nil {
		t.Fatalf("starting MariaDB: %v", err)
	}
	t.Cleanup(func() {
		if err := server.Close(); err != nil {
			t.Errorf("closing MariaDB: %v", err)
		}
	})
	dsn := server.NewDB(t)
	src, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	db := src.(*myReader).database
	exec := func(t *testing.T, q string) {
		t.Helper()
		if err := server.Exec(context.Background(), db, q); err != nil {
			t.Fatal(err)
		}
	}
	// Counted over the whole server, which only this test uses: rows read
	// by scanning (Handler_read_rnd_next; SHOW STATUS itself reads a few,
	// a scan of the table 2,501) and index lookups.
	checkSync(t, src, source{
		exec: exec,
		create: []string{
			"CREATE TABLE `Shops` (`shop id` BIGINT NOT NULL PRIMARY KEY, title VARCHAR(100) NULL)",
			"INSERT INTO `Shops` SELECT seq, CONCAT('Shop ', seq) FROM seq_1_to_2500", // MariaDB's Sequence engine
			"INSERT INTO `Shops` VALUES (9999, NULL)",
		},
		renameAndAdd: []string{"UPDATE `Shops` SET title = 'Renamed' WHERE `shop id` = 7", "INSERT INTO `Shops` VALUES (10500, 'New')"},
		addLate:      []string{"INSERT INTO `Shops` VALUES (4000, 'Late')"},
		scans: func(t *testing.T) (full, index int64) {
			t.Helper()
			r, err := server.Query(context.Background(), db,
				"SHOW GLOBAL STATUS WHERE Variable_name IN ('Handler_read_rnd_next', 'Handler_read_key')")
			if err != nil {
				t.Fatal(err)
			}
			for i := range r.RowNumber() {
				name, _ := r.GetString(i, 0)
				v, _ := r.GetString(i, 1)
				var n int64
				fmt.Sscan(v, &n)
				if name == "Handler_read_rnd_next" {
					full = n
				} else {
					index = n
				}
			}
			return full, index
		},
		noise: 100,
	}, "public")
}
