package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key that serialises migrations when
// several processes start at once ("riskwatc" in ASCII).
const migrationLock = 0x7269736b77617463

// Migrate creates the sink schema and applies every embedded migration not yet
// applied, each in its own transaction, in file-name order.
func (d *DB) Migrate(ctx context.Context) (applied []string, err error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	slices.Sort(names)
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquiring sink connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLock)); err != nil {
		return nil, fmt.Errorf("locking migrations: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrationLock))

	setup := fmt.Sprintf(`CREATE SCHEMA IF NOT EXISTS %[1]s;
		CREATE TABLE IF NOT EXISTS %[1]s.schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`, d.schema)
	if _, err := conn.Exec(ctx, setup); err != nil {
		return nil, fmt.Errorf("creating sink schema: %w", err)
	}
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		var done bool
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s.schema_migrations WHERE name = $1)", d.schema), base).Scan(&done); err != nil {
			return nil, fmt.Errorf("reading applied migrations: %w", err)
		}
		if done {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", base, err)
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// The files name tables without a schema; the configured schema
			// is put first on the search path for the transaction.
			if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL search_path = %s, public", d.schema)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s.schema_migrations (name) VALUES ($1)", d.schema), base)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("applying migration %s: %w", base, err)
		}
		applied = append(applied, base)
	}
	return applied, nil
}
