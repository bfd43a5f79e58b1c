// Package pgtest gives a test binary a private PostgreSQL cluster
// (pgserver) and a fresh database per test, dropped with its replication
// slots when the test ends, so that I/O tests run against a real server
// the tests own and depend on nothing an engineer started by hand.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/pgserver"
)

// Cluster is the test binary's server.
type Cluster struct{ *pgserver.Cluster }

// NewDB creates a fresh database named after t and returns its DSN. The
// database and any replication slots in it are dropped when t finishes, so
// slots left behind by one test cannot retain WAL or block another.
func (c *Cluster) NewDB(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := c.CreateDB(ctx, t.Name())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if !c.Running() {
			// Nothing to drop against; the data dir disappears with Close.
			t.Logf("pgtest: server is stopped, leaving database %s in place", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := c.DropDB(ctx, name); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return c.DSN(name)
}

// Start starts another private cluster, for a test that needs a second
// server (a sink of its own).
func Start(ctx context.Context) (*Cluster, error) {
	c, err := pgserver.Start(ctx)
	if err != nil {
		return nil, err
	}
	return &Cluster{c}, nil
}

// Main is for TestMain: it starts a cluster, stores it in *dst, runs the
// tests and closes the cluster. A cluster that cannot start fails the run
// rather than skipping tests, so a missing PostgreSQL is never mistaken for
// passing tests.
func Main(m *testing.M, dst **Cluster) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := Start(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	*dst = c
	code := m.Run()
	if err := c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: closing cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
