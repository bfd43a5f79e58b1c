package sim

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// historyWorkers: two COPY streams (or two MySQL sessions) keep both
	// cores of the reference machine busy (the server does most of the
	// work; generating is ~30× faster than the server can take rows). On
	// MariaDB three or four sessions were no faster than two.
	historyWorkers = 2
	// historyChunk: the unit of work handed to a worker. Six hours balance
	// the two workers to within a quarter of a day, and a chunk at full
	// scale (≤ 1M rows) is still a long, efficient COPY.
	historyChunk = 6 * time.Hour
	// copyBatch: payments handed from the generating goroutine to the
	// writer at a time (on MySQL, one INSERT).
	copyBatch = 8192
)

// LoadHistory is LoadHistoryInto a PostgreSQL source.
func LoadHistory(ctx context.Context, pool *pgxpool.Pool, g *Generator, from, now time.Time, progress func(done, total int64)) (payments, cancels int64, err error) {
	return LoadHistoryInto(ctx, Postgres(pool), g, from, now, progress)
}

// LoadHistoryInto fills payments (approved_at in [from, now)) and their
// payment_cancels (only canceled_at < now: the rest lies in the future and
// is the live writer's, see PendingCancels), in parallel over two
// connections, and the merchants table with the population (existing
// merchant rows are kept). It returns the number of rows written.
//
// Indexes stay in place: at full scale (8 days, 24M payments) a
// PostgreSQL source loads at about 745,000 payments/s on 2 cores (32 s)
// with binary COPY and the default schema's indexes maintained; dropping
// and rebuilding the secondary indexes gained only a few percent — not
// worth a source left without them should the load be killed halfway.
// Each 6-hour chunk is one COPY (on MySQL, one INSERT of 8,192 rows after
// another): after a failure, the chunks already written stay.
//
// A MariaDB 10.11 source on the same 2 cores takes about 140,000 rows/s
// for a million payments, falling as the tables outgrow the buffer pool:
// 8 days at 1M payments a day (7.75M) took 86 s with a 1 GB pool and 200 s
// with the tests' 64 MB, whose secondary indexes then cost a disk read per
// row (loaded without them, the same rows took 24 s plus 51 s to build
// the indexes). Give the server a pool that holds the indexes.
//
// progress, when not nil, is called after every batch of rows with the
// payments written so far and the expected total (the curve's expectation;
// the final call has done = total = the exact count). Calls are serialised.
//
// Load history before the engine's first start: the engine takes it from a
// snapshot; rows loaded while it streams are replicated row by row.
func LoadHistoryInto(ctx context.Context, db DB, g *Generator, from, now time.Time, progress func(done, total int64)) (payments, cancels int64, err error) {
	if !now.After(from) {
		return 0, 0, fmt.Errorf("history range [%s, %s) is empty", from.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if err := db.loadMerchants(ctx, merchantsOf(g.pop, from)); err != nil {
		return 0, 0, fmt.Errorf("loading merchants: %w", err)
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
		np, nc, err := loadChunk(ctx, db, g, sp, now, func(n int64) { report(done.Add(n), max(total, done.Load())) })
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

// loadChunk writes one span's payments, streaming from a generating
// goroutine, then the cancels of those payments that are due before now.
func loadChunk(ctx context.Context, db DB, g *Generator, sp span, now time.Time, added func(int64)) (payments, cancels int64, err error) {
	conn, err := db.acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("acquiring a connection: %w", err)
	}
	defer conn.release()

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
	// The writer takes the generator's batches; a batch counts as done
	// (progress) when the writer asks for the next one.
	var pending int64
	next := func() []Payment {
		if pending > 0 {
			added(pending)
		}
		b := <-batches // nil once closed: the span is done
		pending = int64(len(b))
		return b
	}
	payments, err = conn.copyPayments(ctx, next)
	cancel() // unblocks the generator if the copy stopped early
	wg.Wait()
	if err != nil {
		return payments, 0, fmt.Errorf("copying payments: %w", err)
	}
	if genErr != nil {
		return payments, 0, fmt.Errorf("generating payments: %w", genErr)
	}
	cancels, err = conn.copyCancels(context.WithoutCancel(ctx), due)
	if err != nil {
		return payments, cancels, fmt.Errorf("copying cancels: %w", err)
	}
	return payments, cancels, nil
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
