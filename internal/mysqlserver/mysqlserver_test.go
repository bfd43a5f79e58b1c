package mysqlserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/riskwatch/riskwatch/internal/pgserver"
)

var server *Server

// crashChildEnv makes the test binary act as a process that starts a server
// and dies without Close, for TestReaperCleansUpAfterCrash.
const crashChildEnv = "MYSQLSERVER_CRASH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) == "1" {
		crashChild()
	}
	s, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server = s
	code := m.Run()
	if err := s.Close(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func crashChild() {
	s, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	s.mu.Lock()
	pid := s.proc.cmd.Process.Pid
	s.mu.Unlock()
	fmt.Printf("%s %d %d\n", s.Dir, s.Port, pid)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newDB is what mysqltest.Server.NewDB does, for this package's own tests.
func newDB(t *testing.T, s *Server) string {
	t.Helper()
	name, err := s.CreateDB(ctx(t), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.Running() {
			if err := s.DropDB(context.Background(), name); err != nil {
				t.Errorf("dropping %s: %v", name, err)
			}
		}
	})
	return name
}

func exec1(t *testing.T, s *Server, db, sql string) {
	t.Helper()
	if err := s.Exec(ctx(t), db, sql); err != nil {
		t.Fatal(err)
	}
}

// row returns the first row of sql's result as strings.
func row(t *testing.T, s *Server, db, sql string, args ...any) []string {
	t.Helper()
	r, err := s.Query(ctx(t), db, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.RowNumber() == 0 {
		t.Fatalf("%s: no rows", sql)
	}
	var out []string
	for i := range r.ColumnNumber() {
		v, err := r.GetString(0, i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestSettings(t *testing.T) {
	got := strings.Join(row(t, server, "", "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@server_id, @@character_set_server, @@time_zone, @@bind_address, @@port"), " ")
	want := fmt.Sprintf("1 ROW FULL FULL 1 utf8mb4 +00:00 127.0.0.1 %d", server.Port)
	if got != want {
		t.Errorf("settings = %q, want %q", got, want)
	}
	if got := row(t, server, "", "SELECT @@log_bin_basename")[0]; got != filepath.Join(server.DataDir(), "binlog") {
		t.Errorf("log_bin_basename = %q, want binlog in %s", got, server.DataDir())
	}
	if _, err := os.Stat(filepath.Join(server.DataDir(), "binlog.index")); err != nil {
		t.Error(err)
	}
	if tail := server.LogTail(); !strings.Contains(tail, "ready for connections") {
		t.Errorf("LogTail lacks the start message:\n%s", tail)
	}
}

func TestDSNAndAuth(t *testing.T) {
	u, err := url.Parse(server.DSN("somedb"))
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if u.Scheme != "mysql" || u.User.Username() != "root" || pw != server.RootPassword() || u.Host != server.Addr() || u.Path != "/somedb" {
		t.Errorf("DSN %s does not match Addr %s and RootPassword", server.DSN("somedb"), server.Addr())
	}
	if server.Addr() != fmt.Sprintf("127.0.0.1:%d", server.Port) {
		t.Errorf("Addr = %s", server.Addr())
	}
	if len(server.RootPassword()) < 16 {
		t.Errorf("root password %q is too short", server.RootPassword())
	}

	c, err := client.Connect(server.Addr(), "root", server.RootPassword(), "")
	if err != nil {
		t.Fatalf("root with the password over TCP: %v", err)
	}
	c.Close()
	for _, p := range []string{"", "wrong"} {
		c, err := client.Connect(server.Addr(), "root", p, "")
		if err == nil {
			c.Close()
			t.Errorf("root with password %q over TCP was let in", p)
		} else if !isMyError(err, mysql.ER_ACCESS_DENIED_ERROR) {
			t.Errorf("root with password %q over TCP: %v, want access denied", p, err)
		}
	}
	// Every root account has the password and may grant.
	r, err := server.Query(ctx(t), "", "SELECT Host, Grant_priv FROM mysql.user WHERE User = 'root' ORDER BY Host")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var hosts []string
	for i := range r.RowNumber() {
		h, _ := r.GetString(i, 0)
		g, _ := r.GetString(i, 1)
		hosts = append(hosts, h+"="+g)
	}
	if got, want := strings.Join(hosts, " "), "%=Y 127.0.0.1=Y ::1=Y localhost=Y"; got != want {
		t.Errorf("root accounts = %q, want %q", got, want)
	}
}

// TestKillStartServer is a crash: committed rows survive SIGKILL.
func TestKillStartServer(t *testing.T) {
	s := server
	db := newDB(t, s)
	exec1(t, s, db, "CREATE TABLE t (id BIGINT PRIMARY KEY, amount BIGINT NOT NULL, at DATETIME(6) NOT NULL)")
	exec1(t, s, db, "INSERT INTO t VALUES (1, -9223372036854775808, '2024-02-29 23:59:59.123456')")
	want := "1 -9223372036854775808 2024-02-29 23:59:59.123456"
	if got := strings.Join(row(t, s, db, "SELECT id, amount, at FROM t"), " "); got != want {
		t.Fatalf("row = %q, want %q", got, want)
	}
	port, dsn := s.Port, s.DSN(db)

	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("Running after Kill")
	}
	if err := s.Exec(ctx(t), db, "SELECT 1"); err == nil {
		t.Fatal("query succeeded after Kill")
	}
	if err := s.Kill(); err != nil {
		t.Errorf("Kill of a killed server: %v", err)
	}
	start := time.Now()
	if err := s.StartServer(ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("StartServer after Kill took %v", time.Since(start))
	if !s.Running() || s.Port != port || s.DSN(db) != dsn {
		t.Errorf("after StartServer: running=%v port %d (was %d)", s.Running(), s.Port, port)
	}
	if got := strings.Join(row(t, s, db, "SELECT id, amount, at FROM t"), " "); got != want {
		t.Errorf("row after crash = %q, want %q", got, want)
	}
	if tail := s.LogTail(); !strings.Contains(tail, "Recovering after a crash") {
		t.Errorf("no crash recovery in the log after Kill:\n%s", tail)
	}
	if err := s.StartServer(ctx(t)); err != nil {
		t.Errorf("StartServer of a running server: %v", err)
	}
}

func TestRestart(t *testing.T) {
	s := server
	db := newDB(t, s)
	exec1(t, s, db, "CREATE TABLE t (id BIGINT PRIMARY KEY)")
	exec1(t, s, db, "INSERT INTO t VALUES (1), (2)")
	before := row(t, s, "", "SELECT @@log_bin_basename")[0]
	port := s.Port
	start := time.Now()
	if err := s.Restart(ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart took %v", time.Since(start))
	if s.Port != port {
		t.Errorf("port changed from %d to %d", port, s.Port)
	}
	if got := row(t, s, db, "SELECT count(*) FROM t")[0]; got != "2" {
		t.Errorf("count = %s after restart, want 2", got)
	}
	if after := row(t, s, "", "SELECT @@log_bin_basename")[0]; after != before {
		t.Errorf("binlog moved from %s to %s", before, after)
	}
	// A clean restart starts a new binlog file.
	r, err := s.Query(ctx(t), "", "SHOW BINARY LOGS")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.RowNumber() < 2 {
		t.Errorf("%d binary logs after a restart, want at least 2", r.RowNumber())
	}
}

func TestStopServerStartServer(t *testing.T) {
	s := server
	db := newDB(t, s)
	exec1(t, s, db, "CREATE TABLE t (id BIGINT PRIMARY KEY)")
	exec1(t, s, db, "INSERT INTO t VALUES (7)")
	if err := s.StopServer(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Error("Running after StopServer")
	}
	if tail := s.LogTail(); !strings.Contains(tail, "Shutdown complete") {
		t.Errorf("no clean shutdown in the log:\n%s", tail)
	}
	if err := s.StopServer(ctx(t)); err != nil {
		t.Errorf("StopServer of a stopped server: %v", err)
	}
	if err := s.StartServer(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := row(t, s, db, "SELECT id FROM t")[0]; got != "7" {
		t.Errorf("id = %s, want 7", got)
	}
}

func TestCreateDBUnique(t *testing.T) {
	a := newDB(t, server)
	b := newDB(t, server)
	if a == b {
		t.Errorf("two databases named %s", a)
	}
	if !strings.HasPrefix(a, "testcreatedbunique_") {
		t.Errorf("name %s is not derived from the test name", a)
	}
}

// TestDropDBKillsSessions checks DropDB does not wait for a session that has
// an open transaction on a table of the database.
func TestDropDBKillsSessions(t *testing.T) {
	name, err := server.CreateDB(ctx(t), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	exec1(t, server, name, "CREATE TABLE t (id BIGINT PRIMARY KEY)")
	c, err := client.Connect(server.Addr(), "root", server.RootPassword(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Begin(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Execute("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := server.DropDB(ctx(t), name); err != nil {
		t.Fatal(err)
	}
	t.Logf("DropDB took %v", time.Since(start))
	r, err := server.Query(ctx(t), "", "SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := r.GetInt(0, 0); n != 0 {
		t.Errorf("database %s still there", name)
	}
	if err := server.DropDB(ctx(t), name); err != nil {
		t.Errorf("dropping a dropped database: %v", err)
	}
}

func TestDBName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		seq  int64
		want string
	}{
		{"TestFoo/sub-case", 3, "testfoo_sub_case_3"},
		{"///", 1, "db_1"},
		{strings.Repeat("a", 100), 12, strings.Repeat("a", 61) + "_12"},
	} {
		if got := dbName(tc.in, tc.seq); got != tc.want {
			t.Errorf("dbName(%q, %d) = %q, want %q", tc.in, tc.seq, got, tc.want)
		}
		if n := len(dbName(tc.in, tc.seq)); n > 64 {
			t.Errorf("dbName(%q) is %d long", tc.in, n)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, n := range []int64{-1, 1, 4095, 1<<30 + 1} {
		if _, err := Start(ctx(t), Options{MaxBinlogSize: n}); err == nil || !strings.Contains(err.Error(), "MaxBinlogSize") {
			t.Errorf("MaxBinlogSize %d: %v, want a range error", n, err)
		}
	}
	for _, o := range []Options{{BufferPoolSize: -1 << 20}, {BufferPoolSize: 1<<20 + 1}, {LogFileSize: 1000}} {
		if _, err := Start(ctx(t), o); err == nil || !strings.Contains(err.Error(), "whole number of MiB") {
			t.Errorf("%+v: %v, want a size error", o, err)
		}
	}
}

// TestSizesAndPerformanceSchema starts a server as the benchmark does: a
// larger buffer pool and redo log, performance_schema on, and the server's
// own threads found under PID.
func TestSizesAndPerformanceSchema(t *testing.T) {
	s, err := Start(ctx(t), Options{BufferPoolSize: 192 << 20, LogFileSize: 48 << 20, PerformanceSchema: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := strings.Join(row(t, s, "", "SELECT @@innodb_buffer_pool_size, @@innodb_log_file_size, @@performance_schema"), " ")
	if want := fmt.Sprintf("%d %d 1", 192<<20, 48<<20); got != want {
		t.Errorf("settings = %q, want %q", got, want)
	}
	// This connection's OS thread is a task of the server process.
	tid := row(t, s, "", "SELECT THREAD_OS_ID FROM performance_schema.threads WHERE PROCESSLIST_ID = CONNECTION_ID()")[0]
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(s.PID()), "task", tid)); err != nil {
		t.Errorf("thread %s of mariadbd %d: %v", tid, s.PID(), err)
	}
	// The defaults the tests run with are unchanged.
	if got := strings.Join(row(t, server, "", "SELECT @@innodb_buffer_pool_size, @@performance_schema"), " "); got != fmt.Sprintf("%d 0", 64<<20) {
		t.Errorf("default server: %q", got)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if s.PID() != 0 {
		t.Errorf("PID after Kill = %d, want 0", s.PID())
	}
}

// TestBinlogRotationAndClose runs a second server with tiny binlog files
// and checks Close removes everything.
func TestBinlogRotationAndClose(t *testing.T) {
	s, err := Start(ctx(t), Options{MaxBinlogSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Port == server.Port || s.Dir == server.Dir {
		t.Errorf("second server shares port %d or dir %s", s.Port, s.Dir)
	}
	if got := row(t, s, "", "SELECT @@max_binlog_size")[0]; got != "4096" {
		t.Errorf("max_binlog_size = %s, want 4096", got)
	}
	db := newDB(t, s)
	exec1(t, s, db, "CREATE TABLE t (id BIGINT PRIMARY KEY, pad VARCHAR(1000))")
	for i := range 10 {
		exec1(t, s, db, fmt.Sprintf("INSERT INTO t VALUES (%d, REPEAT('x', 1000))", i))
	}
	files, _ := filepath.Glob(filepath.Join(s.DataDir(), "binlog.0*"))
	if len(files) < 3 {
		t.Errorf("binlog files %v: want rotation at 4 KiB", files)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s after Close: %v", s.Dir, err)
	}
	if s.Running() {
		t.Error("Running after Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.StartServer(ctx(t)); err == nil {
		t.Error("StartServer after Close succeeded")
	}
}

// TestStartRetriesTakenPort makes the first picked port one that is already
// in use (by the shared server), as happens when a parallel test binary
// wins the race for it, and checks Start moves on to another port.
func TestStartRetriesTakenPort(t *testing.T) {
	picks := 0
	s, err := start(ctx(t), Options{}, func() (int, error) {
		picks++
		if picks == 1 {
			return server.Port, nil
		}
		return pgserver.FreePort()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if picks != 2 || s.Port == server.Port {
		t.Errorf("picked %d ports, ended on %d (taken: %d)", picks, s.Port, server.Port)
	}
	if !strings.Contains(s.LogTail(), "Address already in use") {
		t.Errorf("log does not show the failed bind:\n%s", s.LogTail())
	}
}

func TestStartGivesUpOnTakenPorts(t *testing.T) {
	_, err := start(ctx(t), Options{}, func() (int, error) { return server.Port, nil })
	if err == nil {
		t.Fatal("Start succeeded on a taken port")
	}
	if !errors.Is(err, errPortTaken) {
		t.Errorf("error does not report the taken port: %v", err)
	}
}

// TestReaperCleansUpAfterCrash kills a process that owns a server without
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
			t.Fatalf("20s after crash: dir %s gone=%v, mariadbd %d alive=%v", dir, gone, pid, alive)
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

func TestStartFailureIncludesLog(t *testing.T) {
	s := server
	if err := s.StopServer(ctx(t)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	// mariadbd cannot enter a data directory without permissions.
	if err := os.Chmod(s.DataDir(), 0); err != nil {
		t.Fatal(err)
	}
	err = s.StartServer(ctx(t))
	if cerr := os.Chmod(s.DataDir(), fi.Mode().Perm()); cerr != nil {
		t.Fatal(cerr)
	}
	if err == nil {
		t.Fatal("StartServer on an inaccessible data directory succeeded")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "last ") || !strings.Contains(err.Error(), s.DataDir()) {
		t.Errorf("error lacks the error log: %v", err)
	}
	if s.Running() {
		t.Error("Running after a failed start")
	}
	if err := s.StartServer(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestQueryHonoursContext checks a statement is abandoned when its context
// ends, although go-mysql's I/O takes no context.
func TestQueryHonoursContext(t *testing.T) {
	c, cancel := context.WithTimeout(ctx(t), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := server.Query(c, "", "SELECT SLEEP(5)")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Query past its deadline: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Query returned after %v, want about 200ms", d)
	}
}
