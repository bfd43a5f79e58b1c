// Package directory copies merchant names from the source database to the
// sink, so that the dashboard can search and label merchants.
//
// Names are display data: no rule reads them, and a name that is a minute
// old is fine. The merchants table is small and cold (100,000 rows that
// change rarely), so a full read every refresh costs the source a few tens
// of milliseconds, and only new or renamed rows are written to the sink.
// Streaming the table through the replication slot would make the engine's
// exactly-once path carry data it does not need for that.
package directory

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/store"
)

// Options configure a Sync.
type Options struct {
	SourceDSN string
	// Schema, Table, ID and Name name the source table and its columns.
	Schema, Table, ID, Name string
	Refresh                 time.Duration
	Store                   *store.Store
	Logger                  *slog.Logger
}

// Sync keeps the sink's merchant names up to date.
type Sync struct {
	opts  Options
	known map[int64]string // as last written to the sink
}

// New returns a Sync; Run does the work.
func New(opts Options) *Sync { return &Sync{opts: opts} }

// Run copies the names now and then every Refresh until ctx is done. A
// failure (the table missing, the source down) is logged and retried at
// the next refresh: names are never worth stopping the engine for.
func (s *Sync) Run(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, s.opts.SourceDSN)
	if err != nil {
		return fmt.Errorf("merchant names: connecting to source: %w", err)
	}
	defer pool.Close()
	t := time.NewTicker(s.opts.Refresh)
	defer t.Stop()
	failing := false
	for {
		n, err := s.Once(ctx, pool)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			s.opts.Logger.Warn("merchant names not copied; the dashboard shows ids until it works", "err", err)
			failing = true
		case err == nil:
			if failing || n > 0 {
				s.opts.Logger.Info("merchant names copied", "changed", n, "known", len(s.known))
			}
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once reads the whole source table and writes the new and renamed
// merchants to the sink, returning how many it wrote.
func (s *Sync) Once(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	o := s.opts
	q := fmt.Sprintf("SELECT %s::bigint, coalesce(%s::text, '') FROM %s",
		pgx.Identifier{o.ID}.Sanitize(), pgx.Identifier{o.Name}.Sanitize(), pgx.Identifier{o.Schema, o.Table}.Sanitize())
	rows, err := pool.Query(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("reading %s.%s: %w", o.Schema, o.Table, err)
	}
	var changed []store.Merchant
	seen := make(map[int64]string, len(s.known))
	for rows.Next() {
		var m store.Merchant
		if err := rows.Scan(&m.ID, &m.Name); err != nil {
			rows.Close()
			return 0, fmt.Errorf("reading %s.%s: %w", o.Schema, o.Table, err)
		}
		seen[m.ID] = m.Name
		if old, ok := s.known[m.ID]; !ok || old != m.Name {
			changed = append(changed, m)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("reading %s.%s: %w", o.Schema, o.Table, err)
	}
	for start := 0; start < len(changed); start += 10000 {
		if _, err := o.Store.UpsertMerchants(ctx, changed[start:min(start+10000, len(changed))]); err != nil {
			return 0, err
		}
	}
	// Merchants deleted at the source keep their last name in the sink:
	// their history and alerts still need a label.
	s.known = seen
	return len(changed), nil
}
