package sim

import (
	"context"
	"strings"
	"time"
)

// DB is a source database the simulator writes: PostgreSQL (Postgres) or
// MySQL/MariaDB (Open with a mysql:// DSN). The generator, the history's
// chunks and workers and the live writer's pacing are the same for both; a
// DB only turns rows into its server's statements, so the same seed and
// flags put the same payments and cancels into either.
type DB interface {
	// ReadMeta returns what `sim history` recorded in sim_meta, nil before
	// it ran.
	ReadMeta(ctx context.Context) (*Meta, error)
	// WriteMeta records m as the database's simulation.
	WriteMeta(ctx context.Context, m *Meta) error
	// MarkWritten moves sim_meta's written_until forward to t (never back).
	MarkWritten(ctx context.Context, t time.Time) error
	// Empty deletes every row of the simulator's tables.
	Empty(ctx context.Context) error
	// Close releases the DB's connections.
	Close()

	// maxConns is how many connections may be open at once.
	maxConns() int
	// loadMerchants inserts the merchants, keeping rows that exist, in one
	// transaction.
	loadMerchants(ctx context.Context, ms []merchantRow) error
	// acquire returns a connection for one goroutine.
	acquire(ctx context.Context) (dbConn, error)
}

// dbConn is one connection of a DB.
type dbConn interface {
	// copyPayments writes the batches next returns until it returns an
	// empty one; an id that exists is an error.
	copyPayments(ctx context.Context, next func() []Payment) (int64, error)
	// copyCancels writes cs; an id that exists is an error.
	copyCancels(ctx context.Context, cs []Cancel) (int64, error)
	// insert commits ps and cs (one row alone, more in one transaction),
	// skipping ids that exist, and says how many rows it wrote.
	insert(ctx context.Context, ps []Payment, cs []Cancel) (payments, cancels int64, err error)
	release()
}

// merchantRow is a row of merchants.
type merchantRow struct {
	ID        int64
	Name      string
	CreatedAt time.Time
}

// merchantsOf is the population's rows. created_at is a deterministic
// date 30 days to 5 years before the history starts.
func merchantsOf(pop *Population, from time.Time) []merchantRow {
	ms := pop.Merchants()
	out := make([]merchantRow, len(ms))
	for i := range ms {
		m := &ms[i]
		age := time.Duration(30*24+int64(splitmix(uint64(m.ID))%(1800*24))) * time.Hour
		out[i] = merchantRow{ID: m.ID, Name: m.Name, CreatedAt: from.Add(-age).UTC()}
	}
	return out
}

// OpenOptions configure Open.
type OpenOptions struct {
	// Conns is how many connections may be open at once: LoadHistory uses
	// two, Live one per worker.
	Conns int
	// TimeZone is the zone of the DATETIME wall clocks written to a MySQL
	// source (riskwatch reads them in source.time_zone); nil: the zone
	// sim_meta records, else UTC. PostgreSQL's timestamptz is absolute and
	// ignores it. A zone with daylight saving writes the hour it repeats
	// as ambiguous wall clocks, which riskwatch reads as the earlier
	// instant.
	TimeZone *time.Location
}

// Open connects to the source database dsn names (postgres:// or
// mysql://), creates the default schema (Schema or MySQLSchema) where it
// is missing, and returns it.
func Open(ctx context.Context, dsn string, o OpenOptions) (DB, error) {
	if IsMySQL(dsn) {
		return openMySQL(ctx, dsn, o)
	}
	return openPostgres(ctx, dsn, o)
}

// IsMySQL reports whether dsn names a MySQL or MariaDB server.
func IsMySQL(dsn string) bool { return strings.HasPrefix(dsn, "mysql://") }

// Meta is what `sim history` generated, kept in the source's sim_meta
// table so that `sim live` continues it.
type Meta struct {
	Seed         uint64
	Merchants    int
	PaymentsDay  int
	Anchor       time.Time
	HistoryFrom  time.Time
	Incidents    bool
	LargeAmount  int64
	WrittenUntil time.Time
	// Profile is the traffic profile. ScoredDay, when not zero, is the
	// midnight starting the scored day, whose incident mix replaces the
	// incidents placed at the anchor.
	Profile   string
	ScoredDay time.Time
	// TimeZone, read from a MySQL source, is the zone its rows' wall
	// clocks are in ("" for PostgreSQL). WriteMeta records the DB's own.
	TimeZone string
}

// Generator rebuilds the generator of a simulation: the same seed, scale,
// profile and anchor (or scored day) give the same merchants, traffic and
// incidents.
func (m *Meta) Generator(loc *time.Location) (*Generator, error) {
	pop := NewPopulation(m.Seed, m.Merchants)
	o := Options{Seed: m.Seed, Population: pop, PaymentsPerDay: m.PaymentsDay, Location: loc, HistoryFrom: m.HistoryFrom,
		Rules: RuleParams{LargeDailyAmount: m.LargeAmount}, Profile: m.Profile}
	if m.Incidents {
		base, err := NewGenerator(o)
		if err != nil {
			return nil, err
		}
		if m.ScoredDay.IsZero() {
			o.Scenarios = base.DefaultScenarios(m.Anchor)
		} else if o.Scenarios, err = base.ScoredDayScenarios(m.ScoredDay); err != nil {
			return nil, err
		}
	}
	return NewGenerator(o)
}
