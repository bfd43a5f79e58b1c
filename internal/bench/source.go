package bench

import (
	"context"
	"fmt"
	"time"
)

// The transaction databases a run can measure riskwatch against
// (Options.Source).
const (
	SourcePostgres = "postgres"
	SourceMariaDB  = "mariadb"
)

// sourceDB is the transaction database of a run, a private server on this
// machine: everything a scenario does that depends on which database it
// is. The scenarios themselves are written once, against this.
type sourceDB interface {
	// start starts the server with an empty database payments and what
	// the engine needs on it.
	start(ctx context.Context, r *runner) error
	close() error
	// simDSN is what the simulator and the bench write with; engineDSN
	// is what riskwatch reads with.
	simDSN() string
	engineDSN() string
	// machine records the server's version.
	machine(ctx context.Context, m *Machine)
	// slots says where this source's own figures go in Results.
	slots(res *Results) slots
	// payments counts the payments rows; inserted is the number of rows
	// ever inserted into payments and payment_cancels (exact once the
	// inserting transactions ended).
	payments(ctx context.Context) (int64, error)
	inserted(ctx context.Context) (int64, error)
	// reader finds the process or thread that serves the engine's change
	// stream now (PostgreSQL's walsender, MariaDB's binlog dump thread).
	reader(ctx context.Context) (cpuClock, error)
	// others is the CPU time so far of riskwatch's other connections to
	// the source (heartbeats, the merchant-name copy), by connection.
	others(ctx context.Context) (map[int]time.Duration, error)
	// insertBustOut commits ten cancellations, and no sale, for each of
	// the merchants merchant, merchant+1 and merchant+2, with the row ids
	// row … row+29, timed now.
	insertBustOut(ctx context.Context, merchant, row int64) error
	// bootstrapFloors times what the server itself takes for the first
	// snapshot's work on the same data, and sets the ratios to it.
	bootstrapFloors(ctx context.Context, res *Results) error
	// beginBacklog marks where a backlog written from now on starts.
	beginBacklog(ctx context.Context) (backlog, error)
	// startStreamFloors starts the server's own streaming clients beside
	// the engine, reading the same changes and doing nothing with them.
	startStreamFloors(ctx context.Context, r *runner) (streamFloors, error)
	// logBytes is the server's change log written so far, in bytes.
	logBytes(ctx context.Context) (int64, error)
	// minuteLoad measures source.delivery: minute, where the source has it.
	minuteLoad(ctx context.Context, r *runner) error
	// sqlJob is the SQL-polling job on this source; nil when it has none.
	sqlJob(ctx context.Context) (sqlJob, error)
}

// cpuClock reads a process's or thread's CPU time so far.
type cpuClock func() (time.Duration, error)

// backlog is the change log written while the engine was stopped.
type backlog interface {
	// written marks the backlog's end, once it is committed.
	written(ctx context.Context) error
	// drain times the server's own client reading the backlog from the
	// server, its output thrown away.
	drain(ctx context.Context) (time.Duration, error)
	close(ctx context.Context)
}

// streamFloors are the server's own streaming clients running beside the
// engine.
type streamFloors interface {
	// cpu is the CPU time so far of what serves each client on the
	// server, in the order of slots.streamFloors.
	cpu() ([]time.Duration, error)
	stop(ctx context.Context)
}

// sqlJob is the SQL-polling job riskwatch is compared with: the two rules
// as SQL over the source tables.
type sqlJob interface {
	// prepare creates the job's indexes.
	prepare(ctx context.Context) error
	run(ctx context.Context, p BaselineParams, m time.Time) (BaselineRun, error)
}

// slots are where a source's own figures go in Results: PostgreSQL's keep
// the names results.json has always had for them (walsender,
// pg_recvlogical, WAL), MariaDB's are in Results.MariaDB.
type slots struct {
	// peakReaderCores: the reader's CPU at the peak, in cores.
	peakReaderCores *float64
	// The catch-up's floor: the server's own client reading the backlog.
	catchUpFloorSeconds, catchUpFloorRate *float64
	// averageReaderCPU: the reader's CPU per minute at the average rate.
	averageReaderCPU *float64
	// streamFloors: each floor client's CPU per minute at the average
	// rate, and the SQL job's CPU over it.
	streamFloors []floorSlot
	// logBytesPerMin: the change log written per minute at the average
	// rate.
	logBytesPerMin *float64
}

type floorSlot struct{ cpu, ratio *float64 }

func openSource(name string) (sourceDB, error) {
	switch name {
	case "", SourcePostgres:
		return &pgSource{}, nil
	case SourceMariaDB:
		return &mariaSource{}, nil
	}
	return nil, fmt.Errorf("source %q: want %s or %s", name, SourcePostgres, SourceMariaDB)
}

// cpuSince is the CPU the connections of now used since before: one that
// is new counts whole; one that ended is lost (logged).
func (r *runner) cpuSince(before, now map[int]time.Duration) (used time.Duration) {
	for id, c := range now {
		used += c - before[id]
	}
	ended := 0
	for id := range before {
		if _, ok := now[id]; !ok {
			ended++
		}
	}
	if ended > 0 {
		r.log.Warn("riskwatch source connections ended during the measurement; their CPU is not counted", "ended", ended)
	}
	return used
}
