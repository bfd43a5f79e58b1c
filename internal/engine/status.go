package engine

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Status is the engine's state for health checks, metrics and the API.
type Status struct {
	Ready      bool
	LastClosed window.Minute
	// Position is where the sink holds everything up to, in the input's
	// own terms (a source position, a worker's partition offsets).
	Position string
	// LagBytes is how much of the source's log the sink does not hold yet,
	// where the source can tell (a single node).
	LagBytes   int64
	LagSeconds float64
	// Progress is the source commit time the sink holds everything up to.
	Progress time.Time
	// EventsPerSecond is the rate of events made durable over about the
	// last ten seconds.
	EventsPerSecond float64
	// Stuck is set while the pipeline fails the same way at the same
	// position again and again.
	Stuck *Stuck
}

// StatusBoard holds the status the core and its driver report, for readers
// on other goroutines.
type StatusBoard struct {
	mu      sync.Mutex
	status  Status
	total   int64
	samples []rateSample // the last ten seconds

	ready atomic.Bool
	// lag, set by the driver, fills in the lag at each read.
	lag        func(s *Status)
	stall      *StallWatch
	lastClosed prometheus.Gauge
	ranking    atomic.Pointer[rules.Ranking]
}

type rateSample struct {
	at    time.Time
	total int64
}

// Status returns the current state.
func (b *StatusBoard) Status() Status {
	b.mu.Lock()
	st := b.status
	lag := b.lag
	b.mu.Unlock()
	if b.stall != nil {
		st.Stuck = b.stall.Current()
	}
	st.Ready = b.ready.Load() && st.Stuck == nil
	if lag != nil {
		lag(&st)
	}
	return st
}

// SetReady says whether the input is live.
func (b *StatusBoard) SetReady(ready bool) { b.ready.Store(ready) }

// SetLag installs how the driver computes the lag into a status read.
func (b *StatusBoard) SetLag(lag func(s *Status)) {
	b.mu.Lock()
	b.lag = lag
	b.mu.Unlock()
}

// Ranking is the riskiest merchants at the newest closed minute, or nil
// before the first minute closed.
func (b *StatusBoard) Ranking() *rules.Ranking { return b.ranking.Load() }

// SetRanking publishes the ranking of a newly closed minute.
func (b *StatusBoard) SetRanking(r *rules.Ranking) { b.ranking.Store(r) }

// Restored records the position a session starts from.
func (b *StatusBoard) Restored(pos string, lastClosed window.Minute, progress time.Time) {
	b.mu.Lock()
	b.status.Position, b.status.LastClosed, b.status.Progress = pos, lastClosed, progress
	b.mu.Unlock()
	b.setClosedGauge(lastClosed)
}

// durable records a flush: its position, closed minutes, progress and
// events, for the rate over about the last ten seconds.
func (b *StatusBoard) durable(now time.Time, pos string, lastClosed window.Minute, progress time.Time, events int) {
	b.mu.Lock()
	b.status.Position, b.status.LastClosed, b.status.Progress = pos, lastClosed, progress
	b.total += int64(events)
	b.samples = append(b.samples, rateSample{now, b.total})
	for len(b.samples) > 2 && now.Sub(b.samples[1].at) >= 10*time.Second {
		b.samples = b.samples[1:]
	}
	if first := b.samples[0]; len(b.samples) > 1 && now.Sub(first.at) > 0 {
		b.status.EventsPerSecond = float64(b.total-first.total) / now.Sub(first.at).Seconds()
	}
	b.mu.Unlock()
	b.setClosedGauge(lastClosed)
}

func (b *StatusBoard) setClosedGauge(m window.Minute) {
	if b.lastClosed != nil {
		b.lastClosed.Set(float64(m.Start().Unix()))
	}
}
