package sim

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Traffic profiles (Options.Profile).
const (
	// ProfileDefault is the calm traffic the simulator always had: every
	// day alike but for Poisson noise, cancels on the business clock.
	ProfileDefault = ""
	// ProfileRealistic adds what makes real traffic hard to judge: weekday
	// effects, day-to-day overdispersion of volumes and of cancel rates,
	// and cancels delayed by hours of wall-clock time (see doc.go).
	ProfileRealistic = "realistic"
)

// The realistic profile's parameters.
const (
	// volumeSigma: a merchant's day volume factor is log-normal with mean 1
	// and this σ, so its same-time amounts differ from day to day by about
	// 12% (a busy merchant's daily count has a coefficient of variation of
	// about 0.13 together with the weekday effect and Poisson noise).
	volumeSigma = 0.12
	// cancelSigma: a merchant's day cancel-rate factor is log-normal with
	// mean 1 and this σ: one day in six runs 35% above its long-run rate.
	cancelSigma = 0.3
	// volatileSigma is a volatile_large merchant's day volume σ.
	volatileSigma = 0.4
	// delayedShare of the cancels are not decided on the business clock
	// but after a wall-clock delay of hours (log-normal, median 3 h, σ 0.6,
	// 30 min – 16 h): refunds that wait for the goods to come back or for
	// an operator. The evening's sales then keep being canceled through
	// the night while approvals fall, so a merchant's night-time hourly
	// cancel rate runs above its 7-day rate as it does in real gateways.
	delayedShare  = 0.25
	delayedMedian = 3 * time.Hour
	delayedSigma  = 0.6
	delayedMin    = 30 * time.Minute
	delayedMax    = 16 * time.Hour
	// maxCachedDays bounds the per-day tables a generator keeps: a history
	// of 8 days plus the week of pending cancels fits.
	maxCachedDays = 16
)

// weekday is the realistic profile's volume factor by day of the week
// (time.Weekday order, Sunday first): Korean card traffic peaks on Friday
// and Saturday (dining out, shopping), dips on Sunday (shops closed, B2B
// idle) and is flat midweek. The factors average 1 over a week, so
// PaymentsPerDay stays the mean daily volume.
var weekday = [7]float64{0.90, 0.94, 0.96, 0.98, 1.00, 1.10, 1.12}

// Salts of the realistic profile's per-(merchant, day) draws.
const (
	saltDayVolume   = 0x646179766f6c // day volume factor
	saltDayCancel   = 0x64617963616e // day cancel-rate factor
	saltVolatile    = 0x766f6c6174   // volatile_large's own day factor
	saltVolatileCut = 0x766f6c637574 // volatile_large's per-payment thinning
	saltBatch       = 0x6261746368   // batch_refunds' second within the batch minute
)

// ValidProfile reports whether p is a valid Options.Profile.
func ValidProfile(p string) error {
	if p != ProfileDefault && p != ProfileRealistic {
		return fmt.Errorf("unknown traffic profile %q: want %q (calm) or %q", p, ProfileDefault, ProfileRealistic)
	}
	return nil
}

// civilDay numbers business days: the days since 1970-01-01 of t's date in
// loc. Its weekday is (day + 4) mod 7 (1970-01-01 was a Thursday).
func civilDay(t time.Time, loc *time.Location) int64 {
	y, m, d := t.In(loc).Date()
	return daysSinceEpoch(y, m, d)
}

func daysSinceEpoch(y int, m time.Month, d int) int64 {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// dayKey is the stream key of (merchant, business day).
func dayKey(id, day int64) uint64 { return uint64(day)<<32 | uint64(uint32(id)) }

// logNormalFactor is exp(σz − σ²/2) for the standard normal z drawn from
// the (seed, salt, key) stream: log-normal with mean 1.
func logNormalFactor(seed, salt, key uint64, sigma float64) float64 {
	pr := newPRNG(seed, salt, key)
	return math.Exp(sigma*pr.norm() - sigma*sigma/2)
}

// weekdayFactor is the day-of-week factor of business day day: 1 outside
// the realistic profile.
func (g *Generator) weekdayFactor(day int64) float64 {
	if !g.realistic {
		return 1
	}
	return weekday[(day%7+7+4)%7]
}

// volumeFactor is merchant id's volume on business day day relative to its
// long-run mean: the weekday factor × its log-normal day factor; 1
// outside the realistic profile.
func (g *Generator) volumeFactor(id, day int64) float64 {
	if !g.realistic {
		return 1
	}
	return g.weekdayFactor(day) * logNormalFactor(g.seed, saltDayVolume, dayKey(id, day), volumeSigma)
}

// dayTable is what the realistic profile needs of one business day: the
// merchant sampler with every merchant's weight times its volume factor,
// the day's volume relative to an average day, and the cancel-rate
// factors. Built once per day (about 13 ms at 100,000 merchants) and
// shared read-only.
type dayTable struct {
	sampler aliasTable
	volume  float64   // Σ weight × volume factor
	cancel  []float32 // merchant index → cancel-rate factor
}

func (g *Generator) buildDay(day int64) *dayTable {
	ms := g.pop.merchants
	w := make([]float64, len(ms))
	dt := &dayTable{cancel: make([]float32, len(ms))}
	for i := range ms {
		w[i] = ms[i].Weight * g.volumeFactor(ms[i].ID, day)
		dt.volume += w[i]
		dt.cancel[i] = float32(logNormalFactor(g.seed, saltDayCancel, dayKey(ms[i].ID, day), cancelSigma))
	}
	dt.sampler = newAliasTable(w, dt.volume)
	return dt
}

// day is business day day's table (nil outside the realistic profile).
func (g *Generator) day(day int64) *dayTable {
	if !g.realistic {
		return nil
	}
	return g.days.get(day, func() *dayTable { return g.buildDay(day) })
}

// cancelRate is a merchant's cancel probability rate on the day of dt: rate
// × its day factor in the realistic profile, rate itself otherwise.
func cancelRate(rate float64, dt *dayTable, mi int32) float64 {
	if dt == nil {
		return rate
	}
	return rate * float64(dt.cancel[mi])
}

// dayCache keeps the most recently used day tables. A generator is used
// from several goroutines (history chunks, ground truth), each asking for
// the days it generates; a table is built once, by the first to ask.
type dayCache struct {
	mu   sync.Mutex
	tick uint64
	days map[int64]*dayEntry
}

type dayEntry struct {
	once sync.Once
	t    *dayTable
	used uint64
}

func newDayCache() *dayCache { return &dayCache{days: map[int64]*dayEntry{}} }

func (c *dayCache) get(day int64, build func() *dayTable) *dayTable {
	c.mu.Lock()
	c.tick++
	e := c.days[day]
	if e == nil {
		if len(c.days) >= maxCachedDays {
			// Evict the least recently used day; a goroutine still
			// building or using it keeps its own pointer.
			var oldest int64
			var at uint64 = math.MaxUint64
			for d, x := range c.days {
				if x.used < at {
					oldest, at = d, x.used
				}
			}
			delete(c.days, oldest)
		}
		e = &dayEntry{}
		c.days[day] = e
	}
	e.used = c.tick
	c.mu.Unlock()
	e.once.Do(func() { e.t = build() })
	return e.t
}
