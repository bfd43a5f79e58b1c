package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/merchantnames"
	"github.com/riskwatch/riskwatch/internal/source"
)

// floorSlot is the slot pg_recvlogical reads during the average-rate phase.
const floorSlot = "riskwatch_bench_floor"

// floors are PostgreSQL's own streaming clients, run beside the engine at
// the same traffic so that the source's cost for riskwatch can be set
// against what streaming costs the source at all:
//   - pg_recvlogical on a pgoutput slot with the engine's publication and
//     options: what any logical-decoding client costs the walsender;
//   - pg_receivewal: what shipping the WAL costs, as for a physical standby,
//     with no decoding at all.
//
// Both report their position every second, as the engine does.
type floors struct {
	procs []*proc
	dir   string
	// pids of their walsenders, once streaming.
	logicalPID, physicalPID int
}

func (r *runner) startFloors(ctx context.Context) (*floors, error) {
	dir, err := os.MkdirTemp("", "riskwatch-bench-wal-")
	if err != nil {
		return nil, err
	}
	f := &floors{dir: dir}
	conn := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(r.cluster.Port), "-U", "postgres"}
	pub := config.Default().Source.Publication
	logical := exec.Command(r.cluster.Bin("pg_recvlogical"), append(conn, "-d", "payments",
		"--slot", floorSlot, "--create-slot", "--if-not-exists", "--plugin", "pgoutput", "--start",
		"-o", "proto_version=1", "-o", "publication_names="+pub, "-o", "binary=true", "-o", "messages=true",
		"-s", "1", "-f", os.DevNull)...)
	physical := exec.Command(r.cluster.Bin("pg_receivewal"), append(conn, "-D", dir, "--no-sync", "-s", "1")...)
	for _, c := range []*exec.Cmd{logical, physical} {
		p, err := r.startProc(c, filepath.Base(c.Path), "")
		if err != nil {
			f.stop(ctx, r)
			return nil, err
		}
		f.procs = append(f.procs, p)
	}
	deadline := time.Now().Add(time.Minute)
	for f.logicalPID == 0 || f.physicalPID == 0 {
		err := r.pool.QueryRow(ctx, `SELECT coalesce(max(pid) FILTER (WHERE application_name = 'pg_recvlogical'), 0),
			coalesce(max(pid) FILTER (WHERE application_name = 'pg_receivewal'), 0)
			FROM pg_stat_replication WHERE state = 'streaming'`).Scan(&f.logicalPID, &f.physicalPID)
		if err != nil {
			f.stop(ctx, r)
			return nil, fmt.Errorf("finding the floor clients' walsenders: %w", err)
		}
		if time.Now().After(deadline) {
			f.stop(ctx, r)
			return nil, fmt.Errorf("pg_recvlogical and pg_receivewal not streaming after a minute (see %s)", r.opts.Out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return f, nil
}

// stop ends both clients and drops pg_recvlogical's slot, so that it keeps
// no WAL for the rest of the run.
func (f *floors) stop(ctx context.Context, r *runner) {
	for _, p := range f.procs {
		p.kill()
	}
	r.dropSlot(ctx, floorSlot)
	_ = os.RemoveAll(f.dir)
}

// sourceCPU is the CPU time so far of every backend riskwatch holds on the
// source other than walsenders (heartbeats, the merchant-name copy), by
// pid. They are told apart by application_name.
func (r *runner) sourceCPU(ctx context.Context) (map[int]time.Duration, error) {
	rows, err := r.pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1) AND backend_type <> 'walsender'`,
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

// cpuSince is the CPU the backends of now used since before: a backend
// that is new counts whole; one that ended is lost (logged).
func (r *runner) cpuSince(before, now map[int]time.Duration) (used time.Duration) {
	for pid, c := range now {
		used += c - before[pid]
	}
	ended := 0
	for pid := range before {
		if _, ok := now[pid]; !ok {
			ended++
		}
	}
	if ended > 0 {
		r.log.Warn("riskwatch source connections ended during the measurement; their CPU is not counted", "ended", ended)
	}
	return used
}
