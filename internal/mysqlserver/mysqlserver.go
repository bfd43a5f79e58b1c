// Package mysqlserver supervises a private MariaDB server: mariadb-install-db
// into a temporary directory, a free port on 127.0.0.1, a binary log in row
// format with full row images and metadata (what a binlog reader needs), a
// random root password, a reaper that cleans up if the owning process dies,
// crashes, restarts and stops that never stall. The tests (through mysqltest)
// start their servers with it; nothing here depends on package testing, so
// it can be linked into a command.
package mysqlserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/riskwatch/riskwatch/internal/pgserver"
)

const (
	errNoBinaries = "MariaDB server binaries not found: install Debian's mariadb-server package (make test does, through scripts/ensure-mariadb.sh)"

	// readyTimeout bounds how long we wait for a started server to accept
	// connections; it is generous because a start after Kill runs InnoDB
	// and binlog crash recovery, on a machine busy with other tests.
	readyTimeout = 60 * time.Second

	// portAttempts is how often Start picks a new port when the one it picked
	// was taken by someone else between our probe and the server's bind
	// (parallel test binaries make this race real).
	portAttempts = 5

	// stopTimeout bounds a clean shutdown; after it the server is killed,
	// so StopServer and Restart never stall a test.
	stopTimeout = 30 * time.Second

	// exitTimeout bounds the wait for a SIGKILLed server to be gone.
	exitTimeout = 30 * time.Second

	logTailLines = 40

	errorLogFile = "error.log"
	socketFile   = "mysqld.sock"
	dataSubdir   = "data"

	// The server's limits for max_binlog_size.
	minBinlogSize = 4096
	maxBinlogSize = 1 << 30
)

// storageArgs are given to the bootstrap server of mariadb-install-db and to
// every start, so the files created at install already have the sizes the
// server runs with. They keep a server small, since tests run several:
//   - a 64 MB buffer pool and a 16 MB redo log (the defaults are 128 MB and
//     96 MB, and the redo log is allocated in full);
//   - small Aria and MyISAM caches (128 MB and 8 MB by default; only the
//     system tables use these engines);
//   - innodb_flush_log_at_trx_commit=2 and no doublewrite buffer: every
//     commit is written to the kernel but not fsynced. Kill simulates a
//     crash of the server process, not of the machine, so the kernel still
//     has every committed write and crash recovery finds it; only durability
//     against power loss is given up, which no test exercises. sync_binlog
//     stays at its default 0 for the same reason.
var storageArgs = []string{
	"--innodb-buffer-pool-size=64M",
	"--innodb-log-file-size=16M",
	"--innodb-flush-log-at-trx-commit=2",
	"--innodb-doublewrite=0",
	"--aria-pagecache-buffer-size=8M",
	"--key-buffer-size=8M",
}

// Server is a private MariaDB server owned by one process.
type Server struct {
	// Port is the TCP port on 127.0.0.1 the server listens on. It stays the
	// same across Kill, StopServer, StartServer and Restart so DSNs remain
	// valid.
	Port int
	// Dir holds everything of the server: the data directory (DataDir), the
	// Unix socket, the pid file and error.log.
	Dir string

	opts      Options
	mariadbd  string
	installDB string
	cred      *syscall.Credential // nil when we are not root
	password  string

	dbSeq atomic.Int64

	mu     sync.Mutex // serialises server state changes
	proc   *process   // the last mariadbd started; nil before the first start and after a stop
	closed bool

	// reaper cleans up if this process dies without calling Close: it blocks
	// reading reaperW's pipe and acts on EOF, which the kernel delivers
	// however we exit (panic, test timeout, SIGKILL).
	reaper  *exec.Cmd
	reaperW *os.File
}

// Options configures a server.
type Options struct {
	// MaxBinlogSize, when > 0, is max_binlog_size in bytes (tests of rotation use 4096..).
	// The server rounds it down to a multiple of 4096; it must lie between
	// 4096 and 1 GiB.
	MaxBinlogSize int64
	// BufferPoolSize and LogFileSize, when > 0, replace storageArgs' small
	// InnoDB buffer pool and redo log (bytes, multiples of 1 MiB), for a
	// server that holds a production-sized table, as the benchmark's does.
	BufferPoolSize, LogFileSize int64
	// PerformanceSchema turns performance_schema on (off by default, as
	// it costs every statement a little): the benchmark finds a
	// connection's OS thread through performance_schema.threads.
	PerformanceSchema bool
}

func (o Options) validate() error {
	if o.MaxBinlogSize < 0 || o.MaxBinlogSize > 0 && (o.MaxBinlogSize < minBinlogSize || o.MaxBinlogSize > maxBinlogSize) {
		return fmt.Errorf("MaxBinlogSize %d is outside the server's range %d..%d", o.MaxBinlogSize, minBinlogSize, maxBinlogSize)
	}
	for _, f := range []struct {
		name string
		n    int64
	}{{"BufferPoolSize", o.BufferPoolSize}, {"LogFileSize", o.LogFileSize}} {
		if f.n < 0 || f.n%(1<<20) != 0 {
			return fmt.Errorf("%s %d is not a whole number of MiB", f.name, f.n)
		}
	}
	return nil
}

// sizeArgs are the options' storage sizes as server options; given after
// storageArgs, they win.
func (o Options) sizeArgs() []string {
	var args []string
	if o.BufferPoolSize > 0 {
		args = append(args, fmt.Sprintf("--innodb-buffer-pool-size=%dM", o.BufferPoolSize>>20))
	}
	if o.LogFileSize > 0 {
		args = append(args, fmt.Sprintf("--innodb-log-file-size=%dM", o.LogFileSize>>20))
	}
	return args
}

// process is one run of mariadbd, our direct child.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // cmd.Wait's result, set before done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start installs a fresh server in a new temp dir and starts it on a free
// 127.0.0.1 port with binary logging on, then gives every root account a
// random password (see configureRoot). As root, the directory is handed to
// the mysql user and every MariaDB binary runs as it.
func Start(ctx context.Context, o Options) (*Server, error) {
	return start(ctx, o, pgserver.FreePort)
}

// start takes the port picker as a parameter so tests can simulate losing
// the race for a port.
func start(ctx context.Context, o Options, pickPort func() (int, error)) (*Server, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	mariadbd, installDB, err := findBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := pgserver.ServiceCredential("mysql", "MariaDB")
	if err != nil {
		return nil, err
	}
	dir, err := pgserver.MakeTempDir("riskwatch-mysqlserver-")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Dir:       dir,
		opts:      o,
		mariadbd:  mariadbd,
		installDB: installDB,
		cred:      cred,
		// Base32, so it needs no quoting in SQL or in a DSN.
		password: rand.Text(),
	}
	if err := s.start(ctx, pickPort); err != nil {
		if cerr := s.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", cerr))
		}
		return nil, fmt.Errorf("starting mariadb: %w", err)
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, pickPort func() (int, error)) error {
	if s.cred != nil {
		// mariadb-install-db runs as mysql and creates the data directory
		// in here.
		if err := os.Chown(s.Dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("chowning %s to mysql: %w", s.Dir, err)
		}
	}
	if err := s.startReaper(); err != nil {
		return err
	}
	if err := s.install(ctx); err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range portAttempts {
		if s.Port, err = pickPort(); err != nil {
			return err
		}
		// Until configureRoot has run, root@localhost has no password, and
		// only the socket reaches that account.
		err = s.launch(ctx, s.socket(), "")
		if errors.Is(err, errPortTaken) {
			continue
		}
		if err != nil {
			return err
		}
		return s.configureRoot(ctx)
	}
	return fmt.Errorf("gave up after %d ports: %w", portAttempts, err)
}

// Addr returns the server's TCP address, "127.0.0.1:PORT".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
}

// DSN returns a URL for database db as root with its password:
// "mysql://root:PASSWORD@127.0.0.1:PORT/db".
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("mysql://root:%s@%s/%s", s.password, s.Addr(), db)
}

// RootPassword returns the password of every root account (root@localhost,
// root@127.0.0.1, root@::1 and root@%).
func (s *Server) RootPassword() string {
	return s.password
}

// DataDir returns the server's data directory, which also holds the binary
// logs (binlog.000001, ... and binlog.index).
func (s *Server) DataDir() string {
	return filepath.Join(s.Dir, dataSubdir)
}

func (s *Server) socket() string {
	return filepath.Join(s.Dir, socketFile)
}

// CreateDB creates a fresh database named after base (made a valid
// identifier, with a counter so that names never repeat) and returns its
// name.
func (s *Server) CreateDB(ctx context.Context, base string) (string, error) {
	name := dbName(base, s.dbSeq.Add(1))
	if err := s.Exec(ctx, "", "CREATE DATABASE "+quoteIdent(name)); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return name, nil
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// dbName derives a valid, unique database name from a test name. The counter
// suffix keeps names unique even when sanitising or truncating maps distinct
// test names (or repeated -count runs) to the same base.
func dbName(testName string, seq int64) string {
	suffix := "_" + strconv.FormatInt(seq, 10)
	base := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(testName), "_"), "_")
	if base == "" {
		base = "db"
	}
	// MariaDB's identifiers are at most 64 characters.
	if max := 64 - len(suffix); len(base) > max {
		base = strings.TrimRight(base[:max], "_")
	}
	return base + suffix
}

// DropDB drops database name, first killing the sessions using it: a
// session with an open transaction on one of its tables holds a metadata
// lock that DROP DATABASE would wait for until lock_wait_timeout (a day).
func (s *Server) DropDB(ctx context.Context, name string) error {
	c, err := dial(ctx, s.Addr(), s.password, "")
	if err != nil {
		return err
	}
	defer c.close()
	// A lock held by a session using another database is not found below;
	// give up on such a lock quickly and go round again.
	if _, err := c.Execute("SET SESSION lock_wait_timeout = 2"); err != nil {
		return ctxErr(ctx, fmt.Errorf("dropping database %s: %w", name, err))
	}
	for {
		if err := killSessions(c, name); err != nil {
			return ctxErr(ctx, fmt.Errorf("dropping database %s: %w", name, err))
		}
		_, err := c.Execute("DROP DATABASE IF EXISTS " + quoteIdent(name))
		if err == nil {
			return nil
		}
		if !isMyError(err, mysql.ER_LOCK_WAIT_TIMEOUT) {
			return ctxErr(ctx, fmt.Errorf("dropping database %s: %w", name, err))
		}
		if serr := sleep(ctx, 20*time.Millisecond); serr != nil {
			return fmt.Errorf("dropping database %s: %w (last error: %w)", name, serr, err)
		}
	}
}

// killSessions kills every other session whose current database is db.
func killSessions(c *conn, db string) error {
	r, err := c.Execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()", db)
	if err != nil {
		return fmt.Errorf("listing sessions: %w", err)
	}
	defer r.Close()
	for i := range r.RowNumber() {
		id, err := r.GetUint(i, 0)
		if err != nil {
			return fmt.Errorf("reading session id: %w", err)
		}
		// The session may have ended on its own meanwhile.
		if _, err := c.Execute("KILL CONNECTION " + strconv.FormatUint(id, 10)); err != nil && !isMyError(err, mysql.ER_NO_SUCH_THREAD) {
			return fmt.Errorf("killing session %d: %w", id, err)
		}
	}
	return nil
}

// Exec runs one statement as root in database db ("" for none).
func (s *Server) Exec(ctx context.Context, db, sql string) error {
	r, err := s.Query(ctx, db, sql)
	if err != nil {
		return err
	}
	r.Close()
	return nil
}

// Query runs one statement as root in database db ("" for none) and returns
// its result; with args it is run as a prepared statement with them bound
// to its placeholders.
func (s *Server) Query(ctx context.Context, db, sql string, args ...any) (*mysql.Result, error) {
	c, err := dial(ctx, s.Addr(), s.password, db)
	if err != nil {
		return nil, err
	}
	defer c.close()
	r, err := c.Execute(sql, args...)
	if err != nil {
		where := db
		if where == "" {
			where = "no database"
		}
		return nil, ctxErr(ctx, fmt.Errorf("executing SQL in %s: %w", where, err))
	}
	return r, nil
}

// conn is a client connection whose I/O is bound by the context it was
// dialled with.
type conn struct {
	*client.Conn
	stop func() bool
}

// dial connects as root to addr, a host:port or a Unix socket path.
// go-mysql's I/O does not take a context, so the socket's deadline is set
// into the past when ctx ends, which fails whatever is blocked on it.
func dial(ctx context.Context, addr, password, db string) (*conn, error) {
	var stop func() bool
	dialer := func(ctx context.Context, network, address string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		stop = context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
		return nc, nil
	}
	c, err := client.ConnectWithDialer(ctx, "", addr, "root", password, db, dialer)
	if err != nil {
		if stop != nil {
			stop()
		}
		return nil, ctxErr(ctx, fmt.Errorf("connecting to %s as root: %w", addr, err))
	}
	return &conn{Conn: c, stop: stop}, nil
}

// close ends the session politely (so the server does not log an aborted
// connection) and closes the connection.
func (c *conn) close() {
	c.stop()
	if err := c.Quit(); err != nil {
		c.Close()
	}
}

// ctxErr puts ctx's error in front of err once ctx has ended: the deadline
// trick in dial makes go-mysql report an i/o timeout instead.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

func isMyError(err error, code uint16) bool {
	var me *mysql.MyError
	return errors.As(err, &me) && me.Code == code
}

func quoteIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// rootHosts are the hosts of the root accounts configureRoot leaves, all
// with the same password: localhost for the socket, the loopback addresses
// for TCP (with skip-name-resolve, TCP clients are matched by IP) and % so
// that nothing depends on which of those a client arrives with.
var rootHosts = []string{"localhost", "127.0.0.1", "::1", "%"}

// configureRoot gives every root account the password and all privileges,
// and drops the root account mariadb-install-db made for the machine's host
// name, which skip-name-resolve ignores (with a warning at every start). It
// runs once, through the socket as the passwordless root@localhost that
// mariadb-install-db --auth-root-authentication-method=normal creates;
// s.mu must be held.
func (s *Server) configureRoot(ctx context.Context) error {
	c, err := dial(ctx, s.socket(), "", "")
	if err != nil {
		return fmt.Errorf("setting the root password: %w", err)
	}
	defer c.close()
	r, err := c.Execute("SELECT Host FROM mysql.user WHERE User = 'root'")
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("listing root accounts: %w", err))
	}
	var stmts []string
	for i := range r.RowNumber() {
		host, err := r.GetString(i, 0)
		if err != nil {
			return fmt.Errorf("reading root accounts: %w", err)
		}
		if !slices.Contains(rootHosts, host) {
			stmts = append(stmts, "DROP USER IF EXISTS root@"+quoteString(host))
		}
	}
	r.Close()
	for _, h := range rootHosts {
		account := "root@" + quoteString(h)
		stmts = append(stmts,
			"CREATE USER IF NOT EXISTS "+account,
			"ALTER USER "+account+" IDENTIFIED BY "+quoteString(s.password),
			"GRANT ALL PRIVILEGES ON *.* TO "+account+" WITH GRANT OPTION",
		)
	}
	for _, stmt := range stmts {
		if _, err := c.Execute(stmt); err != nil {
			// The statement would show the password.
			verb, _, _ := strings.Cut(stmt, " IDENTIFIED")
			return ctxErr(ctx, fmt.Errorf("configuring root (%s): %w", verb, err))
		}
	}
	// What every DSN relies on: root with the password over TCP.
	pc, err := dial(ctx, s.Addr(), s.password, "")
	if err != nil {
		return fmt.Errorf("checking the root password over TCP: %w", err)
	}
	pc.close()
	return nil
}

// Running reports whether the server process is up (not killed, stopped or
// crashed).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running()
}

func (s *Server) running() bool {
	return s.proc != nil && !s.proc.exited()
}

// PID is the process id of the running mariadbd (0 when it is not running),
// whose /proc/PID/task/TID holds each connection's thread.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Kill sends SIGKILL to the server, a crash: nothing is flushed and no
// shutdown runs, so the next start does InnoDB and binlog crash recovery.
// The data directory is kept. Killing a server that is not running does
// nothing.
func (s *Server) Kill() error {
	return s.change("killing", func() error {
		if !s.running() {
			return nil
		}
		return s.kill()
	})
}

// kill SIGKILLs the running server and waits until it is gone; s.mu must be
// held.
func (s *Server) kill() error {
	p := s.proc
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sending SIGKILL to mariadbd %d: %w", p.cmd.Process.Pid, err)
	}
	t := time.NewTimer(exitTimeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		return fmt.Errorf("mariadbd %d still there %v after SIGKILL", p.cmd.Process.Pid, exitTimeout)
	}
	s.proc = nil
	return nil
}

// StopServer shuts the server down cleanly, keeping its data, for tests that
// need the source to be down for a while. A shutdown that takes longer than
// stopTimeout, or outlives ctx, is cut short with SIGKILL.
func (s *Server) StopServer(ctx context.Context) error {
	return s.change("stopping", func() error {
		return s.stop(ctx)
	})
}

// stop is StopServer with s.mu held.
func (s *Server) stop(ctx context.Context) error {
	if !s.running() {
		return nil
	}
	p := s.proc
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sending SIGTERM to mariadbd %d: %w", p.cmd.Process.Pid, err)
	}
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		s.proc = nil
		return nil
	case <-t.C:
		return s.kill()
	case <-ctx.Done():
		if err := s.kill(); err != nil {
			return fmt.Errorf("%w (after %w)", err, ctx.Err())
		}
		return fmt.Errorf("clean shutdown cut short: %w", ctx.Err())
	}
}

// StartServer starts a server stopped by StopServer or Kill on the same
// port and waits until it accepts connections. Starting a running server
// does nothing.
func (s *Server) StartServer(ctx context.Context) error {
	return s.change("starting", func() error {
		if s.running() {
			return nil
		}
		return s.launch(ctx, s.Addr(), s.password)
	})
}

// Restart shuts the server down cleanly (see StopServer), starts it again on
// the same port and data and waits until it accepts connections.
func (s *Server) Restart(ctx context.Context) error {
	return s.change("restarting", func() error {
		if err := s.stop(ctx); err != nil {
			return err
		}
		return s.launch(ctx, s.Addr(), s.password)
	})
}

// change runs fn, a change of the server's state, under s.mu; op names it in
// errors.
func (s *Server) change(op string, fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%s mariadb: server is closed", op)
	}
	if err := fn(); err != nil {
		return fmt.Errorf("%s mariadb: %w", op, err)
	}
	return nil
}

// Close stops the server and removes its directory. It is safe to call more
// than once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true

	var errs []error
	survived := false
	// SIGKILL: the data is about to be deleted, so a clean shutdown would
	// be wasted time.
	if s.running() {
		if err := s.kill(); err != nil {
			errs = append(errs, err)
			survived = true
		}
	}
	// A server that survived still has its files open; leave them to the
	// reaper, which kills it before removing them.
	if !survived {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", s.Dir, err))
		}
	}
	// Closing the pipe lets the reaper run. Normally it finds nothing left
	// to do; if stopping or removing failed above, it gets a second try.
	if s.reaperW != nil {
		s.reaperW.Close()
		s.reaper.Wait()
	}
	return errors.Join(errs...)
}

// LogTail returns the last lines of the server's error log, for failure
// messages; "" when there is none.
func (s *Server) LogTail() string {
	b, err := os.ReadFile(filepath.Join(s.Dir, errorLogFile))
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-logTailLines):], "")
}

// logTail is LogTail formatted for appending to an error.
func (s *Server) logTail() string {
	tail := s.LogTail()
	if tail == "" {
		return ""
	}
	return fmt.Sprintf("\nlast %d lines of %s:\n%s\n", strings.Count(tail, "\n")+1, filepath.Join(s.Dir, errorLogFile), tail)
}

// findBinaries locates mariadbd and mariadb-install-db: on PATH, or where
// Debian puts them (root's PATH has /usr/sbin, other users' often not).
func findBinaries() (mariadbd, installDB string, err error) {
	find := func(name string, dirs ...string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
		return ""
	}
	mariadbd = find("mariadbd", "/usr/sbin", "/usr/local/sbin")
	installDB = find("mariadb-install-db", "/usr/bin", "/usr/local/bin")
	if mariadbd == "" || installDB == "" {
		return "", "", errors.New(errNoBinaries)
	}
	return mariadbd, installDB, nil
}

// startReaper starts a process that outlives us just long enough to kill the
// server and delete its directory if we die without Close. It is in its own
// session so a terminal's Ctrl-C, which kills the test binary, does not kill
// it too; mariadbd is in a process group of its own for the same reason,
// which is why it needs reaping at all. It runs as the current user (root
// may signal mariadbd and delete the directory regardless of $TMPDIR's
// permissions). Rather than trusting a pid file, it looks for processes
// whose command line names this server's data directory, which catches
// mariadbd after any number of restarts and also mariadb-install-db and its
// bootstrap server if we die during installation; the directory name is
// unique, so no other process matches. The command line is read with tr,
// not grep, so that the search cannot match itself.
func (s *Server) startReaper() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("starting reaper: %w", err)
	}
	const script = `trap '' HUP INT
read -r _
pattern="--datadir=$1/"
i=0
while :; do
	found=
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" = "$$" ] && continue
		case "$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null)" in
		*"$pattern"*) kill -KILL "$pid" 2>/dev/null && found=1 ;;
		esac
	done
	if [ -z "$found" ] || [ $i -ge 100 ]; then break; fi
	sleep 0.1
	i=$((i+1))
done
rm -rf "$1"
`
	cmd := exec.Command("/bin/sh", "-c", script, "mysqlserver-reaper", s.Dir)
	cmd.Stdin = r
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("starting reaper: %w", err)
	}
	r.Close()
	s.reaper, s.reaperW = cmd, w
	return nil
}

// install runs mariadb-install-db. --auth-root-authentication-method=normal
// makes root@localhost an account with an (empty) password rather than one
// tied to the Unix user root, which configureRoot relies on. The reaper
// finds the installer by its --datadir.
func (s *Server) install(ctx context.Context) error {
	args := append([]string{
		"--no-defaults", // must come first
		"--datadir=" + s.DataDir(),
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--skip-name-resolve",
		"--tmpdir=" + s.Dir,
	}, storageArgs...)
	args = append(args, s.opts.sizeArgs()...)
	cmd := exec.CommandContext(ctx, s.installDB, args...)
	// The caller's working directory may not be accessible to mysql.
	cmd.Dir = s.Dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		hint := ""
		if s.cred != nil {
			hint = fmt.Sprintf(" (the mysql user needs search permission on every parent of %s)", s.Dir)
		}
		return fmt.Errorf("mariadb-install-db: %w%s\n%s", err, hint, out)
	}
	return nil
}

// serverArgs is mariadbd's command line. --no-defaults keeps /etc/mysql and
// ~/.my.cnf out. utf8mb4 and UTC replace the defaults latin1 and the
// machine's time zone, so text round-trips and TIMESTAMP values do not
// depend on where the tests run.
func (s *Server) serverArgs() []string {
	args := []string{
		"--no-defaults", // must come first
		"--datadir=" + s.DataDir(),
		"--socket=" + s.socket(),
		"--pid-file=" + filepath.Join(s.Dir, "mariadbd.pid"),
		"--log-error=" + filepath.Join(s.Dir, errorLogFile),
		// $TMPDIR may not be writable by mysql.
		"--tmpdir=" + s.Dir,
		"--bind-address=127.0.0.1",
		"--port=" + strconv.Itoa(s.Port),
		"--skip-name-resolve",
		"--server-id=1",
		"--log-bin=" + filepath.Join(s.DataDir(), "binlog"),
		"--binlog-format=ROW",
		"--binlog-row-image=FULL",
		"--binlog-row-metadata=FULL",
		"--character-set-server=utf8mb4",
		"--default-time-zone=+00:00",
	}
	args = append(args, storageArgs...)
	args = append(args, s.opts.sizeArgs()...)
	if s.opts.PerformanceSchema {
		args = append(args, "--performance-schema=ON")
	}
	if s.opts.MaxBinlogSize > 0 {
		args = append(args, "--max-binlog-size="+strconv.FormatInt(s.opts.MaxBinlogSize, 10))
	}
	return args
}

var errPortTaken = errors.New("port already in use")

// launch starts mariadbd and waits until root can connect at addr with
// password; s.mu must be held. A bind failure is reported as errPortTaken
// so Start can retry on another port. On any failure no server is left
// running.
func (s *Server) launch(ctx context.Context, addr, password string) error {
	logPath := filepath.Join(s.Dir, errorLogFile)
	// stdout and stderr go to the error log too: mariadbd reports problems
	// it meets before opening --log-error (a bad option) there.
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("opening %s: %w", logPath, err)
	}
	defer logf.Close()
	if s.cred != nil {
		if err := logf.Chown(int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("chowning %s: %w", logPath, err)
		}
	}
	fi, err := logf.Stat()
	if err != nil {
		return fmt.Errorf("reading %s: %w", logPath, err)
	}
	offset := fi.Size()

	// Not CommandContext: the server outlives the start request.
	cmd := exec.Command(s.mariadbd, s.serverArgs()...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting mariadbd: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p

	if err := s.waitReady(ctx, p, addr, password, offset); err != nil {
		if !p.exited() {
			if kerr := s.kill(); kerr != nil {
				err = errors.Join(err, kerr)
			}
		}
		s.proc = nil
		return err
	}
	return nil
}

// waitReady waits until root can connect at addr, or p exits, in which case
// the error log from offset on tells whether the port was taken.
func (s *Server) waitReady(ctx context.Context, p *process, addr, password string, offset int64) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := dial(attemptCtx, addr, password, "")
		attemptCancel()
		if err == nil {
			c.close()
			return nil
		}
		t := time.NewTimer(25 * time.Millisecond)
		select {
		case <-p.done:
			t.Stop()
			return s.exitError(p, offset)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for mariadb on port %d to accept connections: %w (last error: %w)%s", s.Port, ctx.Err(), err, s.logTail())
		case <-t.C:
		}
	}
}

// exitError describes a server that exited during startup.
func (s *Server) exitError(p *process, offset int64) error {
	path := filepath.Join(s.Dir, errorLogFile)
	// Only this attempt's part of the log tells whether our bind failed.
	if b, err := os.ReadFile(path); err == nil && int64(len(b)) >= offset {
		if strings.Contains(string(b[offset:]), "Address already in use") {
			return fmt.Errorf("mariadbd on port %d: %w", s.Port, errPortTaken)
		}
	}
	return fmt.Errorf("mariadbd on port %d exited during startup: %v%s", s.Port, p.err, s.logTail())
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
