// Package binlog reads a MySQL or MariaDB transaction database through its
// row-based binary log, as a replica does: it checks the server's settings,
// takes the first consistent snapshot at an exact binlog position, streams
// whole committed transactions as events from the sink's checkpoint on, and
// keeps the position and the minute clock moving with heartbeats while the
// tables are quiet. Nothing is kept on the server for riskwatch but a
// one-row-per-engine heartbeat table: the position lives in the sink, so
// the server's binlog retention (expire_logs_days, binlog_expire_logs_seconds)
// bounds how long riskwatch may be down.
package binlog

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/source"
)

// HeartbeatTable is riskwatch's own table in the source database: one row
// per engine (slot), updated while the mapped tables are quiet so that the
// binlog, and with it the minute clock, moves.
const HeartbeatTable = "riskwatch_heartbeat"

// Options configure a Source.
type Options struct {
	DSN string
	// Slot names this engine's heartbeat row and derives its server_id.
	Slot string
	// ServerID is the replica server_id; 0 derives one from Slot.
	ServerID uint32
	// TimeZone reads DATETIME columns (UTC when nil).
	TimeZone          *time.Location
	Mapping           *event.Mapping
	HeartbeatInterval time.Duration
	// Grace: a heartbeat is also written just after every minute's end +
	// grace, so that the minute closes at once.
	Grace   time.Duration
	Logger  *slog.Logger
	Metrics *source.Metrics
	// Now is the engine's clock (time.Now when nil).
	Now func() time.Time
	// Rows: Deliver fills Txn.Rows as well (see KeepRows).
	Rows bool
}

// Source reads one MySQL or MariaDB server.
type Source struct {
	opts Options
	dsn  dsn
	log  *slog.Logger
	now  func() time.Time
	// flavor is mysql.MySQLFlavor or mysql.MariaDBFlavor, found by Prepare.
	flavor string
	// gtid: the server keeps GTIDs that positions carry.
	gtid    bool
	tracker tracker
}

// dsn is a parsed mysql://USER:PASSWORD@HOST:PORT/DATABASE.
type dsn struct {
	user, password, addr, db string
	host                     string
	port                     uint16
}

// ParseDSN reads mysql://USER:PASSWORD@HOST:PORT/DATABASE (port 3306 when
// left out).
func ParseDSN(s string) (user, password, host string, port uint16, db string, err error) {
	d, err := parseDSN(s)
	return d.user, d.password, d.host, d.port, d.db, err
}

func parseDSN(s string) (dsn, error) {
	var d dsn
	u, err := url.Parse(s)
	if err != nil {
		return d, fmt.Errorf("source dsn: %w", err)
	}
	if u.Scheme != "mysql" {
		return d, fmt.Errorf("source dsn: scheme %q is not mysql", u.Scheme)
	}
	d.user = u.User.Username()
	d.password, _ = u.User.Password()
	d.db = strings.TrimPrefix(u.Path, "/")
	if d.user == "" || d.db == "" || u.Hostname() == "" {
		return d, fmt.Errorf("source dsn: want mysql://USER:PASSWORD@HOST:PORT/DATABASE")
	}
	d.host = u.Hostname()
	d.port = 3306
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return d, fmt.Errorf("source dsn: port %q: %w", p, err)
		}
		d.port = uint16(n)
	}
	d.addr = net.JoinHostPort(d.host, strconv.Itoa(int(d.port)))
	return d, nil
}

// New returns a Source; it connects lazily.
func New(o Options) (*Source, error) {
	d, err := parseDSN(o.DSN)
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = source.NewMetrics(nil)
	}
	if o.TimeZone == nil {
		o.TimeZone = time.UTC
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 200 * time.Millisecond
	}
	if o.ServerID == 0 {
		// Stable per slot, and far from the small numbers people give
		// their servers by hand.
		h := fnv.New32a()
		h.Write([]byte("riskwatch/" + o.Slot))
		o.ServerID = 1<<30 | h.Sum32()>>2
	}
	return &Source{opts: o, dsn: d, log: o.Logger.With("component", "source"), now: o.Now}, nil
}

// Database is the source database the DSN names.
func (s *Source) Database() string { return s.dsn.db }

func (s *Source) connect(ctx context.Context) (*client.Conn, error) {
	conn, err := client.ConnectWithDialer(ctx, "tcp", s.dsn.addr, s.dsn.user, s.dsn.password, s.dsn.db, dialBounded)
	if err != nil {
		return nil, fmt.Errorf("connecting to source %s: %w", s.dsn.addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	// go-mysql does not watch contexts: when ctx ends, a query waiting on
	// a server that stopped answering returns at once (the session's
	// goroutines must all end for the engine to reconnect).
	context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	// TIMESTAMP columns and NOW() in UTC: the snapshot and the heartbeat
	// read instants, never the server's zone.
	if _, err := conn.Execute("SET time_zone = '+00:00'"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("setting the session time zone: %w", err)
	}
	return conn, nil
}

// PermanentError is source.PermanentError: retrying cannot fix it.
type PermanentError = source.PermanentError

func permanent(format string, args ...any) error {
	return &PermanentError{Err: fmt.Errorf(format, args...)}
}

// Prepare checks that the server writes a row-based binlog riskwatch can
// read, that the mapped tables and columns exist with usable types, and
// creates the heartbeat table. Mistakes are permanent errors that say what
// to set.
func (s *Source) Prepare(ctx context.Context) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := s.detect(conn); err != nil {
		return err
	}
	if err := s.checkSettings(conn); err != nil {
		return err
	}
	if err := s.checkMapping(conn); err != nil {
		return err
	}
	if _, err := conn.Execute(fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (slot VARCHAR(64) NOT NULL PRIMARY KEY, at_us BIGINT NOT NULL) ENGINE=InnoDB",
		quote(HeartbeatTable))); err != nil {
		return permanent("creating the heartbeat table %s.%s (grant CREATE and INSERT, UPDATE on it, or create it: slot VARCHAR(64) PRIMARY KEY, at_us BIGINT): %w",
			s.dsn.db, HeartbeatTable, err)
	}
	return nil
}

// detect finds the flavour and whether positions carry GTIDs.
func (s *Source) detect(conn *client.Conn) error {
	v, err := queryString(conn, "SELECT VERSION()")
	if err != nil {
		return fmt.Errorf("reading the server version: %w", err)
	}
	s.flavor = flavorOf(v)
	if s.flavor == mysql.MariaDBFlavor {
		// MariaDB writes GTIDs to the binlog always.
		s.gtid = true
		return nil
	}
	mode, err := queryString(conn, "SELECT @@GLOBAL.gtid_mode")
	if err != nil {
		return fmt.Errorf("reading gtid_mode: %w", err)
	}
	s.gtid = strings.EqualFold(mode, "ON")
	return nil
}

// flavorOf tells MariaDB from MySQL by the version string.
func flavorOf(version string) string {
	if strings.Contains(strings.ToLower(version), "mariadb") {
		return mysql.MariaDBFlavor
	}
	return mysql.MySQLFlavor
}

// checkSettings reads the binlog settings and says what to change.
func (s *Source) checkSettings(conn *client.Conn) error {
	r, err := conn.Execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'version')")
	if err != nil {
		return fmt.Errorf("reading binlog settings: %w", err)
	}
	vars := map[string]string{}
	for i := range r.RowNumber() {
		k, _ := r.GetString(i, 0)
		v, _ := r.GetString(i, 1)
		vars[strings.ToLower(k)] = v
	}
	return checkVars(s.flavor, vars)
}

// checkVars is checkSettings on the values read, apart for tests of
// recorded server replies.
func checkVars(flavor string, vars map[string]string) error {
	var problems []string
	if !strings.EqualFold(vars["log_bin"], "ON") && vars["log_bin"] != "1" {
		problems = append(problems, "log_bin is OFF: start the server with log_bin (e.g. log_bin=mysql-bin) and a server_id")
	}
	if f := vars["binlog_format"]; !strings.EqualFold(f, "ROW") {
		problems = append(problems, fmt.Sprintf("binlog_format is %s: set binlog_format=ROW", f))
	}
	if im := vars["binlog_row_image"]; !strings.EqualFold(im, "FULL") {
		problems = append(problems, fmt.Sprintf("binlog_row_image is %s: set binlog_row_image=FULL", im))
	}
	md, has := vars["binlog_row_metadata"]
	switch {
	case has && !strings.EqualFold(md, "FULL"):
		problems = append(problems, fmt.Sprintf("binlog_row_metadata is %s: set binlog_row_metadata=FULL so that row events carry their column names", md))
	case !has:
		what := "MySQL 8.0"
		if flavor == mysql.MariaDBFlavor {
			what = "MariaDB 10.5"
		}
		problems = append(problems, fmt.Sprintf("the server (%s) has no binlog_row_metadata: riskwatch needs %s or later, whose row events carry their column names", vars["version"], what))
	}
	if len(problems) > 0 {
		return permanent("the source server's binary log cannot be read by riskwatch: %s", strings.Join(problems, "; "))
	}
	return nil
}

// columnTypes are the types a mapped column may have.
var (
	integerTypes = []string{"tinyint", "smallint", "mediumint", "int", "bigint", "decimal"}
	timeTypes    = []string{"datetime", "timestamp"}
)

// checkMapping checks every mapped table and column against
// information_schema, naming the first that is missing or of a type that
// cannot hold what it maps.
func (s *Source) checkMapping(conn *client.Conn) error {
	for _, sp := range s.opts.Mapping.Specs() {
		r, err := conn.Execute(`SELECT column_name, data_type, numeric_scale FROM information_schema.columns WHERE table_schema = ? AND table_name = ?`, sp.Schema, sp.Table)
		if err != nil {
			return fmt.Errorf("reading the columns of %s: %w", sp.QualifiedTable(), err)
		}
		if r.RowNumber() == 0 {
			return permanent("mapping: table %s does not exist in the source (or the user may not see it: grant SELECT on it)", sp.QualifiedTable())
		}
		types := map[string]string{}
		for i := range r.RowNumber() {
			name, _ := r.GetString(i, 0)
			tp, _ := r.GetString(i, 1)
			types[strings.ToLower(name)] = strings.ToLower(tp)
		}
		check := func(what, col string, allowed []string) error {
			tp, ok := types[strings.ToLower(col)]
			switch {
			case !ok:
				return permanent("mapping: %s column %q of %s does not exist", what, col, sp.QualifiedTable())
			case allowed != nil && !slices.Contains(allowed, tp):
				return permanent("mapping: %s column %q of %s is %s; it must be one of %s", what, col, sp.QualifiedTable(), tp, strings.Join(allowed, ", "))
			}
			return nil
		}
		if err := check("merchant", sp.Merchant, integerTypes); err != nil {
			return err
		}
		if err := check("amount", sp.Amount, integerTypes); err != nil {
			return err
		}
		if err := check("time", sp.Time, timeTypes); err != nil {
			return err
		}
		if sp.FilterColumn != "" {
			if err := check("filter", sp.FilterColumn, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// queryString reads one value.
func queryString(conn *client.Conn, q string, args ...any) (string, error) {
	r, err := conn.Execute(q, args...)
	if err != nil {
		return "", err
	}
	if r.RowNumber() == 0 {
		return "", errors.New("no row")
	}
	return r.GetString(0, 0)
}

// quote quotes an identifier with backticks.
func quote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// tableName is `schema`.`table`.
func tableName(schema, table string) string { return quote(schema) + "." + quote(table) }

// binaryLogs lists the server's binlog files and sizes.
func binaryLogs(conn *client.Conn) ([]logFile, error) {
	r, err := conn.Execute("SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("listing binary logs (grant REPLICATION CLIENT): %w", err)
	}
	out := make([]logFile, 0, r.RowNumber())
	for i := range r.RowNumber() {
		name, _ := r.GetString(i, 0)
		size, _ := r.GetInt(i, 1)
		out = append(out, logFile{Name: name, Size: size})
	}
	return out, nil
}

// FromConfig builds the source a mysql:// source.dsn names.
func FromConfig(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	mapping, err := cfg.EventMapping()
	if err != nil {
		return nil, err
	}
	return New(Options{DSN: cfg.Source.DSN, Slot: cfg.Source.Slot, ServerID: cfg.Source.ServerID, TimeZone: cfg.Source.TimeLocation,
		Mapping: mapping, HeartbeatInterval: cfg.Source.HeartbeatInterval.D(), Grace: cfg.Grace.D(), Logger: log, Metrics: source.NewMetrics(reg)})
}

// Status is what `riskwatch slot status` shows for a MySQL source.
type Status struct {
	Flavor   string
	ServerID uint32
	// Current is the server's binlog end now; Oldest its oldest file.
	Current Position
	Oldest  string
	// Behind is how many bytes of binlog lie after the checkpoint; Held
	// whether the server still holds the checkpoint's file.
	Behind int64
	Held   bool
}

// Status reads the server's binlog against checkpoint ("" for none).
func (s *Source) Status(ctx context.Context, checkpoint string) (Status, error) {
	st := Status{ServerID: s.opts.ServerID}
	conn, err := s.connect(ctx)
	if err != nil {
		return st, err
	}
	defer conn.Close()
	if err := s.detect(conn); err != nil {
		return st, err
	}
	st.Flavor = s.flavor
	files, err := binaryLogs(conn)
	if err != nil {
		return st, err
	}
	if len(files) > 0 {
		last := files[len(files)-1]
		st.Current, st.Oldest = Position{File: last.Name, Pos: uint32(last.Size)}, files[0].Name
	}
	if s.gtid {
		q := "SELECT @@GLOBAL.gtid_executed"
		if s.flavor == mysql.MariaDBFlavor {
			q = "SELECT @@GLOBAL.gtid_binlog_pos"
		}
		if st.Current.GTID, err = queryString(conn, q); err != nil {
			return st, fmt.Errorf("reading the server's GTID position: %w", err)
		}
	}
	if checkpoint != "" {
		p, err := ParsePosition(checkpoint)
		if err != nil {
			return st, err
		}
		st.Behind, st.Held = behind(p, files)
	}
	return st, nil
}

// handshakeTimeout bounds a connection's TCP connect and MySQL handshake.
const handshakeTimeout = 10 * time.Second

// dialBounded dials with a deadline that covers the MySQL handshake, which
// go-mysql reads without one (a server that accepts TCP but does not
// answer, stopped or overloaded, would hang it); whoever keeps the
// connection clears the deadline once connected.
func dialBounded(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: handshakeTimeout}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	return c, nil
}
