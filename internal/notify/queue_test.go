package notify_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// memQueue is an in-memory notify.Queue with the PostgreSQL outbox's
// semantics as the interface documents them (that implementation is tested
// against PostgreSQL elsewhere): oldest first, stop at the first one not yet
// due, attempts kept per notification. It records every outcome and can be
// told to fail calls.
type memQueue struct {
	t        testing.TB
	receiver string

	mu        sync.Mutex
	items     []*memItem
	retries   []retryCall
	delivered []int64
	rejected  map[int64]string
	limits    []int
	fail      map[string]int // method name -> calls still to fail
}

type memItem struct {
	n         notify.Notification
	done      bool
	next      time.Time
	attempts  int
	lastError string
}

type retryCall struct {
	IDs      []int64
	Attempts int
	At, Next time.Time
	Reason   string
}

var errQueueDown = errors.New("outbox unavailable (injected)")

func newMemQueue(t testing.TB, receiver string, ns ...notify.Notification) *memQueue {
	q := &memQueue{t: t, receiver: receiver, rejected: map[int64]string{}, fail: map[string]int{}}
	q.add(ns...)
	return q
}

func (q *memQueue) add(ns ...notify.Notification) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, n := range ns {
		q.items = append(q.items, &memItem{n: n, attempts: n.Attempts})
	}
	slices.SortFunc(q.items, func(a, b *memItem) int { return int(a.n.ID - b.n.ID) })
}

// failNext makes the next k calls of method fail.
func (q *memQueue) failNext(method string, k int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.fail[method] = k
}

func (q *memQueue) injected(method, receiver string) error {
	if receiver != q.receiver {
		q.t.Errorf("%s for receiver %q, want %q", method, receiver, q.receiver)
	}
	if q.fail[method] > 0 {
		q.fail[method]--
		return fmt.Errorf("%s: %w", method, errQueueDown)
	}
	return nil
}

func (q *memQueue) Due(ctx context.Context, receiver string, now time.Time, limit int) ([]notify.Notification, time.Duration, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.injected("Due", receiver); err != nil {
		return nil, 0, err
	}
	q.limits = append(q.limits, limit)
	var out []notify.Notification
	for _, it := range q.items {
		if it.done {
			continue
		}
		if it.next.After(now) {
			return out, it.next.Sub(now), nil
		}
		if len(out) == limit {
			break
		}
		n := it.n
		n.Attempts = it.attempts
		out = append(out, n)
	}
	return out, 0, nil
}

func (q *memQueue) find(ids []int64) []*memItem {
	var out []*memItem
	for _, id := range ids {
		for _, it := range q.items {
			if it.n.ID == id {
				out = append(out, it)
			}
		}
	}
	if len(out) != len(ids) {
		q.t.Errorf("unknown ids in %v", ids)
	}
	return out
}

func (q *memQueue) Delivered(ctx context.Context, receiver string, ids []int64, at time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.injected("Delivered", receiver); err != nil {
		return err
	}
	for _, it := range q.find(ids) {
		if it.done {
			q.t.Errorf("notification %d recorded twice", it.n.ID)
		}
		it.done = true
		q.delivered = append(q.delivered, it.n.ID)
	}
	return nil
}

func (q *memQueue) Retry(ctx context.Context, receiver string, ids []int64, attempts int, next time.Time, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.injected("Retry", receiver); err != nil {
		return err
	}
	q.retries = append(q.retries, retryCall{IDs: slices.Clone(ids), Attempts: attempts, At: time.Now(), Next: next, Reason: reason})
	for _, it := range q.find(ids) {
		it.attempts, it.next, it.lastError = attempts, next, reason
	}
	return nil
}

func (q *memQueue) Rejected(ctx context.Context, receiver string, ids []int64, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.injected("Rejected", receiver); err != nil {
		return err
	}
	for _, it := range q.find(ids) {
		if it.done {
			q.t.Errorf("notification %d recorded twice", it.n.ID)
		}
		it.done = true
		q.rejected[it.n.ID] = reason
	}
	return nil
}

// snapshot returns copies of what was recorded.
func (q *memQueue) snapshot() (delivered []int64, rejected map[int64]string, retries []retryCall) {
	q.mu.Lock()
	defer q.mu.Unlock()
	rej := make(map[int64]string, len(q.rejected))
	for k, v := range q.rejected {
		rej[k] = v
	}
	return slices.Clone(q.delivered), rej, slices.Clone(q.retries)
}

func (q *memQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, it := range q.items {
		if !it.done {
			n++
		}
	}
	return n
}
