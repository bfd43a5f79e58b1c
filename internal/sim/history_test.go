package sim

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// dbTotals is what the source tables hold.
type dbTotals struct {
	payments, paymentAmount, cancels, cancelAmount, merchants int64
}

func readTotals(t *testing.T, pool *pgxpool.Pool) dbTotals {
	t.Helper()
	var d dbTotals
	err := pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM payments), (SELECT coalesce(sum(amount), 0) FROM payments),
		(SELECT count(*) FROM payment_cancels), (SELECT coalesce(sum(cancel_amount), 0) FROM payment_cancels),
		(SELECT count(*) FROM merchants)`).Scan(&d.payments, &d.paymentAmount, &d.cancels, &d.cancelAmount, &d.merchants)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func indexNames(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT indexname FROM pg_indexes WHERE tablename IN ('payments', 'payment_cancels') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// TestLoadHistory loads two days at a small scale — in two calls, so both
// the empty-table path (indexes dropped and rebuilt) and the non-empty one
// run — and compares the tables with what Generate emits.
func TestLoadHistory(t *testing.T) {
	pool := newSource(t, 4)
	ctx := context.Background()
	g := newGen(t, Options{Seed: testSeed, Population: NewPopulation(testSeed, 2000), PaymentsPerDay: 20_000})
	loc := g.Location()
	now := time.Date(2026, 11, 25, 15, 4, 5, 0, loc)
	from := now.AddDate(0, 0, -2)
	mid := from.Add(30 * time.Hour)
	before := indexNames(t, pool)

	var want dbTotals
	if err := g.Generate(from, now, func(p Payment) error {
		want.payments++
		want.paymentAmount += p.Amount
		return nil
	}, func(c Cancel) error {
		if c.CanceledAt.Before(now) {
			want.cancels++
			want.cancelAmount += c.Amount
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want.merchants = 2000

	var mu sync.Mutex
	var calls []int64
	progress := func(done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, done)
		if done > total {
			t.Errorf("progress %d of %d", done, total)
		}
	}
	p1, c1, err := LoadHistory(ctx, pool, g, from, mid, progress)
	if err != nil {
		t.Fatal(err)
	}
	if got := indexNames(t, pool); !slices.Equal(got, before) {
		t.Errorf("indexes after a first load: %v, want %v", got, before)
	}
	// The second part's cancels before mid belong to payments of the
	// second part, so they are due by now but not by mid: load the second
	// part with cutoff now, then the first part's cancels in [mid, now).
	p2, c2, err := LoadHistory(ctx, pool, g, mid, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	pend, err := PendingCancels(ctx, g, from, mid)
	if err != nil {
		t.Fatal(err)
	}
	var late int64
	for _, c := range pend {
		if c.CanceledAt.Before(now) {
			if _, err := pool.Exec(ctx, insertCancel, c.ID, c.PaymentID, c.MerchantID, c.Amount, c.CanceledAt); err != nil {
				t.Fatal(err)
			}
			late++
		}
	}
	got := readTotals(t, pool)
	if got != want {
		t.Errorf("tables hold %+v, Generate emitted %+v", got, want)
	}
	if p1+p2 != want.payments || c1+c2+late != want.cancels {
		t.Errorf("LoadHistory reported %d+%d payments and %d+%d(+%d pending) cancels, want %d and %d", p1, p2, c1, c2, late, want.payments, want.cancels)
	}
	if len(calls) == 0 || calls[len(calls)-1] != p1 {
		t.Errorf("progress calls end at %v, want %d", calls[len(calls)-1:], p1)
	}
	if got := indexNames(t, pool); !slices.Equal(got, before) {
		t.Errorf("indexes: %v, want %v", got, before)
	}
	// Times are stored as generated.
	var minAt, maxAt time.Time
	if err := pool.QueryRow(ctx, `SELECT min(approved_at), max(approved_at) FROM payments`).Scan(&minAt, &maxAt); err != nil {
		t.Fatal(err)
	}
	if minAt.Before(from) || !maxAt.Before(now) {
		t.Errorf("approved_at in [%v, %v], want within [%v, %v)", minAt, maxAt, from, now)
	}
	t.Logf("loaded %d payments, %d cancels (+%d pending ones due by now)", want.payments, want.cancels-late, late)
}

// TestPendingCancels: history's cancels plus the pending ones are all the
// cancels of the history's payments.
func TestPendingCancels(t *testing.T) {
	g := smallGen(t)
	loc := g.Location()
	now := time.Date(2026, 11, 25, 15, 4, 5, 0, loc)
	from := now.AddDate(0, 0, -8)
	pend, err := PendingCancels(context.Background(), g, from, now)
	if err != nil {
		t.Fatal(err)
	}
	var want []Cancel
	if err := g.Generate(from, now, nil, func(c Cancel) error {
		if !c.CanceledAt.Before(now) {
			want = append(want, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(want, func(a, b Cancel) int {
		if c := a.CanceledAt.Compare(b.CanceledAt); c != 0 {
			return c
		}
		return int(a.ID - b.ID)
	})
	if !slices.Equal(pend, want) {
		t.Fatalf("%d pending cancels, want %d", len(pend), len(want))
	}
	if len(pend) == 0 || !slices.IsSortedFunc(pend, func(a, b Cancel) int { return a.CanceledAt.Compare(b.CanceledAt) }) {
		t.Fatal("pending cancels empty or unsorted")
	}
}
