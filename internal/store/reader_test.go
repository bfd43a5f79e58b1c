package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestReaderRole: the reader role, through a login user that is a member
// of it, reads every sink table, including one a later migration creates,
// and can change nothing; ensuring it twice changes nothing.
func TestReaderRole(t *testing.T) {
	ctx := context.Background()
	dsn := cluster.NewDB(t)
	db, err := Open(ctx, dsn, "rw_sink", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Roles are the cluster's, shared by every test database.
	role := fmt.Sprintf("rw_reader_%d", os.Getpid())
	login := role + "_login"
	t.Cleanup(func() {
		db.pool.Exec(context.Background(), fmt.Sprintf("DROP OWNED BY %[1]s; DROP ROLE IF EXISTS %[2]s; DROP ROLE IF EXISTS %[1]s", role, login))
	})
	if _, err := db.pool.Exec(ctx, `INSERT INTO rw_sink.minute_agg VALUES (7, '2026-01-02T03:04:00Z', 2, 3000, 1, 500)`); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		created, err := db.EnsureReaderRole(ctx, role)
		if err != nil || created != want {
			t.Fatalf("EnsureReaderRole #%d = %v, %v; want created %v", i+1, created, err, want)
		}
	}
	var canLogin bool
	if err := db.pool.QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", role).Scan(&canLogin); err != nil || canLogin {
		t.Fatalf("reader role can log in: %v %v", canLogin, err)
	}
	// A table a later migration adds, created by the migrating user.
	if _, err := db.pool.Exec(ctx, `CREATE TABLE rw_sink.later (x int); INSERT INTO rw_sink.later VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE %s", login, role)); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(login)
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	var approvals, later int
	if err := conn.QueryRow(ctx, `SELECT approvals FROM rw_sink.minute_agg WHERE merchant_id = 7`).Scan(&approvals); err != nil || approvals != 2 {
		t.Fatalf("reader SELECT minute_agg = %d, %v", approvals, err)
	}
	if err := conn.QueryRow(ctx, `SELECT x FROM rw_sink.later`).Scan(&later); err != nil || later != 42 {
		t.Fatalf("reader SELECT on a table created after the grant = %d, %v", later, err)
	}
	for _, tbl := range []string{"alerts", "deliveries", "dead_letters", "checkpoint", "platform_minute", "merchants", "hour_agg", "day_agg"} {
		if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT * FROM rw_sink.%s LIMIT 1", tbl)); err != nil {
			t.Errorf("reader SELECT %s: %v", tbl, err)
		}
	}
	for _, stmt := range []string{
		`INSERT INTO rw_sink.minute_agg VALUES (8, '2026-01-02T03:04:00Z', 1, 1, 0, 0)`,
		`UPDATE rw_sink.minute_agg SET approvals = 0`,
		`DELETE FROM rw_sink.minute_agg`,
		`TRUNCATE rw_sink.minute_agg`,
		`INSERT INTO rw_sink.later VALUES (1)`,
		`DELETE FROM rw_sink.later`,
		`CREATE TABLE rw_sink.mine (x int)`,
		`SELECT nextval('rw_sink.alerts_id_seq')`,
	} {
		_, err := conn.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("reader %s: err = %v, want insufficient_privilege (42501)", stmt, err)
		}
	}
	if err := db.pool.QueryRow(ctx, `SELECT approvals FROM rw_sink.minute_agg WHERE merchant_id = 7`).Scan(&approvals); err != nil || approvals != 2 {
		t.Fatalf("minute after the reader's attempts = %d, %v", approvals, err)
	}

	for _, bad := range []string{"", "pg_reader", "x\x00y"} {
		if _, err := db.EnsureReaderRole(ctx, bad); err == nil {
			t.Errorf("EnsureReaderRole(%q) succeeded", bad)
		}
	}
}
