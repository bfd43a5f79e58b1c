package sim

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
)

// Defaults of LiveOptions.
const (
	DefaultBurstTPS   = 5_000 // SPEC §1: peaks above 5,000 transactions per second
	DefaultBurstEvery = 5 * time.Minute
	DefaultBurstFor   = 10 * time.Second
	defaultWorkers    = 16
	defaultReport     = 5 * time.Second
	// tick bounds how long the scheduler sleeps: at 5,000 TPS it hands out
	// 25 filler payments per tick, smooth enough for any receiver.
	tick = 5 * time.Millisecond
	// queueLen is how far the scheduler may run ahead of the workers; a
	// full queue blocks it, and the growing lag shows in LiveStats.
	queueLen = 4096
	// commitTimeout bounds one transaction, so a stop never hangs on a
	// dead server.
	commitTimeout = 30 * time.Second
)

// LiveOptions configure Live.
type LiveOptions struct {
	// TPS is the steady rate of payments per second. The generator's own
	// traffic (its per-minute volumes, scenarios included) is always
	// written; when TPS is above its current rate, filler payments of
	// randomly drawn non-scenario merchants make up the difference. 0: the
	// generator's own rate.
	TPS float64
	// BurstTPS is the rate during bursts (flash sales): BurstFor every
	// BurstEvery, the first BurstEvery after the start. 0: DefaultBurstTPS;
	// negative: no bursts.
	BurstTPS   float64
	BurstEvery time.Duration
	BurstFor   time.Duration
	// Batch is the number of rows (payments or cancels) per transaction;
	// 0: 1, one payment per transaction as a transaction server commits.
	Batch int
	// Workers is the number of connections committing concurrently; 0:
	// min(16, the DB's connections). The DB must allow at least Workers
	// connections.
	Workers int
	// Now is the clock; nil: time.Now. Rows are written when Now reaches
	// their time.
	Now func() time.Time
	// Report receives the stats every ReportEvery (0: 5 s) and once at the
	// end; nil: none.
	Report      func(LiveStats)
	ReportEvery time.Duration
	// From is where the generator's traffic starts; zero: Now() at the
	// start. A From in the past is caught up as fast as the workers go.
	From time.Time
	// HistoryFrom, when not zero, is LoadHistory's from: the cancels of
	// history payments that fall due from From on (PendingCancels) are
	// committed when their time comes.
	HistoryFrom time.Time
	// Until, when not zero, ends the run: rows due before it are written,
	// then Live returns. Otherwise Live runs until ctx is canceled.
	Until time.Time
}

// LiveStats is what Live has committed so far.
type LiveStats struct {
	Payments int64 // committed payments, filler included
	Filler   int64 // of which filler
	Cancels  int64 // committed cancels
	Elapsed  time.Duration
	// AchievedTPS is Payments / Elapsed; IntervalTPS the rate since the
	// previous report.
	AchievedTPS, IntervalTPS float64
	// Lag is how late the last row was handed to a worker relative to its
	// time: near zero while the database keeps up.
	Lag time.Duration
}

// Live commits payments and cancels as their time comes, at the configured
// rate, until ctx is canceled (then it returns the stats and a nil error)
// or Until. Generated rows carry their generated times, which are the wall
// clock (Now) at which they are due, so the engine sees real-time traffic;
// filler rows carry the time they are made. Generated ids are the
// generator's; filler ids encode the minute and millisecond they were made
// (5,000,000 + ms × 80 + k within the minute), and inserts skip ids that
// exist, so a restarted run does not trip over an earlier one.
//
// Filler payments get cancels at their merchant's rate like any payment;
// those due after Live ends are not written by a later run (filler is not
// reproducible). Generated rows are: a later run with HistoryFrom set
// regenerates them.
func Live(ctx context.Context, pool *pgxpool.Pool, g *Generator, o LiveOptions) (LiveStats, error) {
	return LiveInto(ctx, Postgres(pool), g, o)
}

// LiveInto is Live on any DB.
func LiveInto(ctx context.Context, db DB, g *Generator, o LiveOptions) (LiveStats, error) {
	lw, err := newLiveWriter(db, g, o)
	if err != nil {
		return LiveStats{}, err
	}
	if !o.HistoryFrom.IsZero() {
		pending, err := PendingCancels(ctx, g, o.HistoryFrom, lw.from)
		if err != nil {
			return LiveStats{}, err
		}
		lw.cancels = cancelHeap(pending) // sorted, hence a valid heap
	}
	return lw.run(ctx)
}

type liveItem struct {
	isCancel bool
	p        Payment
	c        Cancel
}

type liveWriter struct {
	db      DB
	g       *Generator
	o       LiveOptions
	now     func() time.Time
	start   time.Time
	from    time.Time
	batch   int
	workers int
	cancels cancelHeap

	payments, filler, canceled atomic.Int64
	lag                        atomic.Int64
	finished                   atomic.Int64 // Unix ns of the end, 0 while running
}

func newLiveWriter(db DB, g *Generator, o LiveOptions) (*liveWriter, error) {
	lw := &liveWriter{db: db, g: g, o: o, now: o.Now, batch: max(o.Batch, 1), workers: o.Workers}
	if lw.now == nil {
		lw.now = time.Now
	}
	if o.TPS < 0 || math.IsNaN(o.TPS) || math.IsInf(o.TPS, 0) {
		return nil, fmt.Errorf("live: TPS %v must be a finite rate >= 0", o.TPS)
	}
	if lw.o.BurstTPS == 0 {
		lw.o.BurstTPS = DefaultBurstTPS
	}
	if lw.o.BurstEvery <= 0 {
		lw.o.BurstEvery = DefaultBurstEvery
	}
	if lw.o.BurstFor <= 0 {
		lw.o.BurstFor = DefaultBurstFor
	}
	if lw.o.ReportEvery <= 0 {
		lw.o.ReportEvery = defaultReport
	}
	maxConns := db.maxConns()
	if lw.workers == 0 {
		lw.workers = min(defaultWorkers, maxConns)
	}
	if lw.workers < 1 || lw.workers > maxConns {
		return nil, fmt.Errorf("live: %d workers, but the pool has %d connections", lw.workers, maxConns)
	}
	lw.start = lw.now()
	lw.from = o.From
	if lw.from.IsZero() {
		lw.from = lw.start
	}
	return lw, nil
}

func (lw *liveWriter) run(ctx context.Context) (LiveStats, error) {
	items := make(chan liveItem, queueLen)
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return lw.schedule(gctx, items) })
	for range lw.workers {
		eg.Go(func() error { return lw.work(gctx, items) })
	}
	reportDone := make(chan struct{})
	var reporter errgroup.Group
	if lw.o.Report != nil {
		reporter.Go(func() error {
			t := time.NewTicker(lw.o.ReportEvery)
			defer t.Stop()
			var prev LiveStats
			for {
				select {
				case <-t.C:
					prev = lw.stats(prev)
					lw.o.Report(prev)
				case <-reportDone:
					return nil
				}
			}
		})
	}
	err := eg.Wait()
	lw.finished.Store(lw.now().UnixNano())
	close(reportDone)
	_ = reporter.Wait()
	st := lw.stats(LiveStats{})
	if lw.o.Report != nil {
		lw.o.Report(st)
	}
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// Stopped by the caller: that is how a live run ends.
		return st, nil
	}
	return st, err
}

func (lw *liveWriter) stats(prev LiveStats) LiveStats {
	end := lw.now()
	if f := lw.finished.Load(); f != 0 {
		end = time.Unix(0, f)
	}
	st := LiveStats{
		Payments: lw.payments.Load(),
		Filler:   lw.filler.Load(),
		Cancels:  lw.canceled.Load(),
		Elapsed:  end.Sub(lw.start),
		Lag:      time.Duration(lw.lag.Load()),
	}
	if s := st.Elapsed.Seconds(); s > 0 {
		st.AchievedTPS = float64(st.Payments) / s
	}
	if d := (st.Elapsed - prev.Elapsed).Seconds(); d > 0 {
		st.IntervalTPS = float64(st.Payments-prev.Payments) / d
	}
	return st
}

// inBurst reports whether t is in a burst window.
func (lw *liveWriter) inBurst(t time.Time) bool {
	if lw.o.BurstTPS < 0 {
		return false
	}
	since := t.Sub(lw.start)
	return since >= lw.o.BurstEvery && since%lw.o.BurstEvery < lw.o.BurstFor
}

// fillerRate is the filler payments per second needed at t on top of the
// generator's own traffic.
func (lw *liveWriter) fillerRate(t time.Time) float64 {
	target := lw.o.TPS
	if lw.inBurst(t) {
		target = max(target, lw.o.BurstTPS)
	}
	lambda, _, _ := lw.g.minuteRate(unixMinute(t))
	natural := lambda / 60
	return max(0, target-natural)
}

// schedule hands rows to the workers when their time comes, in time order.
func (lw *liveWriter) schedule(ctx context.Context, out chan<- liveItem) error {
	defer close(out)
	g := lw.g
	s := newScratch()
	send := func(it liveItem, due time.Time) error {
		select {
		case out <- it:
			lw.lag.Store(int64(max(0, lw.now().Sub(due))))
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fr := rand.New(rand.NewPCG(mix(g.seed, saltFiller, uint64(lw.start.UnixNano())), uint64(lw.start.UnixNano())))
	var fillerMinute, fillerSlot int64 = -1, -1
	var queue []row
	next := unixMinute(lw.from)
	last := lw.start
	var owed float64
	until := lw.o.Until
	for {
		now := lw.now()
		final := !until.IsZero() && !now.Before(until)
		if final {
			now = until
		}
		// Generate every minute that has begun.
		for !minuteStart(next).After(now) {
			g.minute(next, s)
			for _, r := range s.rows {
				if !r.p.ApprovedAt.Before(lw.from) {
					queue = append(queue, r)
				}
			}
			next++
		}
		head := 0
		for head < len(queue) && !queue[head].p.ApprovedAt.After(now) {
			r := queue[head]
			head++
			if final && !r.p.ApprovedAt.Before(until) {
				break
			}
			if err := send(liveItem{p: r.p}, r.p.ApprovedAt); err != nil {
				return err
			}
			if r.hasC {
				heap.Push(&lw.cancels, r.c)
			}
		}
		queue = queue[head:]
		for lw.cancels.Len() > 0 && !lw.cancels[0].CanceledAt.After(now) {
			c := heap.Pop(&lw.cancels).(Cancel)
			if final && !c.CanceledAt.Before(until) {
				break
			}
			if err := send(liveItem{isCancel: true, c: c}, c.CanceledAt); err != nil {
				return err
			}
		}
		// Filler up to the target rate, dated before Until in the last round.
		owed += lw.fillerRate(now) * now.Sub(last).Seconds()
		last = now
		at := now
		if final {
			at = until.Add(-time.Microsecond)
		}
		for ; owed >= 1; owed-- {
			m := unixMinute(at)
			if m != fillerMinute {
				fillerMinute, fillerSlot = m, -1
			}
			fillerSlot = max(fillerSlot+1, at.Sub(minuteStart(m)).Milliseconds()*fillerPerMs)
			if fillerSlot >= minuteSeconds*1000*fillerPerMs {
				continue // beyond 80,000 per second: nothing sane asks for it
			}
			p, c, ok := lw.fillerPayment(fr, m*IDsPerMinute+fillerBase+fillerSlot, at)
			if err := send(liveItem{p: p}, at); err != nil {
				return err
			}
			if ok {
				heap.Push(&lw.cancels, c)
			}
		}
		if final {
			return nil
		}
		wake := now.Add(tick)
		if len(queue) > 0 && queue[0].p.ApprovedAt.Before(wake) {
			wake = queue[0].p.ApprovedAt
		}
		if lw.cancels.Len() > 0 && lw.cancels[0].CanceledAt.Before(wake) {
			wake = lw.cancels[0].CanceledAt
		}
		if !until.IsZero() && until.Before(wake) {
			wake = until
		}
		if err := sleepCtx(ctx, wake.Sub(lw.now())); err != nil {
			return err
		}
	}
}

// fillerPayment makes a payment of a random merchant that has no scenario,
// so that filler never changes what a scenario's ground truth says.
func (lw *liveWriter) fillerPayment(r *rand.Rand, id int64, at time.Time) (Payment, Cancel, bool) {
	g := lw.g
	_, _, dt := g.minuteRate(unixMinute(at))
	sampler := &g.pop.sampler
	if dt != nil {
		sampler = &dt.sampler
	}
	var mi int32
	for range 1000 {
		mi = sampler.sample(r.Uint64())
		if g.role[mi] < 0 {
			break
		}
	}
	mer := &g.pop.merchants[mi]
	p := Payment{ID: id, MerchantID: mer.ID, Amount: round100(math.Exp(mer.AmountMu + mer.AmountSigma*r.NormFloat64())), ApprovedAt: at.Truncate(time.Microsecond)}
	c, ok := g.cancel(p, cancelRate(mer.CancelRate, dt, mi))
	return p, c, ok
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// work commits items on one connection: each alone by default, or up to
// Batch in one transaction.
func (lw *liveWriter) work(ctx context.Context, in <-chan liveItem) error {
	conn, err := lw.db.acquire(ctx)
	if err != nil {
		return fmt.Errorf("live: acquiring a connection: %w", err)
	}
	defer conn.release()
	var ps []Payment
	var cs []Cancel
	for it := range in {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ps, cs = ps[:0], cs[:0]
		add := func(it liveItem) {
			if it.isCancel {
				cs = append(cs, it.c)
			} else {
				ps = append(ps, it.p)
			}
		}
		add(it)
	gather:
		for len(ps)+len(cs) < lw.batch {
			select {
			case it, ok := <-in:
				if !ok {
					break gather
				}
				add(it)
			default:
				break gather
			}
		}
		// Let an in-flight commit finish when the run is stopped.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		np, nc, err := conn.insert(cctx, ps, cs)
		cancel()
		if err != nil {
			return err
		}
		var nf int64
		for _, p := range ps {
			if isFiller(p.ID) {
				nf++
			}
		}
		lw.payments.Add(np)
		lw.filler.Add(min(nf, np)) // a skipped duplicate is almost surely filler
		lw.canceled.Add(nc)
	}
	return nil
}

// isFiller reports whether a payment id is in the live filler range.
func isFiller(id int64) bool { return id%IDsPerMinute >= fillerBase }

// cancelHeap orders pending cancels by time, then id.
type cancelHeap []Cancel

func (h cancelHeap) Len() int { return len(h) }
func (h cancelHeap) Less(i, j int) bool {
	return cmp.Or(h[i].CanceledAt.Compare(h[j].CanceledAt), cmp.Compare(h[i].ID, h[j].ID)) < 0
}
func (h cancelHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *cancelHeap) Push(x any)   { *h = append(*h, x.(Cancel)) }
func (h *cancelHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}
