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
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/window"
)

// DB is a connection pool to the sink schema.
type DB struct {
	pool       *pgxpool.Pool
	schemaName string
	schema     string // quoted identifier
	cal        window.Calendar
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

// Tx runs fn in one transaction, committed when fn returns nil.
func (d *DB) Tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, d.pool, fn)
}
