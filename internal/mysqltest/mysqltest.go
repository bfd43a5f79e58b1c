// Package mysqltest gives a test binary a private MariaDB server
// (mysqlserver) with binary logging in row format and a fresh database per
// test, dropped when the test ends, so that tests of MySQL sources run
// against a real server the tests own and depend on nothing an engineer
// started by hand.
package mysqltest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/riskwatch/riskwatch/internal/mysqlserver"
)

// Server is the test binary's server.
type Server struct{ *mysqlserver.Server }

// NewDB creates a fresh database named after t and returns its DSN. The
// database is dropped when t finishes, killing sessions still using it, so
// one test's leftovers cannot block or confuse another.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := s.CreateDB(ctx, t.Name())
	if err != nil {
		t.Fatalf("mysqltest: %v", err)
	}
	t.Cleanup(func() {
		if !s.Running() {
			// Nothing to drop against; the data dir disappears with Close.
			t.Logf("mysqltest: server is not running, leaving database %s in place", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := s.DropDB(ctx, name); err != nil {
			t.Errorf("mysqltest: dropping database %s: %v", name, err)
		}
	})
	return s.DSN(name)
}

// Start starts another private server, for a test that needs one of its own
// (a crash test, or small binlog files through o.MaxBinlogSize).
func Start(ctx context.Context, o mysqlserver.Options) (*Server, error) {
	s, err := mysqlserver.Start(ctx, o)
	if err != nil {
		return nil, err
	}
	return &Server{s}, nil
}

// Main is for TestMain: it starts a server with default options, stores it
// in *dst, runs the tests and closes the server. A server that cannot start
// fails the run rather than skipping tests, so a missing MariaDB is never
// mistaken for passing tests.
func Main(m *testing.M, dst **Server) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := Start(ctx, mysqlserver.Options{})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mysqltest: %v\n", err)
		return 1
	}
	*dst = s
	code := m.Run()
	if err := s.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "mysqltest: closing server: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Dial opens a client connection to a database the DSN
// (mysql://USER:PASSWORD@HOST:PORT/DATABASE, as NewDB returns) names.
func Dial(dsn string) (*client.Conn, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysqltest: dsn: %w", err)
	}
	pw, _ := u.User.Password()
	c, err := client.Connect(u.Host, u.User.Username(), pw, strings.TrimPrefix(u.Path, "/"))
	if err != nil {
		return nil, fmt.Errorf("mysqltest: connecting to %s: %w", u.Host, err)
	}
	return c, nil
}

// Connect is Dial for a test: it fails t on error and closes the
// connection when t ends.
func Connect(t testing.TB, dsn string) *client.Conn {
	t.Helper()
	c, err := Dial(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
