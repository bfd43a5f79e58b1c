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
