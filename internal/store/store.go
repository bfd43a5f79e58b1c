// Package store is the sink: a PostgreSQL schema of riskwatch's own,
// created and upgraded by embedded migrations, and the one connection pool
// and transaction helper its parts share. Each part lives in a package of
// its own: aggregates (minutes, rollups, dead letters, checkpoints, the
// first snapshot's load, export), alertstore (alerts, acknowledgements,
// silences, the outbox), dashboard (read models); the Kafka workers'
// partitions live with the Kafka code and the leader lock in package leader.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/window"
)

// DB is a connection pool to the sink schema.
type DB struct {
	pool       *pgxpool.Pool
	schemaName string
	schema     string // quoted identifier
	cal        window.Calendar
	// fence, when set, admits each write transaction (Fenced).
	fence Fence
}

// ErrFenced means another writer took over since this one was given the
// right to write: whatever it was about to write belongs to the new one.
var ErrFenced = errors.New("fenced: another writer took over")

// Fence admits a writer's transactions only while the writer still holds
// the right to write (a lease's epoch).
type Fence interface {
	// Hold runs first in each of the writer's transactions. It returns an
	// error wrapping ErrFenced when the writer has been superseded;
	// otherwise nobody can supersede it until the transaction ends, so
	// what the transaction writes lands before any successor's first
	// read.
	Hold(ctx context.Context, tx pgx.Tx) error
	// Queue is Hold for a transaction sent as one batch (BatchTx): it
	// queues Hold's statement right after the batch's BEGIN, and that
	// statement's result fails the batch, before anything commits, when
	// the writer has been superseded.
	Queue(qb *pgx.Batch) error
}

// Open connects to the sink. schema is the unquoted schema name; loc is the
// business time zone of the hourly and daily rollups.
func Open(ctx context.Context, dsn, schema string, loc *time.Location) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing sink dsn: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "riskwatch-sink"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening sink pool: %w", err)
	}
	return &DB{pool: pool, schemaName: schema, schema: pgx.Identifier{schema}.Sanitize(), cal: window.NewCalendar(loc)}, nil
}

// Close closes the pool.
func (d *DB) Close() { d.pool.Close() }

// Pool is the connection pool.
func (d *DB) Pool() *pgxpool.Pool { return d.pool }

// Table is the quoted, schema-qualified name of one of riskwatch's tables.
func (d *DB) Table(name string) string { return d.schema + "." + name }

// SchemaName is the unquoted schema name.
func (d *DB) SchemaName() string { return d.schemaName }

// Calendar places minutes in the business time zone's hours and days.
func (d *DB) Calendar() window.Calendar { return d.cal }

// Fenced is the same sink whose Tx and Exec pass f first: the view a
// writer that may be superseded (the active one of two run processes)
// writes through. Reads through Pool are not fenced.
func (d *DB) Fenced(f Fence) *DB {
	c := *d
	c.fence = f
	return &c
}

// Tx runs fn in one transaction, committed when fn returns nil; on a
// fenced view the fence holds it first.
func (d *DB) Tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if d.fence == nil {
		return pgx.BeginFunc(ctx, d.pool, fn)
	}
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if err := d.fence.Hold(ctx, tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// BatchTx is Tx for statements that need no answer from one another: the
// BEGIN, the fence's hold and the statements fill queues go to the sink in
// one round trip, and the commit in a second, where Tx takes one for each.
// The stream's flushes are such transactions, ten or more a second; on a
// machine whose cores are busy, each round trip can wait for the sink's
// backend to be scheduled, and those waits are the commit → aggregate
// latency's tail. then, when not nil, runs in the transaction after the
// batch (statements a batch cannot carry, such as COPY).
func (d *DB) BatchTx(ctx context.Context, fill func(qb *pgx.Batch) error, then func(tx pgx.Tx) error) error {
	var qb pgx.Batch
	qb.BeginTx(pgx.TxOptions{})
	if d.fence != nil {
		if err := d.fence.Queue(&qb); err != nil {
			return err
		}
	}
	if err := fill(&qb); err != nil {
		return err
	}
	br := d.pool.SendBatch(ctx, &qb)
	tx := br.Tx()
	// A no-op once committed; otherwise it ends the transaction and
	// gives the connection back to the pool.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := br.Close(); err != nil {
		return err
	}
	if then != nil {
		if err := then(tx); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// Exec runs one writing statement, in a transaction of its own on a fenced
// view.
func (d *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if d.fence == nil {
		return d.pool.Exec(ctx, sql, args...)
	}
	var tag pgconn.CommandTag
	err := d.Tx(ctx, func(tx pgx.Tx) error {
		var err error
		tag, err = tx.Exec(ctx, sql, args...)
		return err
	})
	return tag, err
}
