package pgserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var cluster *Cluster

// crashChildEnv makes the test binary act as a process that starts a cluster
// and dies without Close, for TestReaperCleansUpAfterCrash.
const crashChildEnv = "PGSERVER_CRASH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) == "1" {
		crashChild()
	}
	c, err := Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cluster = c
	code := m.Run()
	if err := c.Close(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func crashChild() {
	c, err := Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	pid, err := PostmasterPID(c.Dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	fmt.Printf("%s %d %d\n", c.Dir, c.Port, pid)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func queryInt(t *testing.T, dsn, sql string) int {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx(t), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestDSN(t *testing.T) {
	want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/mydb?sslmode=disable", cluster.Port)
	if got := cluster.DSN("mydb"); got != want {
		t.Fatalf("DSN = %q, want %q", got, want)
	}
}

// TestBin: the client programs the bench runs come from the server's own
// installation, also when initdb and postgres on PATH are symlinks into it;
// the one found reports the server's major version.
func TestBin(t *testing.T) {
	ctx := context.Background()
	var major string
	conn, err := cluster.connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT (current_setting('server_version_num')::int / 10000)::text").Scan(&major); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pg_recvlogical", "pg_receivewal"} {
		out, err := exec.Command(cluster.Bin(name), "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", cluster.Bin(name), err)
		}
		if !strings.Contains(string(out), " "+major+".") {
			t.Fatalf("%s --version = %q; want major %s", name, out, major)
		}
	}
}

func TestNewDBAndQuery(t *testing.T) {
	dsn := newDB(t, cluster)
	conn := connect(t, dsn)
	var db string
	if err := conn.QueryRow(ctx(t), "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(db, "testnewdbandquery_") {
		t.Errorf("database name %q not derived from test name", db)
	}
	if !strings.HasSuffix(dsn, "/"+db+"?sslmode=disable") {
		t.Errorf("DSN %q does not name database %q", dsn, db)
	}
	if _, err := conn.Exec(ctx(t), "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, dsn, "SELECT count(*) FROM t"); n != 2 {
		t.Errorf("count = %d, want 2", n)
	}
	var user string
	var super bool
	if err := conn.QueryRow(ctx(t), "SELECT current_user, usesuper FROM pg_user WHERE usename = current_user").Scan(&user, &super); err != nil {
		t.Fatal(err)
	}
	if user != "postgres" || !super {
		t.Errorf("connected as %q (superuser %v), want superuser postgres", user, super)
	}
}

func TestNewDBUnique(t *testing.T) {
	a, b := newDB(t, cluster), newDB(t, cluster)
	if a == b {
		t.Fatalf("NewDB returned %q twice", a)
	}
}

func TestExec(t *testing.T) {
	dsn := newDB(t, cluster)
	db := dbFromDSN(t, dsn)
	if err := cluster.Exec(ctx(t), db, "CREATE TABLE t (v text); INSERT INTO t VALUES ('a')"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Exec(ctx(t), db, "INSERT INTO t VALUES ($1)", "b"); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, dsn, "SELECT count(*) FROM t"); n != 2 {
		t.Errorf("count = %d, want 2", n)
	}
	if err := cluster.Exec(ctx(t), db, "SELECT * FROM missing"); err == nil {
		t.Error("Exec of bad SQL succeeded")
	}
}

func TestSettings(t *testing.T) {
	conn := connect(t, newDB(t, cluster))
	want := map[string]string{
		"wal_level":               "logical",
		"max_replication_slots":   "32",
		"max_wal_senders":         "32",
		"max_connections":         "200",
		"fsync":                   "off",
		"synchronous_commit":      "on",
		"full_page_writes":        "off",
		"shared_buffers":          "128MB",
		"listen_addresses":        "127.0.0.1",
		"log_min_messages":        "warning",
		"logging_collector":       "off",
		"unix_socket_directories": cluster.Dir,
		"port":                    strconv.Itoa(cluster.Port),
	}
	for name, w := range want {
		var got string
		if err := conn.QueryRow(ctx(t), "SHOW "+name).Scan(&got); err != nil {
			t.Fatalf("SHOW %s: %v", name, err)
		}
		if got != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
	}
	if _, err := os.Stat(cluster.Dir + "/server.log"); err != nil {
		t.Errorf("server log: %v", err)
	}
}

func TestUnixSocket(t *testing.T) {
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", cluster.Dir, cluster.Port)
	if n := queryInt(t, dsn, "SELECT 1"); n != 1 {
		t.Fatalf("SELECT 1 = %d", n)
	}
}

func TestDBName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		seq  int64
		want string
	}{
		{"TestFoo", 1, "testfoo_1"},
		{"TestFoo/sub-test #01", 12, "testfoo_sub_test_01_12"},
		{"Test/ünïcode/日本", 3, "test_n_code_3"},
		{"///", 4, "db_4"},
		{strings.Repeat("a", 100), 123, strings.Repeat("a", 59) + "_123"},
		{strings.Repeat("a", 58) + "/b", 123, strings.Repeat("a", 58) + "_123"},
	} {
		got := dbName(tc.in, tc.seq)
		if got != tc.want {
			t.Errorf("dbName(%q, %d) = %q, want %q", tc.in, tc.seq, got, tc.want)
		}
		if len(got) > 63 {
			t.Errorf("dbName(%q, %d) = %q is longer than 63", tc.in, tc.seq, got)
		}
	}
}

// TestNewDBCleanupDropsSlots leaves both an active (streaming, never
// acknowledging) and an inactive pgoutput slot behind and checks that the
// cleanup still removes them and the database.
func TestNewDBCleanupDropsSlots(t *testing.T) {
	var db string
	t.Run("inner", func(t *testing.T) {
		dsn := newDB(t, cluster)
		db = dbFromDSN(t, dsn)
		if err := cluster.Exec(ctx(t), db, "CREATE TABLE t (id int); CREATE PUBLICATION pub FOR ALL TABLES"); err != nil {
			t.Fatal(err)
		}

		rconn, err := pgconn.Connect(ctx(t), dsn+"&replication=database")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rconn.Close(context.Background()) })
		if _, err := pglogrepl.CreateReplicationSlot(ctx(t), rconn, "active_slot", "pgoutput", pglogrepl.CreateReplicationSlotOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := pglogrepl.StartReplication(ctx(t), rconn, "active_slot", 0, pglogrepl.StartReplicationOptions{
			PluginArgs: []string{"proto_version '1'", "publication_names 'pub'"},
		}); err != nil {
			t.Fatal(err)
		}
		if err := cluster.Exec(ctx(t), db, "SELECT pg_create_logical_replication_slot('idle_slot', 'pgoutput')"); err != nil {
			t.Fatal(err)
		}
		if n := queryInt(t, dsn, "SELECT count(*) FROM pg_replication_slots WHERE active"); n != 1 {
			t.Fatalf("%d active slots, want 1", n)
		}
	})

	if db == "" {
		t.Fatal("inner test did not create a database")
	}
	if n := queryInt(t, cluster.DSN("postgres"), "SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('active_slot', 'idle_slot')"); n != 0 {
		t.Errorf("%d slots left after cleanup", n)
	}
	if n := queryInt(t, cluster.DSN("postgres"), fmt.Sprintf("SELECT count(*) FROM pg_database WHERE datname = '%s'", db)); n != 0 {
		t.Errorf("database %s left after cleanup", db)
	}
}

func TestRestart(t *testing.T) {
	dsn := newDB(t, cluster)
	db := dbFromDSN(t, dsn)
	if err := cluster.Exec(ctx(t), db, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	// A streaming walsender whose client never acknowledges would make a
	// plain fast shutdown wait for wal_sender_timeout.
	startIdleStream(t, dsn, db)

	port := cluster.Port
	start := time.Now()
	if err := cluster.Restart(ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart took %v", time.Since(start))
	if cluster.Port != port {
		t.Errorf("port changed from %d to %d", port, cluster.Port)
	}
	if n := queryInt(t, dsn, "SELECT count(*) FROM t"); n != 2 {
		t.Errorf("count = %d after restart, want 2", n)
	}
}

func TestStopServerStartServer(t *testing.T) {
	dsn := newDB(t, cluster)
	db := dbFromDSN(t, dsn)
	if err := cluster.Exec(ctx(t), db, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.StopServer(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// Restart the server even if assertions below fail, so later tests and
	// the NewDB cleanup have a server to talk to.
	restarted := false
	defer func() {
		if !restarted {
			cluster.StartServer(context.Background())
		}
	}()

	cctx, cancel := context.WithTimeout(ctx(t), 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(cctx, dsn); err == nil {
		conn.Close(context.Background())
		t.Fatal("connected while the server was stopped")
	}
	if err := cluster.StopServer(ctx(t)); err != nil {
		t.Errorf("second StopServer: %v", err)
	}

	restarted = true
	if err := cluster.StartServer(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, dsn, "SELECT count(*) FROM t"); n != 1 {
		t.Errorf("count = %d after StartServer, want 1", n)
	}
}

// TestSecondCluster checks that clusters coexist in one process (as they do
// across parallel test binaries) and that Close cleans up and is idempotent.
func TestSecondCluster(t *testing.T) {
	start := time.Now()
	c, err := Start(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %v", time.Since(start))
	defer c.Close()
	if c.Port == cluster.Port || c.Dir == cluster.Dir {
		t.Errorf("second cluster shares port or dir: %d %s vs %d %s", c.Port, c.Dir, cluster.Port, cluster.Dir)
	}
	if n := queryInt(t, c.DSN("postgres"), "SELECT 1"); n != 1 {
		t.Fatalf("SELECT 1 = %d", n)
	}
	pid, err := PostmasterPID(c.Dir)
	if err != nil {
		t.Fatal(err)
	}

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("data dir still exists after Close: %v", err)
	}
	if processAlive(pid) {
		t.Errorf("postmaster %d still running after Close", pid)
	}
	if err := c.Restart(ctx(t)); err == nil {
		t.Error("Restart after Close succeeded")
	}
}

// TestStartRetriesTakenPort makes the first picked port one that is already
// in use (by the shared cluster), as happens when a parallel test binary
// wins the race for it, and checks Start moves on to another port.
func TestStartRetriesTakenPort(t *testing.T) {
	picks := 0
	c, err := start(ctx(t), func() (int, error) {
		picks++
		if picks == 1 {
			return cluster.Port, nil
		}
		return FreePort()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if picks != 2 || c.Port == cluster.Port {
		t.Errorf("picked %d ports, ended on %d (taken: %d)", picks, c.Port, cluster.Port)
	}
	if n := queryInt(t, c.DSN("postgres"), "SELECT 1"); n != 1 {
		t.Fatalf("SELECT 1 = %d", n)
	}
}

func TestStartGivesUpOnTakenPorts(t *testing.T) {
	// Every attempt hits a taken port, so Start must give up and say why.
	_, err := start(ctx(t), func() (int, error) { return cluster.Port, nil })
	if err == nil {
		t.Fatal("Start succeeded on a taken port")
	}
	if !errors.Is(err, errPortTaken) {
		t.Errorf("error does not report the taken port: %v", err)
	}
}

func TestStartFailureIncludesLog(t *testing.T) {
	c, err := Start(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StopServer(ctx(t)); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(c.Dir+"/"+confFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "shared_buffers = 'bogus'")
	f.Close()
	err = c.StartServer(ctx(t))
	if err == nil {
		t.Fatal("StartServer with a broken config succeeded")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "last ") || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("error lacks the server log: %v", err)
	}
}

func TestBinEnv(t *testing.T) {
	t.Setenv(binEnv, t.TempDir())
	if _, err := Start(ctx(t)); err == nil || !strings.Contains(err.Error(), binEnv) {
		t.Errorf("Start with an empty %s: got %v, want an error naming it", binEnv, err)
	}

	t.Setenv(binEnv, cluster.bin)
	got, err := findBinaries()
	if err != nil || got != cluster.bin {
		t.Errorf("findBinaries with %s=%s: %q, %v", binEnv, cluster.bin, got, err)
	}
}

// TestReaperCleansUpAfterCrash kills a process that owns a cluster without
// giving it a chance to Close and checks the server and directory go away.
func TestReaperCleansUpAfterCrash(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("crash child: want death by SIGKILL, got %v (output %q)", err, out)
	}
	var dir string
	var port, pid int
	if _, err := fmt.Sscan(string(out), &dir, &port, &pid); err != nil {
		t.Fatalf("parsing crash child output %q: %v", out, err)
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		_, statErr := os.Stat(dir)
		gone := errors.Is(statErr, fs.ErrNotExist)
		alive := processAlive(pid)
		if gone && !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20s after crash: dir %s gone=%v, postmaster %d alive=%v", dir, gone, pid, alive)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie has exited; only its parent has not reaped it yet.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z'
	}
	return true
}

// startIdleStream opens a replication connection that streams from a new
// slot and never acknowledges anything, like a stalled consumer.
func startIdleStream(t *testing.T, dsn, db string) {
	t.Helper()
	if err := cluster.Exec(ctx(t), db, "CREATE PUBLICATION pub FOR ALL TABLES"); err != nil {
		t.Fatal(err)
	}
	rconn, err := pgconn.Connect(ctx(t), dsn+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rconn.Close(context.Background()) })
	if _, err := pglogrepl.CreateReplicationSlot(ctx(t), rconn, "idle_"+db, "pgoutput", pglogrepl.CreateReplicationSlotOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pglogrepl.StartReplication(ctx(t), rconn, "idle_"+db, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'pub'"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Exec(ctx(t), db, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
}

func dbFromDSN(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

// newDB is what pgtest.Cluster.NewDB does, for this package's own tests.
func newDB(t *testing.T, c *Cluster) string {
	t.Helper()
	name, err := c.CreateDB(ctx(t), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.Running() {
			if err := c.DropDB(context.Background(), name); err != nil {
				t.Errorf("dropping %s: %v", name, err)
			}
		}
	})
	return c.DSN(name)
}

func TestPostmasterPID(t *testing.T) {
	dir := t.TempDir()
	if _, err := PostmasterPID(dir); err == nil {
		t.Error("no postmaster.pid: no error")
	}
	if err := os.WriteFile(dir+"/postmaster.pid", []byte("12345\n/data\n1700000000\n5432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pid, err := PostmasterPID(dir); err != nil || pid != 12345 {
		t.Errorf("PostmasterPID = %d, %v; want 12345", pid, err)
	}
	if err := os.WriteFile(dir+"/postmaster.pid", []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := PostmasterPID(dir); err == nil {
		t.Error("a malformed postmaster.pid was accepted")
	}
}
