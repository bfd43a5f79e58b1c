// Package pgserver supervises a private PostgreSQL cluster: initdb into a
// temporary directory, a free port on 127.0.0.1, settings for logical
// replication, a reaper that cleans up if the owning process dies, restarts
// and stops that never stall. The tests (through pgtest) and the benchmark
// runner start their servers with it; nothing here depends on package
// testing, so it can be linked into a command.
package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// binEnv overrides binary discovery, for machines where PostgreSQL lives
	// somewhere unusual.
	binEnv = "RISKWATCH_PG_BIN"

	errNoBinaries = "PostgreSQL server binaries not found: install Debian's postgresql package (make test does) or set " + binEnv

	// readyTimeout bounds how long we wait for a started server to accept
	// connections.
	readyTimeout = 30 * time.Second

	// portAttempts is how often Start picks a new port when the one it picked
	// was taken by someone else between our probe and the server's bind
	// (parallel test binaries make this race real).
	portAttempts = 5

	// A fast shutdown waits for every streaming walsender until its client
	// has confirmed all WAL, which a stalled or never-acknowledging consumer
	// never does; the server would only give up after wal_sender_timeout
	// (60 s). So stopFast gives a fast shutdown fastStopGrace, then
	// terminates walsenders (what a fast shutdown does to every other
	// backend), then falls back to an immediate shutdown after
	// fastStopTimeout, so Restart/StopServer never stall a test.
	fastStopGrace   = 3 * time.Second
	fastStopTimeout = 15 * time.Second

	logTailLines = 40

	confFile = "pgserver.conf"
	logFile  = "server.log"

	// maxSocketPath leaves room for "/.s.PGSQL.NNNNN" within the kernel's
	// sun_path limit (108 bytes including the terminating NUL).
	maxSocketPath = 107 - len("/.s.PGSQL.65535")
)

// Cluster is a private PostgreSQL server owned by one test binary.
type Cluster struct {
	// Port is the TCP port on 127.0.0.1 the server listens on. It stays the
	// same across Restart and StopServer/StartServer so DSNs remain valid.
	Port int
	// Dir is the data directory; it also holds the Unix socket and
	// server.log.
	Dir string

	bin  string
	cred *syscall.Credential // nil when we are not root

	dbSeq atomic.Int64

	mu      sync.Mutex // serialises server state changes
	running bool
	closed  bool

	// reaper cleans up if this process dies without calling Close: it blocks
	// reading reaperW's pipe and acts on EOF, which the kernel delivers
	// however we exit (panic, test timeout, SIGKILL).
	reaper  *exec.Cmd
	reaperW *os.File
}

// Start initdb's a fresh cluster in a new temp dir and starts it on a free
// 127.0.0.1 port, configured for logical replication with trust auth for
// superuser postgres (see writeConf and configure). As root, the directory
// is handed to the postgres user and every PostgreSQL binary runs as it.
func Start(ctx context.Context) (*Cluster, error) {
	return start(ctx, FreePort)
}

// start takes the port picker as a parameter so tests can simulate losing
// the race for a port.
func start(ctx context.Context, pickPort func() (int, error)) (*Cluster, error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := ServiceCredential("postgres", "PostgreSQL")
	if err != nil {
		return nil, err
	}
	dir, err := MakeTempDir("riskwatch-pgserver-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bin: bin, cred: cred}
	if err := c.start(ctx, pickPort); err != nil {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", cerr))
		}
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, pickPort func() (int, error)) error {
	if c.cred != nil {
		// initdb runs as postgres and must be able to take over the
		// directory (it chmods it to 0700).
		if err := os.Chown(c.Dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("chowning %s to postgres: %w", c.Dir, err)
		}
	}
	if err := c.startReaper(); err != nil {
		return err
	}
	if err := c.initdb(ctx); err != nil {
		return err
	}
	if err := c.configure(); err != nil {
		return err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	for range portAttempts {
		if c.Port, err = pickPort(); err != nil {
			return err
		}
		if err := c.writeConf(); err != nil {
			return err
		}
		if err = c.startServer(ctx); !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return fmt.Errorf("gave up after %d ports: %w", portAttempts, err)
}

// DSN returns a connection string for database db as superuser postgres.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// CreateDB creates a fresh database named after base (made a valid
// identifier, with a counter so that names never repeat) and returns its
// name.
func (c *Cluster) CreateDB(ctx context.Context, base string) (string, error) {
	name := dbName(base, c.dbSeq.Add(1))
	// FILE_COPY rather than the default WAL_LOG: WAL_LOG writes all of
	// template1 (~7 MB) to WAL for every database, which every concurrently
	// streaming walsender must then read through and every slot retains.
	// FILE_COPY's checkpoints are cheap with fsync off.
	if err := c.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" STRATEGY FILE_COPY"); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return name, nil
}

// Running reports whether the server is up (not stopped by StopServer).
func (c *Cluster) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
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
	if max := 63 - len(suffix); len(base) > max {
		base = strings.TrimRight(base[:max], "_")
	}
	return base + suffix
}

// DropDB removes the replication slots of db and then db itself. Slots must
// go first: PostgreSQL refuses to drop a database that has logical slots,
// even inactive ones, and an active slot cannot be dropped until its
// walsender is gone.
func (c *Cluster) DropDB(ctx context.Context, db string) error {
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	for {
		if err := dropSlots(ctx, conn, db); err != nil {
			return err
		}
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
		if err == nil {
			return nil
		}
		// A client of the test may have recreated a slot in the meantime
		// (object_in_use); go round again until the deadline.
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" {
			return err
		}
		if serr := sleep(ctx, 20*time.Millisecond); serr != nil {
			return fmt.Errorf("%w (last error: %w)", serr, err)
		}
	}
}

func dropSlots(ctx context.Context, conn *pgx.Conn, db string) error {
	for {
		type slot struct {
			Name string
			PID  int32
		}
		rows, _ := conn.Query(ctx, "SELECT slot_name::text, coalesce(active_pid, 0) FROM pg_replication_slots WHERE database = $1", db)
		slots, err := pgx.CollectRows(rows, pgx.RowToStructByPos[slot])
		if err != nil {
			return fmt.Errorf("listing replication slots: %w", err)
		}
		if len(slots) == 0 {
			return nil
		}
		busy := false
		for _, s := range slots {
			if s.PID != 0 {
				busy = true
				if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", s.PID); err != nil {
					return fmt.Errorf("terminating walsender %d of slot %s: %w", s.PID, s.Name, err)
				}
				// The slot stays active until the walsender has exited;
				// the next round sees it inactive.
				continue
			}
			_, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.Name)
			var pgErr *pgconn.PgError
			// Slot became active again or vanished on its own: re-list.
			if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "55006" || pgErr.Code == "42704")) {
				return fmt.Errorf("dropping replication slot %s: %w", s.Name, err)
			}
			busy = busy || err != nil
		}
		if !busy {
			continue
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("waiting for replication slots of %s to become inactive: %w", db, err)
		}
	}
}

// Exec runs sql as superuser in database db. Without args it uses the simple
// protocol, so sql may contain several statements.
func (c *Cluster) Exec(ctx context.Context, db, sql string, args ...any) error {
	conn, err := c.connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("executing SQL in %s: %w", db, err)
	}
	return nil
}

func (c *Cluster) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", db, err)
	}
	return conn, nil
}

// Restart restarts the server on the same port and data dir and waits until
// it accepts connections again.
func (c *Cluster) Restart(ctx context.Context) error {
	return c.change("restarting", func() error {
		// Equivalent to pg_ctl restart -m fast -w, but split so a fast shutdown
		// stuck on a walsender can fall back to immediate (see fastStopTimeout).
		if c.running {
			if err := c.stopFast(ctx); err != nil {
				return err
			}
		}
		return c.startServer(ctx)
	})
}

// StopServer stops the server without removing its data, for tests that need
// the source to be down for a while.
func (c *Cluster) StopServer(ctx context.Context) error {
	return c.change("stopping", func() error {
		if c.running {
			return c.stopFast(ctx)
		}
		return nil
	})
}

// StartServer starts a server stopped by StopServer on the same port.
func (c *Cluster) StartServer(ctx context.Context) error {
	return c.change("starting", func() error {
		if c.running {
			return nil
		}
		return c.startServer(ctx)
	})
}

// change runs fn, a change of the server's state, under c.mu; op names it in
// errors.
func (c *Cluster) change(op string, fn func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("%s postgres: cluster is closed", op)
	}
	if err := fn(); err != nil {
		return fmt.Errorf("%s postgres: %w", op, err)
	}
	return nil
}

// startServer starts the postmaster and waits until it accepts connections;
// c.mu must be held.
func (c *Cluster) startServer(ctx context.Context) error {
	if err := c.pgCtlStart(ctx); err != nil {
		return err
	}
	c.running = true
	return c.waitReady(ctx)
}

// Close stops the server and removes the data directory. It is safe to call
// more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true

	var errs []error
	// Check the pid file rather than c.running: a pg_ctl start that failed
	// or was cancelled may still have left a postmaster behind.
	pidFile := filepath.Join(c.Dir, "postmaster.pid")
	if _, err := os.Stat(pidFile); err == nil {
		// Immediate: the data is about to be deleted, so a clean shutdown
		// checkpoint would be wasted time.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if out, err := c.pgCtl(ctx, "stop", "-m", "immediate", "-w"); err != nil {
			errs = append(errs, fmt.Errorf("stopping postgres: %w\n%s", err, out))
		}
		cancel()
	}
	c.running = false
	// If the server survived, keep postmaster.pid for the reaper, which
	// needs it to find the server.
	if _, err := os.Stat(pidFile); err != nil {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", c.Dir, err))
		}
	}
	// Closing the pipe lets the reaper run. Normally it finds nothing left
	// to do; if stopping or removing failed above, it gets a second try.
	if c.reaperW != nil {
		c.reaperW.Close()
		c.reaper.Wait()
	}
	return errors.Join(errs...)
}

// findBinaries locates a directory holding initdb, postgres and pg_ctl.
func findBinaries() (string, error) {
	if dir := os.Getenv(binEnv); dir != "" {
		// An explicit setting that is wrong should fail loudly rather than
		// silently fall back to some other installation.
		if !hasServerBinaries(dir) {
			return "", fmt.Errorf("%s=%s does not contain initdb, postgres and pg_ctl", binEnv, dir)
		}
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if dir := filepath.Dir(p); hasServerBinaries(dir) {
			return dir, nil
		}
	}
	// Debian installs server binaries outside PATH, one dir per major.
	// The newest major wins.
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestMajor := "", 0
	for _, d := range dirs {
		major, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err == nil && (best == "" || major > bestMajor) && hasServerBinaries(d) {
			best, bestMajor = d, major
		}
	}
	if best == "" {
		return "", errors.New(errNoBinaries)
	}
	return best, nil
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres", "pg_ctl"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// ServiceCredential returns the credential a server's binaries must run
// with when we are root (the service account, e.g. postgres or mysql, with
// its supplementary groups as a login would have them), or nil otherwise.
// Both servers refuse to run as root.
func ServiceCredential(account, server string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(account)
	if err != nil {
		return nil, fmt.Errorf("running as root, so %s must run as the %s user: %w", server, account, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parsing uid of %s %q: %w", account, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parsing gid of %s %q: %w", account, u.Gid, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	// Keep the account's supplementary groups (e.g. ssl-cert).
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, nil
}

// MakeTempDir creates a server directory named pattern+random. The Unix
// socket lives in it, so a long $TMPDIR would push the socket path past the
// kernel limit; /tmp is used then.
func MakeTempDir(pattern string) (string, error) {
	parent := os.TempDir()
	if len(filepath.Join(parent, pattern+"0123456789")) > maxSocketPath {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, pattern)
	if err != nil {
		return "", fmt.Errorf("creating server directory: %w", err)
	}
	return dir, nil
}

// FreePort asks the kernel for a TCP port on 127.0.0.1 that is free now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startReaper starts a process that outlives us just long enough to stop the
// server and delete its directory if we die without Close. It is in its own
// session so a terminal's Ctrl-C, which kills the test binary, does not kill
// it too; the postmaster is likewise detached by pg_ctl, which is why it
// needs reaping at all. It runs as the current user (root may signal the
// postmaster and delete the directory regardless of $TMPDIR's permissions)
// and reads the postmaster pid only when it acts, so restarts are covered;
// it checks that the pid still belongs to a postmaster of this data dir, so a
// stale pid file cannot make it kill an unrelated process.
func (c *Cluster) startReaper() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("starting reaper: %w", err)
	}
	const script = `trap '' HUP INT
read -r _
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && grep -qaF -- "$1" "/proc/$pid/cmdline" 2>/dev/null && kill -QUIT "$pid" 2>/dev/null; then
	i=0
	while [ -f "$1/postmaster.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
fi
rm -rf "$1"
`
	cmd := exec.Command("/bin/sh", "-c", script, "pgserver-reaper", c.Dir)
	cmd.Stdin = r
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("starting reaper: %w", err)
	}
	r.Close()
	c.reaper, c.reaperW = cmd, w
	return nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	out, err := c.run(ctx, "initdb",
		"-D", c.Dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
		"--no-sync", "--no-instructions")
	if err != nil {
		hint := ""
		if c.cred != nil {
			hint = fmt.Sprintf(" (the postgres user needs search permission on every parent of %s)", c.Dir)
		}
		return fmt.Errorf("initdb: %w%s\n%s", err, hint, out)
	}
	return nil
}

// configure writes pg_hba.conf and hooks our settings file into
// postgresql.conf; keeping our settings in their own included file lets
// Start rewrite the port on retry without editing initdb's file.
func (c *Cluster) configure() error {
	hba := strings.Join([]string{
		"local all all trust",
		"host all all 127.0.0.1/32 trust",
		"host replication all 127.0.0.1/32 trust",
		"local replication all trust",
	}, "\n") + "\n"
	if err := c.writeFile("pg_hba.conf", hba); err != nil {
		return err
	}
	conf, err := os.ReadFile(filepath.Join(c.Dir, "postgresql.conf"))
	if err != nil {
		return fmt.Errorf("reading postgresql.conf: %w", err)
	}
	return c.writeFile("postgresql.conf", fmt.Sprintf("%s\ninclude '%s'\n", conf, confFile))
}

func (c *Cluster) writeConf() error {
	conf := fmt.Sprintf(`listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
max_connections = 200
fsync = off
synchronous_commit = on
full_page_writes = off
shared_buffers = 128MB
log_min_messages = warning
logging_collector = off
`, c.Port, strings.ReplaceAll(c.Dir, "'", "''"))
	return c.writeFile(confFile, conf)
}

func (c *Cluster) writeFile(name, content string) error {
	p := filepath.Join(c.Dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if c.cred != nil {
		if err := os.Chown(p, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("chowning %s: %w", name, err)
		}
	}
	return nil
}

var errPortTaken = errors.New("port already in use")

// pgCtlStart starts the postmaster and waits until it reports ready. A bind
// failure is reported as errPortTaken so Start can retry on another port.
func (c *Cluster) pgCtlStart(ctx context.Context) error {
	logPath := filepath.Join(c.Dir, logFile)
	var offset int64
	if fi, err := os.Stat(logPath); err == nil {
		offset = fi.Size()
	}
	out, err := c.pgCtl(ctx, "start", "-w", "-t", "60", "-l", logPath)
	if err == nil {
		return nil
	}
	// Only this attempt's part of the log tells whether our bind failed.
	if b, rerr := os.ReadFile(logPath); rerr == nil && int64(len(b)) >= offset {
		fresh := string(b[offset:])
		if strings.Contains(fresh, "Address already in use") || strings.Contains(fresh, "could not bind") {
			return fmt.Errorf("pg_ctl start on port %d: %w", c.Port, errPortTaken)
		}
	}
	return fmt.Errorf("pg_ctl start on port %d: %w\n%s%s", c.Port, err, out, c.logTail())
}

// stopFast does a fast shutdown, escalating as described at fastStopGrace.
func (c *Cluster) stopFast(ctx context.Context) error {
	secs := func(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
	_, err := c.pgCtl(ctx, "stop", "-m", "fast", "-w", "-t", secs(fastStopGrace))
	if err != nil && ctx.Err() == nil {
		c.terminateWalsenders()
		// Repeating the stop request is harmless and waits again.
		_, err = c.pgCtl(ctx, "stop", "-m", "fast", "-w", "-t", secs(fastStopTimeout))
	}
	if err != nil && ctx.Err() == nil {
		var out []byte
		if out, err = c.pgCtl(ctx, "stop", "-m", "immediate", "-w"); err != nil {
			err = fmt.Errorf("%w\n%s%s", err, out, c.logTail())
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("pg_ctl stop: %w", err)
	}
	c.running = false
	return nil
}

// terminateWalsenders sends SIGTERM to the walsender children of the
// postmaster. A shutting-down server no longer accepts connections, so
// pg_terminate_backend is not an option; the walsenders are found via /proc
// instead. Best effort: stopFast escalates anyway if this misses one.
func (c *Cluster) terminateWalsenders() {
	pm, err := PostmasterPID(c.Dir)
	if err != nil {
		return
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(p, "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: state, ppid, ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(pm) {
			continue
		}
		// PostgreSQL rewrites its argv to the process title.
		cmdline, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err == nil && bytes.HasPrefix(cmdline, []byte("postgres: walsender")) {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}

// PostmasterPID reads the PostgreSQL server's process id from the first line
// of <dataDir>/postmaster.pid.
func PostmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("reading the postmaster pid: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("reading the postmaster pid: first line of %s is %q", filepath.Join(dataDir, "postmaster.pid"), line)
	}
	return pid, nil
}

func (c *Cluster) pgCtl(ctx context.Context, args ...string) ([]byte, error) {
	return c.run(ctx, "pg_ctl", append([]string{"-D", c.Dir}, args...)...)
}

// run executes a PostgreSQL binary as the postgres user when we are root.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	// The test's working directory may not be accessible to postgres.
	cmd.Dir = c.Dir
	// English messages, so bind failures in server.log are recognisable.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

// waitReady waits until the server accepts connections: pg_ctl -w only
// knows the postmaster is up, not that our DSN reaches it.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attemptCtx, c.DSN("postgres"))
		attemptCancel()
		if err == nil {
			return conn.Close(ctx)
		}
		if serr := sleep(ctx, 25*time.Millisecond); serr != nil {
			return fmt.Errorf("waiting for postgres on port %d to accept connections: %w%s", c.Port, err, c.logTail())
		}
	}
}

// logTail returns the end of server.log formatted for appending to an error.
func (c *Cluster) logTail() string {
	path := filepath.Join(c.Dir, logFile)
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-logTailLines):]
	return fmt.Sprintf("\nlast %d lines of %s:\n%s\n", len(lines), path, strings.Join(lines, ""))
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

// Bin returns the path of one of the server's client programs
// (pg_recvlogical, pg_receivewal, ...), from the same installation: the
// directory the postgres binary really is in, since initdb and postgres may
// be symlinks on PATH to Debian's per-major directory.
func (c *Cluster) Bin(name string) string {
	if real, err := filepath.EvalSymlinks(filepath.Join(c.bin, "postgres")); err == nil {
		p := filepath.Join(filepath.Dir(real), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join(c.bin, name)
}
