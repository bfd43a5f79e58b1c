package lease

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

func openDB(t *testing.T) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, cluster.NewDB(t), "rw_sink", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

func newLease(t *testing.T, db *store.DB, holder string, ttl, renew time.Duration) *Lease {
	t.Helper()
	l := New(Options{DB: db, Name: "s1", Holder: holder, TTL: ttl, Renew: renew,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(l.closeSession)
	return l
}

// take makes l the holder as Run's term would: the lease taken, its epoch
// the one its writes carry.
func take(t *testing.T, l *Lease) int64 {
	t.Helper()
	epoch, err := l.tryAcquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if epoch == 0 {
		t.Fatalf("%s could not take the lease (held by %+v)", l.o.Holder, l.Info())
	}
	l.epoch.Store(epoch)
	return epoch
}

func count(t *testing.T, db *store.DB, sql string) int {
	t.Helper()
	var n int
	if err := db.Pool().QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestTakeoverAfterExpiryRefusesTheStaleWriter: a holder that stops
// renewing (paused, cut off) keeps the lease until it expires by the
// sink's clock and not a moment longer; from the takeover on, its
// aggregates flush, alert and outbox writes and even its reading of the
// outbox are refused, although its checkpoint epoch is still current.
func TestTakeoverAfterExpiryRefusesTheStaleWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t)
	const ttl = 1500 * time.Millisecond
	a, b := newLease(t, db, "a", ttl, 100*time.Millisecond), newLease(t, db, "b", ttl, 100*time.Millisecond)
	aw, bw := db.Fenced(a), db.Fenced(b)

	// Before the first take, a standby's writes are refused without asking
	// the sink.
	if err := aw.Tx(ctx, func(pgx.Tx) error { return nil }); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("write before taking the lease: %v, want ErrFenced", err)
	}
	before := time.Now()
	if e := take(t, a); e != 1 {
		t.Fatalf("first epoch %d, want 1", e)
	}
	// a's writes pass; its checkpoint and a notification for later.
	if err := aggregates.New(db).Bootstrap(ctx, aggregates.Checkpoint{Slot: "s1", Position: "0/1", LastClosed: window.MinuteOf(before) - 2, Progress: before},
		func(context.Context, *aggregates.Loader) error { return nil }, nil); err != nil {
		t.Fatal(err)
	}
	aAgg := aggregates.New(aw)
	cp, err := aAgg.Claim(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	m := window.MinuteOf(before) - 1
	delta := func(merchant int64) *aggregates.Batch {
		return &aggregates.Batch{Deltas: []window.Delta{{Key: window.Key{Merchant: merchant, Minute: m}, Agg: window.Agg{Approvals: 1, ApprovedAmount: 5000}}},
			Position: cp.At("0/2", cp.LastClosed, before), At: before}
	}
	if err := aAgg.Apply(ctx, delta(7)); err != nil {
		t.Fatalf("the holder's flush: %v", err)
	}
	aAlerts := alertstore.New(aw)
	live := &alert.Alert{Rule: "cancel_rate_spike", Merchant: 7, State: alert.Firing, ActiveAt: m.Start(), LastEvalAt: m.Start(), LastSentAt: m.Start()}
	change := func(merchant int64) *alertstore.AlertBatch {
		l := *live
		l.Merchant = merchant
		return &alertstore.AlertBatch{LastClosed: cp.LastClosed, Closed: cp.At("0/2", cp.LastClosed, before), Routes: []alertstore.Route{{Receiver: "hook"}},
			Changes: []alertstore.AlertChange{{Live: &l, Snap: l, Minute: m, Fires: true, New: true, Notify: alert.NotifyFiring, Values: map[string]any{"c_h": 9}}}}
	}
	if n, err := aAlerts.ApplyAlerts(ctx, change(7)); err != nil || n != 1 {
		t.Fatalf("the holder's alert: %d enqueued, %v", n, err)
	}

	// b waits while a's session lives and its lease has not expired.
	for {
		got, err := b.tryAcquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != 0 {
			took := time.Since(before)
			if took < ttl {
				t.Fatalf("b took the lease %s after a took it, before its %s expiry", took, ttl)
			}
			if took > ttl+500*time.Millisecond {
				t.Fatalf("b took the lease %s after a took it: more than 500ms after its %s expiry", took, ttl)
			}
			if got != 2 {
				t.Fatalf("takeover epoch %d, want 2", got)
			}
			b.epoch.Store(got)
			t.Logf("takeover %s after the lease was taken (ttl %s)", took.Round(time.Millisecond), ttl)
			break
		}
		if info := b.Info(); info.Holder != "a" || info.Epoch != 1 {
			t.Fatalf("standby sees %+v, want a's epoch 1", info)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// a was not told; every write it tries now is refused.
	if err := aAgg.Apply(ctx, delta(8)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale flush: %v, want ErrFenced", err)
	}
	if _, err := aAlerts.ApplyAlerts(ctx, change(8)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale alert write: %v, want ErrFenced", err)
	}
	ob := aAlerts.Outbox()
	if _, _, err := ob.Due(ctx, "hook", time.Now(), 10); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale outbox read: %v, want ErrFenced", err)
	}
	var id int64
	if err := db.Pool().QueryRow(ctx, `SELECT notification_id FROM rw_sink.deliveries`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := ob.Delivered(ctx, "hook", []int64{id}, time.Now()); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale delivery bookkeeping: %v, want ErrFenced", err)
	}
	if err := ob.Retry(ctx, "hook", []int64{id}, 1, time.Now(), "x"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale retry bookkeeping: %v, want ErrFenced", err)
	}
	if _, err := aAgg.PruneMinutes(ctx, time.Now().Add(time.Hour)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale pruning: %v, want ErrFenced", err)
	}
	if _, err := aAgg.Claim(ctx, "s1"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale checkpoint claim: %v, want ErrFenced", err)
	}
	// Nothing of a's after the takeover landed.
	if n := count(t, db, `SELECT count(*) FROM rw_sink.minute_agg WHERE merchant_id = 8`); n != 0 {
		t.Fatalf("stale flush wrote %d minutes", n)
	}
	if n := count(t, db, `SELECT count(*) FROM rw_sink.alerts WHERE merchant_id = 8`); n != 0 {
		t.Fatalf("stale alert write stored %d alerts", n)
	}
	if n := count(t, db, `SELECT count(*) FROM rw_sink.deliveries WHERE status = 'pending' AND attempts = 0`); n != 1 {
		t.Fatalf("%d untouched pending deliveries, want 1", n)
	}
	if n := count(t, db, `SELECT count(*) FROM rw_sink.minute_agg WHERE merchant_id = 7`); n != 1 {
		t.Fatalf("the holder's flush before the takeover: %d minutes, want 1", n)
	}
	// The new holder writes.
	bOb := alertstore.New(bw).Outbox()
	ns, _, err := bOb.Due(ctx, "hook", time.Now().Add(time.Second), 10)
	if err != nil || len(ns) != 1 {
		t.Fatalf("new holder's outbox: %d due, %v", len(ns), err)
	}
	if err := bOb.Delivered(ctx, "hook", []int64{ns[0].ID}, time.Now()); err != nil {
		t.Fatalf("new holder's delivery bookkeeping: %v", err)
	}
	if _, err := aggregates.New(bw).Claim(ctx, "s1"); err != nil {
		t.Fatalf("new holder's claim: %v", err)
	}
}

// TestTakeoverWhenTheHolderIsGone: a holder whose process died (its sink
// session ended with it) is replaced at once, long before its lease would
// expire.
func TestTakeoverWhenTheHolderIsGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t)
	a, b := newLease(t, db, "a", time.Minute, time.Second), newLease(t, db, "b", time.Minute, time.Second)
	take(t, a)
	if got, err := b.tryAcquire(ctx); err != nil || got != 0 {
		t.Fatalf("b while a lives: epoch %d, %v; want to wait", got, err)
	}
	// The renewal moves the holder's session along with it.
	a.closeSession()
	if ok, err := a.renew(ctx, 1); err != nil || !ok {
		t.Fatalf("renewal on a new session: %v, %v", ok, err)
	}
	if got, err := b.tryAcquire(ctx); err != nil || got != 0 {
		t.Fatalf("b while a lives on its new session: epoch %d, %v; want to wait", got, err)
	}
	start := time.Now()
	a.closeSession()
	// The server's backend exits a moment after the client closed.
	var got int64
	waitFor(t, "b to take over from the ended session", 2*time.Second, func() bool {
		var err error
		if got, err = b.tryAcquire(ctx); err != nil {
			t.Fatal(err)
		}
		return got != 0
	})
	if got != 2 {
		t.Fatalf("b after a's session ended: epoch %d, want 2", got)
	}
	t.Logf("took over %s after the holder's session ended (lease 1m)", time.Since(start).Round(time.Millisecond))
	// a's renewal finds the successor instead of extending.
	if ok, err := a.renew(ctx, 1); err != nil || ok {
		t.Fatalf("superseded renewal: %v, %v; want refused", ok, err)
	}
	if info := a.Info(); info.Holder != "b" || info.Epoch != 2 {
		t.Fatalf("a sees %+v after its renewal was refused, want b's epoch 2", info)
	}
}

// TestWriteInFlightIsSerialisedBeforeTheTakeover: a holder's transaction
// that checked the epoch before the lease expired holds the takeover back
// until it ends, so it lands before anything its successor reads; one
// paused for longer than the lease is ended by the server and lands not at
// all. Either way the successor never sees a write of the old epoch after
// its own first read.
func TestWriteInFlightIsSerialisedBeforeTheTakeover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t)
	const ttl = time.Second
	a, b := newLease(t, db, "a", ttl, 200*time.Millisecond), newLease(t, db, "b", ttl, 200*time.Millisecond)
	aw := db.Fenced(a)
	taken := time.Now()
	take(t, a)
	insert := func(tx pgx.Tx, id int64) error {
		_, err := tx.Exec(ctx, `INSERT INTO rw_sink.merchants (id, name) VALUES ($1, 'n')`, id)
		return err
	}

	// A write that started before the expiry and ends after it.
	time.Sleep(time.Until(taken.Add(ttl - 300*time.Millisecond)))
	err := aw.Tx(ctx, func(tx pgx.Tx) error {
		time.Sleep(time.Until(taken.Add(ttl + 200*time.Millisecond)))
		// The lease has expired; b's takeover must wait for this
		// transaction.
		if got, err := b.tryAcquire(ctx); got != 0 {
			t.Errorf("b took epoch %d while the holder's write was open (%v)", got, err)
		} else {
			t.Logf("takeover while the old holder's write is open: %v", err)
		}
		return insert(tx, 1)
	})
	if err != nil {
		t.Fatalf("the write that began under the lease: %v", err)
	}
	got, err := b.tryAcquire(ctx)
	if err != nil || got != 2 {
		t.Fatalf("takeover after the write: epoch %d, %v; want 2", got, err)
	}
	b.epoch.Store(got)
	if err := aw.Tx(ctx, func(tx pgx.Tx) error { return insert(tx, 2) }); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("write after the takeover: %v, want ErrFenced", err)
	}

	// The new holder's write paused past its lease: the server ends its
	// session, so nothing of it lands, and the takeover is not held up.
	bw := db.Fenced(b)
	c := newLease(t, db, "c", ttl, 200*time.Millisecond)
	err = bw.Tx(ctx, func(tx pgx.Tx) error {
		time.Sleep(ttl + 300*time.Millisecond)
		return insert(tx, 3)
	})
	if err == nil {
		t.Fatal("a write idle in its transaction for longer than the lease committed")
	}
	t.Logf("write paused past the lease: %v", err)
	if got, err := c.tryAcquire(ctx); err != nil || got != 3 {
		t.Fatalf("takeover after the paused write: epoch %d, %v; want 3", got, err)
	}
	var ids []int64
	rows, _ := db.Pool().Query(ctx, `SELECT id FROM rw_sink.merchants ORDER BY id`)
	ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != 1 {
		t.Fatalf("merchants written: %v, want only the write that began under the lease", ids)
	}
}

type termLog struct {
	mu     sync.Mutex
	starts []time.Time
	ends   []time.Time
}

func (l *termLog) active(ctx context.Context) error {
	l.mu.Lock()
	l.starts = append(l.starts, time.Now())
	l.mu.Unlock()
	<-ctx.Done()
	l.mu.Lock()
	l.ends = append(l.ends, time.Now())
	l.mu.Unlock()
	return nil
}

func (l *termLog) snapshot() ([]time.Time, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.starts...), append([]time.Time(nil), l.ends...)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunStepsDownBeforeTheLeaseExpires: an active process that cannot
// renew stops its work before its lease can expire, and the standby starts
// only after that, with the next epoch; a clean stop hands over at once.
func TestRunStepsDownBeforeTheLeaseExpires(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t)
	const ttl, renew = 2 * time.Second, 400 * time.Millisecond
	a, b := newLease(t, db, "a", ttl, renew), newLease(t, db, "b", ttl, renew)
	var aLog, bLog termLog
	actx, stopA := context.WithCancel(ctx)
	bctx, stopB := context.WithCancel(ctx)
	aDone, bDone := make(chan error, 1), make(chan error, 1)
	go func() { aDone <- a.Run(actx, aLog.active, nil) }()
	waitFor(t, "a to be active", 5*time.Second, func() bool { return a.Role() == RoleActive })
	go func() { bDone <- b.Run(bctx, bLog.active, nil) }()
	waitFor(t, "b to see a's lease", 5*time.Second, func() bool { return b.Info().Holder == "a" })
	if !a.Current() || b.Current() {
		t.Fatalf("may send: a %v, b %v; want only a", a.Current(), b.Current())
	}
	if b.Role() != RoleStandby {
		t.Fatalf("b is %s while a holds the lease", b.Role())
	}

	// Block a's renewals (and b's takeover) with a lock on the lease row,
	// as a sink that stops answering would.
	blocker, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var expires time.Time
	if err := blocker.QueryRow(ctx, `SELECT expires_at FROM rw_sink.lease WHERE name = 's1' FOR UPDATE`).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to step down", 2*ttl, func() bool { _, ends := aLog.snapshot(); return len(ends) == 1 })
	_, ends := aLog.snapshot()
	if !ends[0].Before(expires) {
		t.Fatalf("a stopped at %s, not before its lease expired at %s", ends[0].Format(time.RFC3339Nano), expires.Format(time.RFC3339Nano))
	}
	t.Logf("a stopped %s before its lease expired", expires.Sub(ends[0]).Round(time.Millisecond))
	if a.Current() {
		t.Fatal("a may still send after it stopped")
	}
	waitFor(t, "a to be a standby", time.Second, func() bool { return a.Role() == RoleStandby })
	if starts, _ := bLog.snapshot(); len(starts) != 0 {
		t.Fatal("b started while the lease row was locked")
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Both are standbys now; whichever asks first takes the lease, with
	// the next epoch, and begins after a's term ended.
	waitFor(t, "a takeover", 2*ttl, func() bool { return a.Role() == RoleActive || b.Role() == RoleActive })
	next, nextLog, nextStop, nextDone, other, otherLog := b, &bLog, stopB, bDone, a, &aLog
	if a.Role() == RoleActive {
		next, nextLog, nextStop, nextDone, other, otherLog = a, &aLog, stopA, aDone, b, &bLog
	}
	waitFor(t, "the new term to start", time.Second, func() bool { starts, _ := nextLog.snapshot(); return len(starts) > 0 })
	starts, _ := nextLog.snapshot()
	if !starts[len(starts)-1].After(ends[0]) {
		t.Fatal("the new term began before a's ended")
	}
	if info := next.Info(); info.Epoch != 2 || info.Holder != next.o.Holder {
		t.Fatalf("%s holds %+v, want epoch 2", next.o.Holder, info)
	}
	if other.Role() != RoleStandby {
		t.Fatalf("%s is %s after %s took over", other.o.Holder, other.Role(), next.o.Holder)
	}

	// A clean stop releases the lease: the other takes over within its
	// polling interval, not the lease.
	nextStop()
	stopped := time.Now()
	if err := <-nextDone; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a takeover after a clean stop", ttl, func() bool { return other.Role() == RoleActive })
	if took := time.Since(stopped); took > renew+300*time.Millisecond {
		t.Fatalf("takeover after a clean stop took %s, want within one renew interval (%s)", took, renew)
	}
	if info := other.Info(); info.Epoch != 3 {
		t.Fatalf("%s holds %+v, want epoch 3", other.o.Holder, info)
	}
	// The role is set before the work's goroutine records its start.
	waitFor(t, "the new active process's work to start", time.Second, func() bool { starts, _ := otherLog.snapshot(); return len(starts) > 0 })
	stopA()
	stopB()
	otherDone := aDone
	if other == b {
		otherDone = bDone
	}
	if err := <-otherDone; err != nil {
		t.Fatal(err)
	}
}
