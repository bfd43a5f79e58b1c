package sim

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/pgtest"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

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
