// Package source reads the transaction database through PostgreSQL logical
// replication (pgoutput): it owns the publication and the replication slot,
// takes the first consistent snapshot, streams committed transactions as
// events, answers keepalives, confirms only what the sink made durable, and
// keeps the slot moving with heartbeats while the watched tables are quiet.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/event"
)

// LSN is a position in the source's write-ahead log.
type LSN = pglogrepl.LSN

// ApplicationName names the replication and heartbeat connections, so that
// an operator sees in pg_stat_activity what riskwatch holds on the source.
const ApplicationName = "riskwatch"

// HeartbeatPrefix is the logical message prefix of riskwatch's heartbeats.
const HeartbeatPrefix = "riskwatch.heartbeat"

// Options configure a Source.
type Options struct {
	DSN               string
	Slot              string
	Publication       string
	Mapping           *event.Mapping
	StatusInterval    time.Duration
	HeartbeatInterval time.Duration
	// Grace is the minute-closing grace: one heartbeat is also committed
	// just after every minute's end + grace, so that minute closes at once
	// rather than up to two heartbeat intervals later.
	Grace time.Duration
	// Minute selects minute delivery (Deliver drains once a minute)
	// instead of streaming.
	Minute  bool
	Logger  *slog.Logger
	Metrics *Metrics
	// Now is the engine's clock (time.Now when nil).
	Now func() time.Time
}

// Source is the replication client for one slot.
type Source struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	// tracker is what the server last said, for lag and quiet.
	tracker Tracker
}

// PermanentError marks failures that retrying cannot fix (the mapping does
// not match the tables, the server cannot do logical replication).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// New returns a Source; it connects lazily.
func New(opts Options) *Source {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = time.Second
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = 200 * time.Millisecond
	}
	return &Source{opts: opts, log: opts.Logger.With("component", "source"), now: opts.Now}
}

func (s *Source) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(s.opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("parsing source dsn: %w", err)
	}
	cfg.RuntimeParams["application_name"] = ApplicationName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to source: %w", err)
	}
	return conn, nil
}

func (s *Source) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(s.opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("parsing source dsn: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = ApplicationName
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening replication connection: %w", err)
	}
	return conn, nil
}

// ident quotes one identifier.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// tableIdent quotes schema.table.
func tableIdent(schema, table string) string { return pgx.Identifier{schema, table}.Sanitize() }

// Prepare checks that the server can do logical replication and that every
// mapped table and column exists with a usable type, and creates or extends
// the publication. Mapping problems are permanent errors naming the column.
func (s *Source) Prepare(ctx context.Context) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("reading wal_level: %w", err)
	}
	if walLevel != "logical" {
		return &PermanentError{fmt.Errorf("source wal_level is %q: logical replication needs wal_level=logical (then restart the server)", walLevel)}
	}
	for _, t := range s.opts.Mapping.Tables() {
		cols, err := tableColumns(ctx, conn, t[0], t[1])
		if err != nil {
			return err
		}
		if _, err := s.opts.Mapping.Bind(t[0], t[1], cols); err != nil {
			return &PermanentError{fmt.Errorf("mapping does not match the source: %w", err)}
		}
	}
	return s.ensurePublication(ctx, conn)
}

func tableColumns(ctx context.Context, conn *pgx.Conn, schema, table string) ([]event.Column, error) {
	rows, err := conn.Query(ctx, `
		SELECT a.attname, a.atttypid
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, schema, table)
	if err != nil {
		return nil, fmt.Errorf("reading columns of %s.%s: %w", schema, table, err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (event.Column, error) {
		var c event.Column
		err := r.Scan(&c.Name, &c.TypeOID)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading columns of %s.%s: %w", schema, table, err)
	}
	if len(cols) == 0 {
		return nil, &PermanentError{fmt.Errorf("mapped source table %s.%s does not exist", schema, table)}
	}
	return cols, nil
}

func (s *Source) ensurePublication(ctx context.Context, conn *pgx.Conn) error {
	var tables []string
	for _, t := range s.opts.Mapping.Tables() {
		tables = append(tables, tableIdent(t[0], t[1]))
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", s.opts.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("looking up publication: %w", err)
	}
	if !exists {
		// Only inserts are events, but updates, deletes and truncates are
		// published too so that they are counted (SPEC §2).
		sql := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", ident(s.opts.Publication), strings.Join(tables, ", "))
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("creating publication %s: %w", s.opts.Publication, err)
		}
		s.log.Info("created publication", "publication", s.opts.Publication, "tables", len(tables))
		return nil
	}
	for _, t := range s.opts.Mapping.Tables() {
		var in bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`,
			s.opts.Publication, t[0], t[1]).Scan(&in)
		if err != nil {
			return fmt.Errorf("reading publication tables: %w", err)
		}
		if !in {
			sql := fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", ident(s.opts.Publication), tableIdent(t[0], t[1]))
			if _, err := conn.Exec(ctx, sql); err != nil {
				return fmt.Errorf("adding %s.%s to publication: %w", t[0], t[1], err)
			}
			s.log.Info("added table to publication", "publication", s.opts.Publication, "table", t[0]+"."+t[1])
		}
	}
	return nil
}

// SlotInfo describes the replication slot as the server sees it.
type SlotInfo struct {
	Name              string
	Plugin            string
	Database          string
	Active            bool
	ActivePID         *int32
	RestartLSN        LSN
	ConfirmedFlushLSN LSN
	CurrentWALLSN     LSN
	// RetainedBytes is how much WAL the server keeps for this slot.
	RetainedBytes int64
	WALStatus     string
}

// Slot returns the slot's state, or nil when it does not exist.
func (s *Source) Slot(ctx context.Context) (*SlotInfo, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var si SlotInfo
	err = conn.QueryRow(ctx, `
		SELECT slot_name, coalesce(plugin, ''), coalesce(database, ''), active, active_pid,
		       coalesce(restart_lsn, '0/0')::text, coalesce(confirmed_flush_lsn, '0/0')::text,
		       pg_current_wal_lsn()::text,
		       coalesce(pg_current_wal_lsn() - restart_lsn, 0)::bigint, coalesce(wal_status, '')
		FROM pg_replication_slots WHERE slot_name = $1`, s.opts.Slot).
		Scan(&si.Name, &si.Plugin, &si.Database, &si.Active, &si.ActivePID, &si.RestartLSN, &si.ConfirmedFlushLSN, &si.CurrentWALLSN, &si.RetainedBytes, &si.WALStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading slot %s: %w", s.opts.Slot, err)
	}
	return &si, nil
}

// TakeSlot ends the server session that still streams from the slot, if
// any, and returns its pid (0: none). A new active engine calls it once its
// lease is its own: the old one's walsender may outlive its process by up
// to the server's wal_sender_timeout after a network loss, and the slot
// takes one reader at a time. Ending another role's backend needs that
// role, or membership in pg_signal_backend.
func (s *Source) TakeSlot(ctx context.Context) (int32, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// With a timeout each call waits for the backend to be gone. It is
	// asked more than once: a walsender whose client stopped reading can
	// be blocked sending the first signal's error message into a full
	// socket, and only a second signal makes it exit without sending.
	var first int32
	for attempt := 1; ; attempt++ {
		var pid *int32
		var ended *bool
		err := conn.QueryRow(ctx, `SELECT active_pid, pg_terminate_backend(active_pid, 1000) FROM pg_replication_slots
			WHERE slot_name = $1 AND active_pid IS NOT NULL`, s.opts.Slot).Scan(&pid, &ended)
		switch {
		case errors.Is(err, pgx.ErrNoRows) || (err == nil && pid == nil):
			return first, nil
		case err != nil:
			return first, fmt.Errorf("ending the session that holds slot %s: %w", s.opts.Slot, err)
		}
		if first == 0 {
			first = *pid
		}
		if attempt == 5 {
			return first, fmt.Errorf("session %d holding slot %s did not end after %d signals", *pid, s.opts.Slot, attempt)
		}
	}
}

// DropSlot removes the replication slot. It refuses while an engine is
// streaming from it.
func (s *Source) DropSlot(ctx context.Context) error {
	si, err := s.Slot(ctx)
	if err != nil {
		return err
	}
	if si == nil {
		return fmt.Errorf("replication slot %q does not exist", s.opts.Slot)
	}
	if si.Active {
		pid := int32(0)
		if si.ActivePID != nil {
			pid = *si.ActivePID
		}
		return fmt.Errorf("replication slot %q is in use by backend pid %d: stop the engine first", s.opts.Slot, pid)
	}
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.opts.Slot); err != nil {
		return fmt.Errorf("dropping slot %s: %w", s.opts.Slot, err)
	}
	return nil
}

// Heartbeat emits a transactional logical message whenever quiet reports that
// no transaction has arrived for a heartbeat interval. Its commit carries the
// source's commit time through the stream, which is how an idle source still
// closes minutes, and its position lets the slot advance so the server does
// not keep WAL for us. Failures are logged and retried: a heartbeat is never
// worth stopping the pipeline for, and a down source shows up in the stream.
// With minute delivery it does nothing: each drain commits its own.
func (s *Source) Heartbeat(ctx context.Context, quiet func(time.Duration) bool) error {
	if s.opts.Minute {
		return nil
	}
	t := time.NewTicker(s.opts.HeartbeatInterval)
	defer t.Stop()
	boundary := time.NewTimer(s.untilBoundary())
	defer boundary.Stop()
	hb := &heartbeater{src: s}
	defer hb.close(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if !quiet(s.opts.HeartbeatInterval) {
				continue
			}
		case <-boundary.C:
			boundary.Reset(s.untilBoundary())
		}
		_ = hb.emit(ctx)
	}
}

// untilBoundary is how long until the next minute's end + grace (and 5 ms)
// on the engine's clock. If the source's clock is behind, a heartbeat at
// that moment closes nothing and a later commit does.
func (s *Source) untilBoundary() time.Duration {
	now := s.now()
	at := now.Truncate(time.Minute).Add(s.opts.Grace + 5*time.Millisecond)
	for !at.After(now) {
		at = at.Add(time.Minute)
	}
	return at.Sub(now)
}

// heartbeater commits heartbeats on one lazily opened connection.
type heartbeater struct {
	src     *Source
	conn    *pgx.Conn
	lastLog time.Time
}

// emit commits one heartbeat. A failure is counted, logged at most every
// 30 s, and returned; the next emit reconnects.
func (h *heartbeater) emit(ctx context.Context) error {
	s := h.src
	var err error
	if h.conn == nil {
		h.conn, err = s.connect(ctx)
	}
	if err == nil {
		_, err = h.conn.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, '')", HeartbeatPrefix)
	}
	if err != nil {
		h.close(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.opts.Metrics.heartbeatErrors.Inc()
		if s.now().Sub(h.lastLog) > 30*time.Second {
			s.log.Warn("heartbeat failed", "err", err)
			h.lastLog = s.now()
		}
		return fmt.Errorf("committing a heartbeat: %w", err)
	}
	s.opts.Metrics.heartbeats.Inc()
	return nil
}

func (h *heartbeater) close(ctx context.Context) {
	if h.conn != nil {
		h.conn.Close(context.WithoutCancel(ctx))
		h.conn = nil
	}
}

// Deliver streams (or, with minute delivery, drains) the transactions
// committed after start, an LSN in its text form ("" for none), confirming
// to the server only durable().
func (s *Source) Deliver(ctx context.Context, start string, durable func() string, out chan<- *Txn, live func()) error {
	from, err := ParseLSN(start)
	if err != nil {
		return err
	}
	so := StreamOptions{Start: from, Out: out, OnStreaming: live, Flushed: func() LSN {
		// durable() only ever holds positions this source wrote.
		lsn, _ := ParseLSN(durable())
		return lsn
	}}
	if s.opts.Minute {
		return s.Drain(ctx, so)
	}
	return s.Stream(ctx, so)
}

// ParseLSN reads a position this source wrote ("" is none).
func ParseLSN(s string) (LSN, error) {
	if s == "" {
		return 0, nil
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		return 0, fmt.Errorf("position %q is not a PostgreSQL LSN: %w", s, err)
	}
	return lsn, nil
}

// Quiet reports whether no transaction has arrived for d.
func (s *Source) Quiet(now time.Time, d time.Duration) bool { return s.tracker.Quiet(now, d) }

// Lag is the WAL the server has beyond applied, and its clock now.
func (s *Source) Lag(now time.Time, applied string) (bytes int64, serverNow time.Time, ok bool) {
	pos := s.tracker.Server()
	if pos.ServerWALEnd == 0 {
		return 0, time.Time{}, false
	}
	if lsn, err := ParseLSN(applied); err == nil && pos.ServerWALEnd > lsn {
		bytes = int64(pos.ServerWALEnd - lsn)
	}
	return bytes, pos.ServerTime.Add(max(0, now.Sub(pos.HeardAt))), true
}

// FromConfig builds the source the configuration names, its metrics
// registered with reg.
func FromConfig(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	mapping, err := cfg.EventMapping()
	if err != nil {
		return nil, err
	}
	return New(Options{
		DSN: cfg.Source.DSN, Slot: cfg.Source.Slot, Publication: cfg.Source.Publication, Mapping: mapping,
		StatusInterval: cfg.Source.StatusInterval.D(), HeartbeatInterval: cfg.Source.HeartbeatInterval.D(), Grace: cfg.Grace.D(),
		Minute: cfg.Source.MinuteDelivery(), Logger: log, Metrics: NewMetrics(reg),
	}), nil
}
