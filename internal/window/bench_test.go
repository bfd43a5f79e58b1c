package window

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// The window benchmark replays SPEC §1's peak in the order the applier sees
// it: 5,000 events a second from 100,000 merchants, the top 1% carrying 60%
// of them, one event per transaction (Advance after each, as apply does), and
// Drain when a flush is due.

const (
	benchMerchants       = 100_000
	benchTopMerchants    = benchMerchants / 100
	benchTopSharePercent = 60
	benchEvents          = 1 << 18 // 52 s of peak traffic, cycled
)

type benchEvent struct {
	merchant, us, amount, commitUS int64
	cancel                         bool
}

// newBenchEvents returns the events and the source time they span. Most rows
// commit within half a second of their transaction time; 5% are stragglers
// up to a minute old, so around every minute boundary events land in both
// the current and the previous minute, some after it closed (late).
func newBenchEvents() ([]benchEvent, int64) {
	rng := rand.New(rand.NewPCG(6, 2))
	start := time.Date(2024, 3, 8, 1, 0, 0, 0, time.UTC).UnixMicro()
	commit := start
	evs := make([]benchEvent, benchEvents)
	for i := range evs {
		commit += rng.Int64N(400) // 200 µs apart on average: 5,000/s
		e := benchEvent{merchant: 1 + rng.Int64N(benchMerchants), commitUS: commit, amount: 1_000 * (1 + rng.Int64N(200))}
		if rng.IntN(100) < benchTopSharePercent {
			e.merchant = 1 + rng.Int64N(benchTopMerchants)
		}
		lag := rng.Int64N(500_000)
		if rng.IntN(20) == 0 {
			lag = rng.Int64N(60_000_000)
		}
		e.us = commit - lag
		e.cancel = rng.IntN(101) == 0 // one cancel per 100 approvals
		evs[i] = e
	}
	return evs, commit - start + 400
}

// BenchmarkApply measures what the applier does with the window for one
// flush interval's worth of events: AddApproval or AddCancel and Advance per
// event, a Drain when a minute closes (the applier flushes at once then) and
// one at the end of the batch. batch=500 is 5,000 events/s with the default
// 100 ms flush_interval; batch=50000 is max_batch_events, reached while
// catching up after downtime.
func BenchmarkApply(b *testing.B) {
	for _, batch := range []int{500, 50_000} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			evs, span := newBenchEvents()
			w := New(time.Second, MinuteOfMicros(evs[0].commitUS)-2)
			var (
				i        int
				offset   int64 // shifts each cycle of evs forward, so that time keeps moving
				progress int64
				deltas   int
			)
			b.ReportAllocs()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mallocs0 := ms.Mallocs
			for b.Loop() {
				for range batch {
					e := &evs[i]
					if e.cancel {
						w.AddCancel(e.merchant, e.us+offset, e.amount)
					} else {
						w.AddApproval(e.merchant, e.us+offset, e.amount)
					}
					progress = max(progress, e.commitUS+offset)
					if _, _, ok := w.Advance(progress); ok {
						deltas += len(w.Drain())
					}
					if i++; i == len(evs) {
						i = 0
						offset += span
					}
				}
				deltas += len(w.Drain())
			}
			runtime.ReadMemStats(&ms)
			events := float64(b.N) * float64(batch)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
			b.ReportMetric(float64(ms.Mallocs-mallocs0)/events, "allocs/event")
			// How much the window condenses: what the sink writes per event.
			b.ReportMetric(float64(deltas)/events, "deltas/event")
		})
	}
}
