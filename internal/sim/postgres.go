package sim

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgDB writes a PostgreSQL source: binary COPY for the history, unnest
// arrays for the live writer's batches.
type pgDB struct{ pool *pgxpool.Pool }

// Postgres is the DB of a pool on a PostgreSQL source whose schema exists;
// Close closes the pool.
func Postgres(pool *pgxpool.Pool) DB { return pgDB{pool} }

func openPostgres(ctx context.Context, dsn string, o OpenOptions) (DB, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing dsn: %w", err)
	}
	pc.MaxConns = int32(max(o.Conns, 1))
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connecting to the source: %w", err)
	}
	if _, err := pool.Exec(ctx, Schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("creating the source schema: %w", err)
	}
	return pgDB{pool}, nil
}

func (d pgDB) Close()        { d.pool.Close() }
func (d pgDB) maxConns() int { return int(d.pool.Config().MaxConns) }

func (d pgDB) ReadMeta(ctx context.Context) (*Meta, error) {
	var m Meta
	var seed int64
	var scored *time.Time
	err := d.pool.QueryRow(ctx, `SELECT seed, merchants, payments_day, anchor, history_from, incidents, large_amount, written_until, profile, scored_day
		FROM sim_meta WHERE id = 1`).
		Scan(&seed, &m.Merchants, &m.PaymentsDay, &m.Anchor, &m.HistoryFrom, &m.Incidents, &m.LargeAmount, &m.WrittenUntil, &m.Profile, &scored)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading sim_meta: %w", err)
	}
	m.Seed = uint64(seed)
	if scored != nil {
		m.ScoredDay = *scored
	}
	return &m, nil
}

func (d pgDB) WriteMeta(ctx context.Context, m *Meta) error {
	var scoredDay *time.Time
	if !m.ScoredDay.IsZero() {
		scoredDay = &m.ScoredDay
	}
	_, err := d.pool.Exec(ctx, `INSERT INTO sim_meta (id, seed, merchants, payments_day, anchor, history_from, incidents, large_amount, written_until, profile, scored_day)
		VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, int64(m.Seed), m.Merchants, m.PaymentsDay, m.Anchor, m.HistoryFrom, m.Incidents,
		m.LargeAmount, m.WrittenUntil, m.Profile, scoredDay)
	if err != nil {
		return fmt.Errorf("recording sim_meta: %w", err)
	}
	return nil
}

func (d pgDB) MarkWritten(ctx context.Context, t time.Time) error {
	if _, err := d.pool.Exec(ctx, `UPDATE sim_meta SET written_until = greatest(written_until, $1) WHERE id = 1`, t); err != nil {
		return fmt.Errorf("recording progress in sim_meta: %w", err)
	}
	return nil
}

func (d pgDB) Empty(ctx context.Context) error {
	if _, err := d.pool.Exec(ctx, "TRUNCATE payments, payment_cancels, merchants; DELETE FROM sim_meta"); err != nil {
		return fmt.Errorf("emptying the source tables: %w", err)
	}
	return nil
}

// loadMerchants copies the rows into a staging table and inserts those
// whose id is new.
func (d pgDB) loadMerchants(ctx context.Context, ms []merchantRow) error {
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE sim_merchants (id bigint, name text, created_at timestamptz) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("creating a staging table: %w", err)
		}
		src := pgx.CopyFromSlice(len(ms), func(i int) ([]any, error) {
			return []any{ms[i].ID, ms[i].Name, ms[i].CreatedAt}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sim_merchants"}, []string{"id", "name", "created_at"}, src); err != nil {
			return fmt.Errorf("copying merchants: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO merchants (id, name, created_at) SELECT id, name, created_at FROM sim_merchants ON CONFLICT (id) DO NOTHING`); err != nil {
			return fmt.Errorf("inserting merchants: %w", err)
		}
		return nil
	})
}

func (d pgDB) acquire(ctx context.Context) (dbConn, error) {
	c, err := d.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return pgConn{c}, nil
}

type pgConn struct{ *pgxpool.Conn }

func (c pgConn) release() { c.Release() }

// copyPayments is one COPY of every batch.
func (c pgConn) copyPayments(ctx context.Context, next func() []Payment) (int64, error) {
	var cur []Payment
	var row [5]any
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if len(cur) == 0 {
			if cur = next(); len(cur) == 0 {
				return nil, nil // the span is done
			}
		}
		p := &cur[0]
		cur = cur[1:]
		row = [5]any{p.ID, p.MerchantID, p.Amount, "approved", p.ApprovedAt}
		return row[:], nil
	})
	return c.Conn.CopyFrom(ctx, pgx.Identifier{"payments"}, []string{"id", "merchant_id", "amount", "status", "approved_at"}, src)
}

func (c pgConn) copyCancels(ctx context.Context, cs []Cancel) (int64, error) {
	rows := pgx.CopyFromSlice(len(cs), func(i int) ([]any, error) {
		c := &cs[i]
		return []any{c.ID, c.PaymentID, c.MerchantID, c.Amount, c.CanceledAt}, nil
	})
	return c.Conn.CopyFrom(ctx, pgx.Identifier{"payment_cancels"}, []string{"id", "payment_id", "merchant_id", "cancel_amount", "canceled_at"}, rows)
}

const (
	insertPayment  = `INSERT INTO payments (id, merchant_id, amount, status, approved_at) VALUES ($1, $2, $3, 'approved', $4) ON CONFLICT DO NOTHING`
	insertCancel   = `INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`
	insertPayments = `INSERT INTO payments (id, merchant_id, amount, status, approved_at)
		SELECT id, m, a, 'approved', t FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[]) AS u(id, m, a, t)
		ON CONFLICT DO NOTHING`
	insertCancels = `INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
		SELECT id, p, m, a, t FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[]) AS u(id, p, m, a, t)
		ON CONFLICT DO NOTHING`
)

// insert sends a single row as one statement (autocommit) and a batch as
// one unnest statement per table in a transaction.
func (c pgConn) insert(ctx context.Context, ps []Payment, cs []Cancel) (np, nc int64, err error) {
	conn := c.Conn.Conn()
	if len(ps)+len(cs) == 1 {
		if len(ps) == 1 {
			p := ps[0]
			tag, err := conn.Exec(ctx, insertPayment, p.ID, p.MerchantID, p.Amount, p.ApprovedAt)
			if err != nil {
				return 0, 0, fmt.Errorf("live: inserting payment %d: %w", p.ID, err)
			}
			return tag.RowsAffected(), 0, nil
		}
		c := cs[0]
		tag, err := conn.Exec(ctx, insertCancel, c.ID, c.PaymentID, c.MerchantID, c.Amount, c.CanceledAt)
		if err != nil {
			return 0, 0, fmt.Errorf("live: inserting cancel %d: %w", c.ID, err)
		}
		return 0, tag.RowsAffected(), nil
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if len(ps) > 0 {
			ids, ms, as, ts := make([]int64, len(ps)), make([]int64, len(ps)), make([]int64, len(ps)), make([]time.Time, len(ps))
			for i, p := range ps {
				ids[i], ms[i], as[i], ts[i] = p.ID, p.MerchantID, p.Amount, p.ApprovedAt
			}
			tag, err := tx.Exec(ctx, insertPayments, ids, ms, as, ts)
			if err != nil {
				return fmt.Errorf("inserting %d payments: %w", len(ps), err)
			}
			np = tag.RowsAffected()
		}
		if len(cs) > 0 {
			ids, pids, ms, as, ts := make([]int64, len(cs)), make([]int64, len(cs)), make([]int64, len(cs)), make([]int64, len(cs)), make([]time.Time, len(cs))
			for i, c := range cs {
				ids[i], pids[i], ms[i], as[i], ts[i] = c.ID, c.PaymentID, c.MerchantID, c.Amount, c.CanceledAt
			}
			tag, err := tx.Exec(ctx, insertCancels, ids, pids, ms, as, ts)
			if err != nil {
				return fmt.Errorf("inserting %d cancels: %w", len(cs), err)
			}
			nc = tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("live: committing a batch: %w", err)
	}
	return np, nc, nil
}
