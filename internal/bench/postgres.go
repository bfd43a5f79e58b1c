package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/merchantnames"
	"github.com/riskwatch/riskwatch/internal/pgserver"
	"github.com/riskwatch/riskwatch/internal/source"
)

// pgSource is a private PostgreSQL as the transaction database, read
// through logical replication; the sink is a second server, as in
// production, so that the source's walsender decodes only the source's own
// changes.
type pgSource struct {
	cluster *pgserver.Cluster
	dsn     string
	pool    *pgxpool.Pool
	log     func(msg string, args ...any)
}

func (s *pgSource) start(ctx context.Context, r *runner) error {
	s.log = r.log.Warn
	c, err := pgserver.Start(ctx)
	if err != nil {
		return err
	}
	s.cluster = c
	if err := c.Exec(ctx, "postgres", "CREATE DATABASE payments"); err != nil {
		return err
	}
	s.dsn = c.DSN("payments")
	s.pool, err = pgxpool.New(ctx, s.dsn)
	return err
}

func (s *pgSource) close() error {
	if s.pool != nil {
		s.pool.Close()
	}
	if s.cluster != nil {
		return s.cluster.Close()
	}
	return nil
}

func (s *pgSource) simDSN() string    { return s.dsn }
func (s *pgSource) engineDSN() string { return s.dsn }

// machine: the PostgreSQL version is pg_config's, which machine() reads
// for every run (the sink is PostgreSQL in both).
func (s *pgSource) machine(context.Context, *Machine) {}

func (s *pgSource) slots(res *Results) slots {
	b := &res.Baseline
	return slots{
		peakReaderCores:     &res.Peak.WalsenderCore,
		catchUpFloorSeconds: &res.CatchUp.FloorSeconds, catchUpFloorRate: &res.CatchUp.FloorEventsPerS,
		averageReaderCPU: &b.RiskwatchWalsenderCPU,
		streamFloors:     []floorSlot{{&b.FloorLogicalCPU, &b.FloorLogicalRatio}, {&b.FloorPhysicalCPU, &b.FloorPhysicalRatio}},
		logBytesPerMin:   &b.WALBytesPerMin,
	}
}

func (s *pgSource) payments(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM payments").Scan(&n)
	return n, err
}

// inserted reads the statistics collector.
func (s *pgSource) inserted(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins), 0)::bigint FROM pg_stat_user_tables
		WHERE relname IN ('payments', 'payment_cancels')`).Scan(&n)
	return n, err
}

// reader is the walsender decoding for the engine's slot.
func (s *pgSource) reader(ctx context.Context) (cpuClock, error) {
	var pid int
	err := s.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_replication WHERE application_name = $1 ORDER BY backend_start DESC LIMIT 1`, source.ApplicationName).Scan(&pid)
	if err != nil {
		return nil, fmt.Errorf("finding the walsender: %w", err)
	}
	return func() (time.Duration, error) { return ProcCPU(pid) }, nil
}

// others: every backend riskwatch holds on the source other than
// walsenders, told apart by application_name, by pid.
func (s *pgSource) others(ctx context.Context) (map[int]time.Duration, error) {
	rows, err := s.pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1) AND backend_type <> 'walsender'`,
		[]string{source.ApplicationName, merchantnames.ApplicationName})
	if err != nil {
		return nil, fmt.Errorf("listing riskwatch's source connections: %w", err)
	}
	defer rows.Close()
	out := make(map[int]time.Duration)
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		// A connection that ends between the listing and the read is
		// simply not counted.
		if cpu, err := ProcCPU(pid); err == nil {
			out[pid] = cpu
		}
	}
	return out, rows.Err()
}

func (s *pgSource) insertBustOut(ctx context.Context, merchant, row int64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
		SELECT $2::bigint + g, 0, $1 + g / 10, 30000, now() FROM generate_series(0, 29) g`, merchant, row)
	return err
}

// bootstrapFloors runs the first snapshot's per-merchant-minute GROUP BY
// over the retention on the source, as one query, into /dev/null: what
// PostgreSQL needs to aggregate the history, before riskwatch moves a row.
func (s *pgSource) bootstrapFloors(ctx context.Context, res *Results) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	// As the snapshot runs it: UTC, no parallel workers.
	if _, err := conn.Exec(ctx, "SET TimeZone = 'UTC'; SET max_parallel_workers_per_gather = 0"); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), "RESET TimeZone; RESET max_parallel_workers_per_gather")
	t0 := time.Now()
	_, err = conn.Exec(ctx, `COPY (SELECT m, minute, sum(a), sum(aa), sum(c), sum(ca) FROM (
			SELECT merchant_id, date_trunc('minute', approved_at), 1, amount, 0, 0::bigint FROM payments
			WHERE approved_at >= now() - interval '8 days' AND approved_at < now() + interval '5 minutes'
			UNION ALL
			SELECT merchant_id, date_trunc('minute', canceled_at), 0, 0::bigint, 1, cancel_amount FROM payment_cancels
			WHERE canceled_at >= now() - interval '8 days' AND canceled_at < now() + interval '5 minutes'
		) AS u(m, minute, a, aa, c, ca) GROUP BY 1, 2) TO '/dev/null'`)
	if err != nil {
		return fmt.Errorf("the bare GROUP BY: %w", err)
	}
	d := time.Since(t0)
	res.Bootstrap.GroupBySeconds = d.Seconds()
	res.Bootstrap.Ratio = res.Bootstrap.Seconds / d.Seconds()
	return nil
}

// catchUpSlot is the slot pg_recvlogical drains the catch-up's backlog from.
const catchUpSlot = "riskwatch_bench_catchup"

// pgBacklog reads the backlog from a slot of the engine's kind, created
// where the engine stopped.
type pgBacklog struct {
	s   *pgSource
	end string
}

func (s *pgSource) beginBacklog(ctx context.Context) (backlog, error) {
	if _, err := s.pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, catchUpSlot); err != nil {
		return nil, fmt.Errorf("creating the floor's slot: %w", err)
	}
	return &pgBacklog{s: s}, nil
}

func (b *pgBacklog) written(ctx context.Context) error {
	if err := b.s.pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&b.end); err != nil {
		return fmt.Errorf("reading the backlog's end: %w", err)
	}
	return nil
}

// drain times pg_recvlogical reading the slot up to the backlog's end,
// with the engine's publication and options, output thrown away: how fast
// PostgreSQL can decode and send the backlog to a client that does nothing
// with it.
func (b *pgBacklog) drain(ctx context.Context) (time.Duration, error) {
	c := b.s.cluster
	conn := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres", "-d", "payments"}
	pub := config.Default().Source.Publication
	cmd := exec.CommandContext(ctx, c.Bin("pg_recvlogical"), append(conn, "--slot", catchUpSlot, "--start", "--endpos", b.end,
		"-o", "proto_version=1", "-o", "publication_names="+pub, "-o", "binary=true", "-o", "messages=true", "-f", os.DevNull)...)
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pg_recvlogical draining %s to %s: %w: %s", catchUpSlot, b.end, err, out)
	}
	return time.Since(t0), nil
}

func (b *pgBacklog) close(ctx context.Context) { b.s.dropSlot(ctx, catchUpSlot) }

func (s *pgSource) dropSlot(ctx context.Context, slot string) {
	if _, err := s.pool.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot); err != nil {
		s.log("dropping a floor slot", "slot", slot, "err", err)
	}
}

func (s *pgSource) logBytes(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_current_wal_lsn() - '0/0'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading the WAL position: %w", err)
	}
	return n, nil
}

// floorSlotName is the slot pg_recvlogical reads during the average-rate
// phase.
const floorSlotName = "riskwatch_bench_floor"

// pgFloors are PostgreSQL's own streaming clients, run beside the engine
// at the same traffic so that the source's cost for riskwatch can be set
// against what streaming costs the source at all:
//   - pg_recvlogical on a pgoutput slot with the engine's publication and
//     options: what any logical-decoding client costs the walsender;
//   - pg_receivewal: what shipping the WAL costs, as for a physical standby,
//     with no decoding at all.
//
// Both report their position every second, as the engine does.
type pgFloors struct {
	s     *pgSource
	procs []*proc
	dir   string
	// pids of their walsenders, once streaming.
	logicalPID, physicalPID int
}

func (s *pgSource) startStreamFloors(ctx context.Context, r *runner) (streamFloors, error) {
	dir, err := os.MkdirTemp("", "riskwatch-bench-wal-")
	if err != nil {
		return nil, err
	}
	f := &pgFloors{s: s, dir: dir}
	conn := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.cluster.Port), "-U", "postgres"}
	pub := config.Default().Source.Publication
	logical := exec.Command(s.cluster.Bin("pg_recvlogical"), append(conn, "-d", "payments",
		"--slot", floorSlotName, "--create-slot", "--if-not-exists", "--plugin", "pgoutput", "--start",
		"-o", "proto_version=1", "-o", "publication_names="+pub, "-o", "binary=true", "-o", "messages=true",
		"-s", "1", "-f", os.DevNull)...)
	physical := exec.Command(s.cluster.Bin("pg_receivewal"), append(conn, "-D", dir, "--no-sync", "-s", "1")...)
	for _, c := range []*exec.Cmd{logical, physical} {
		p, err := r.startProc(c, filepath.Base(c.Path), "")
		if err != nil {
			f.stop(ctx)
			return nil, err
		}
		f.procs = append(f.procs, p)
	}
	deadline := time.Now().Add(time.Minute)
	for f.logicalPID == 0 || f.physicalPID == 0 {
		err := s.pool.QueryRow(ctx, `SELECT coalesce(max(pid) FILTER (WHERE application_name = 'pg_recvlogical'), 0),
			coalesce(max(pid) FILTER (WHERE application_name = 'pg_receivewal'), 0)
			FROM pg_stat_replication WHERE state = 'streaming'`).Scan(&f.logicalPID, &f.physicalPID)
		if err != nil {
			f.stop(ctx)
			return nil, fmt.Errorf("finding the floor clients' walsenders: %w", err)
		}
		if time.Now().After(deadline) {
			f.stop(ctx)
			return nil, fmt.Errorf("pg_recvlogical and pg_receivewal not streaming after a minute (see %s)", r.opts.Out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return f, nil
}

func (f *pgFloors) cpu() ([]time.Duration, error) {
	logical, err := ProcCPU(f.logicalPID)
	if err != nil {
		return nil, err
	}
	physical, err := ProcCPU(f.physicalPID)
	if err != nil {
		return nil, err
	}
	return []time.Duration{logical, physical}, nil
}

// stop ends both clients and drops pg_recvlogical's slot, so that it keeps
// no WAL for the rest of the run.
func (f *pgFloors) stop(ctx context.Context) {
	for _, p := range f.procs {
		p.kill()
	}
	f.s.dropSlot(ctx, floorSlotName)
	_ = os.RemoveAll(f.dir)
}

// pgJob is the SQL-polling job of baseline.go on the source.
type pgJob struct{ s *pgSource }

func (s *pgSource) sqlJob(context.Context) (sqlJob, error) { return pgJob{s}, nil }

func (j pgJob) prepare(ctx context.Context) error { return PrepareBaseline(ctx, j.s.pool) }

func (j pgJob) run(ctx context.Context, p BaselineParams, m time.Time) (BaselineRun, error) {
	pm, err := pgserver.PostmasterPID(j.s.cluster.Dir)
	if err != nil {
		return BaselineRun{}, err
	}
	p.ServerPID = pm
	return RunBaseline(ctx, j.s.pool, p, m)
}
