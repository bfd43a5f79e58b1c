package sim

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/mysqlserver"
	"github.com/riskwatch/riskwatch/internal/mysqltest"
	"github.com/riskwatch/riskwatch/internal/pgtest"
)

var cluster *pgtest.Cluster

// mariadb is the package's private MariaDB, started by the first test that
// needs one (most tests here do not) and closed by TestMain.
var mariadb struct {
	once   sync.Once
	server *mysqltest.Server
	err    error
}

func TestMain(m *testing.M) {
	code := pgtest.Main(m, &cluster)
	if mariadb.server != nil {
		if err := mariadb.server.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "closing MariaDB: %v\n", err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

// newMySQLSource is a fresh MariaDB database, opened as a DB writing
// wall clocks in zone, and its DSN.
func newMySQLSource(t *testing.T, conns int, zone *time.Location) (DB, string) {
	t.Helper()
	mariadb.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		mariadb.server, mariadb.err = mysqltest.Start(ctx, mysqlserver.Options{})
	})
	if mariadb.err != nil {
		t.Fatalf("starting MariaDB: %v", mariadb.err)
	}
	dsn := mariadb.server.NewDB(t)
	db, err := Open(context.Background(), dsn, OpenOptions{Conns: conns, TimeZone: zone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db, dsn
}

// testSeed is the fixed seed whose calibration the tests assert.
const testSeed = 42

func seoul(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// newSource is a fresh database with the default source schema.
func newSource(t *testing.T, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(cluster.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), Schema); err != nil {
		t.Fatalf("creating the source schema: %v", err)
	}
	return pool
}

func newGen(t testing.TB, o Options) *Generator {
	t.Helper()
	if o.Location == nil {
		o.Location = seoul(t)
	}
	g, err := NewGenerator(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// collect generates [from, to) into slices.
func collect(t testing.TB, g *Generator, from, to time.Time) ([]Payment, []Cancel) {
	t.Helper()
	var ps []Payment
	var cs []Cancel
	err := g.Generate(from, to, func(p Payment) error { ps = append(ps, p); return nil },
		func(c Cancel) error { cs = append(cs, c); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return ps, cs
}
