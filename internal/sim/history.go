package sim

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// historyWorkers: two COPY streams keep both cores of the reference
	// machine busy (the server does most of the work; generating is ~30×
	// faster than the server can take rows).
	historyWorkers = 2
	// historyChunk: the unit of work handed to a worker. Six hours balance
	// the two workers to within a quarter of a day, and a chunk at full
	// scale (≤ 1M rows) is still a long, efficient COPY.
	historyChunk = 6 * time.Hour
	// copyBatch: payments handed from the generating goroutine to the COPY
	// stream at a time.
	copyBatch = 8192
)

// LoadHistory fills payments (approved_at in [from, now)) and their
// payment_cancels (only canceled_at < now: the rest lies in the future and
// is the live writer's, see PendingCancels) with binary COPY, in parallel
// over two connections, and the merchants table with the population
// (existing merchant rows are kept). It returns the number of rows written.
//
// Indexes stay in place: at full scale (8 days, 24M payments) the load
// runs at about 745,000 payments/s on 2 cores (32 s) with the default
// schema's indexes maintained; dropping and rebuilding the secondary
// indexes gained only a few percent — not worth a source left without
// them should the load be killed halfway. Each 6-hour chunk is one COPY:
// after a failure, the chunks already copied stay.
//
// progress, when not nil, is called after every batch of rows with the
// payments copied so far and the expected total (the curve's expectation;
// the final call has done = total = the exact count). Calls are serialised.
//
// Load history before the engine's first start: the engine takes it from a
// snapshot; rows loaded while it streams are replicated row by row.
func LoadHistory(ctx context.Context, pool *pgxpool.Pool, g *Generator, from, now time.Time, progress func(done, total int64)) (payments, cancels int64, err error) {
	if !now.After(from) {
		return 0, 0, fmt.Errorf("history range [%s, %s) is empty", from.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if err := loadMerchants(ctx, pool, g.pop, from); err != nil {
		return 0, 0, err
	}

	total := int64(g.ExpectedPayments(from, now))
	var done atomic.Int64
	var progMu sync.Mutex
	report := func(d, t int64) {
		if progress != nil {
			progMu.Lock()
			progress(d, t)
			progMu.Unlock()
		}
	}
	var nPayments, nCancels atomic.Int64
	err = parallel(ctx, hourSpans(from, now, historyChunk), historyWorkers, func(ctx context.Context, _ int, sp span) error {
		np, nc, err := copyChunk(ctx, pool, g, sp, now, func(n int64) { report(done.Add(n), max(total, done.Load())) })
		nPayments.Add(np)
		nCancels.Add(nc)
		if err != nil {
			return fmt.Errorf("loading %s – %s: %w", sp.from.Format(time.RFC3339), sp.to.Format(time.RFC3339), err)
		}
		return nil
	})
	if err != nil {
		return nPayments.Load(), nCancels.Load(), err
	}
	report(nPayments.Load(), nPayments.Load())
	return nPayments.Load(), nCancels.Load(), nil
}

// copyChunk copies one span's payments, streaming from a generating
// goroutine, then the cancels of those payments that are due before now.
func copyChunk(ctx context.Context, pool *pgxpool.Pool, g *Generator, sp span, now time.Time, added func(int64)) (payments, cancels int64, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("acquiring a connection: %w", err)
	}
	defer conn.Release()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []Payment, 4)
	var due []Cancel // about 1% of the payments: small enough to hold
	var genErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(batches)
		buf := make([]Payment, 0, copyBatch)
		genErr = g.Generate(sp.from, sp.to, func(p Payment) error {
			buf = append(buf, p)
			if len(buf) == copyBatch {
				select {
				case batches <- buf:
				case <-ctx.Done():
					return ctx.Err()
				}
				buf = make([]Payment, 0, copyBatch)
			}
			return nil
		}, func(c Cancel) error {
			if c.CanceledAt.Before(now) {
				due = append(due, c)
			}
			return nil
		})
		if genErr == nil && len(buf) > 0 {
			select {
			case batches <- buf:
			case <-ctx.Done():
				genErr = ctx.Err()
			}
		}
	})
	// COPY reads the generator's batches; progress is reported per batch.
	var cur []Payment
	var row [5]any
	var pending int64 // rows handed out since the last progress report
	flush := func() {
		if pending > 0 {
			added(pending)
			pending = 0
		}
	}
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if len(cur) == 0 {
			flush()
			if cur = <-batches; len(cur) == 0 {
				return nil, nil // closed: the span is done
			}
		}
		p := &cur[0]
		cur = cur[1:]
		pending++
		row = [5]any{p.ID, p.MerchantID, p.Amount, "approved", p.ApprovedAt}
		return row[:], nil
	})
	payments, err = conn.CopyFrom(ctx, pgx.Identifier{"payments"}, []string{"id", "merchant_id", "amount", "status", "approved_at"}, src)
	cancel() // unblocks the generator if the copy stopped early
	wg.Wait()
	if err != nil {
		return payments, 0, fmt.Errorf("copying payments: %w", err)
	}
	if genErr != nil {
		return payments, 0, fmt.Errorf("generating payments: %w", genErr)
	}
	flush()
	rows := pgx.CopyFromSlice(len(due), func(i int) ([]any, error) {
		c := &due[i]
		return []any{c.ID, c.PaymentID, c.MerchantID, c.Amount, c.CanceledAt}, nil
	})
	cancels, err = conn.CopyFrom(context.WithoutCancel(ctx), pgx.Identifier{"payment_cancels"},
		[]string{"id", "payment_id", "merchant_id", "cancel_amount", "canceled_at"}, rows)
	if err != nil {
		return payments, cancels, fmt.Errorf("copying cancels: %w", err)
	}
	return payments, cancels, nil
}

// loadMerchants inserts the population, keeping rows that exist. created_at
// is a deterministic date 30 days to 5 years before the history starts.
func loadMerchants(ctx context.Context, pool *pgxpool.Pool, pop *Population, from time.Time) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE sim_merchants (id bigint, name text, created_at timestamptz) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("creating a staging table: %w", err)
		}
		ms := pop.Merchants()
		i := 0
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(ms) {
				return nil, nil
			}
			m := &ms[i]
			i++
			age := time.Duration(30*24+int64(splitmix(uint64(m.ID))%(1800*24))) * time.Hour
			return []any{m.ID, m.Name, from.Add(-age).UTC()}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sim_merchants"}, []string{"id", "name", "created_at"}, src); err != nil {
			return fmt.Errorf("copying merchants: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO merchants (id, name, created_at) SELECT id, name, created_at FROM sim_merchants ON CONFLICT (id) DO NOTHING`); err != nil {
			return fmt.Errorf("inserting merchants: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading merchants: %w", err)
	}
	return nil
}

// PendingCancels returns the cancels of the payments approved in
// [from, now) that fall due at or after now — what LoadHistory left for the
// live writer — sorted by canceled_at. Only the last MaxCancelDelay before
// now can have any, so only that is generated.
func PendingCancels(ctx context.Context, g *Generator, from, now time.Time) ([]Cancel, error) {
	if lo := now.Add(-MaxCancelDelay); from.Before(lo) {
		from = lo
	}
	if !now.After(from) {
		return nil, nil
	}
	chunks := hourSpans(from, now, historyChunk)
	parts := make([][]Cancel, historyWorkers)
	err := parallel(ctx, chunks, historyWorkers, func(ctx context.Context, w int, sp span) error {
		return g.Generate(sp.from, sp.to, nil, func(c Cancel) error {
			if !c.CanceledAt.Before(now) {
				parts[w] = append(parts[w], c)
			}
			return ctx.Err()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("generating pending cancels: %w", err)
	}
	out := slices.Concat(parts...)
	slices.SortFunc(out, func(a, b Cancel) int {
		return cmp.Or(a.CanceledAt.Compare(b.CanceledAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}
