package rules

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/riskwatch/riskwatch/internal/window"
)

// loadModel is SPEC §1's load at minute scale: 100,000 merchants, about 2,000
// of them active in a minute, the top 1% carrying half of the events. A
// fixed cycle of minute patterns repeats (minute m uses pattern m % 100),
// which lets the baseline be computed exactly, so the leaving minutes
// subtract what entered B 7 days earlier and the sums stay consistent however
// long the benchmark runs.
//
// The 1,000 top merchants sell every minute and cancel about 15 times an
// hour, so every one of them reaches min_cancels and has its evidence
// computed every minute (pessimistic: the tail probabilities are the
// costly part); the other 99,000 are dealt out
// over the 100 patterns, 990 each, so each of them sells once every 100
// minutes: every merchant has a 7-day history, and about 60,000 are active
// in any hour (pessimistic: with ~15 sales a day, a Poisson merchant is
// active in an hour with probability ~46%).
type loadModel struct {
	merchants []int64
	patterns  [][]window.Delta // Minute unset
}

const (
	benchMerchants = 100_000
	benchPatterns  = 100
)

func newLoadModel() *loadModel {
	rng := rand.New(rand.NewPCG(2024, 3))
	lm := &loadModel{}
	for i := range benchMerchants {
		lm.merchants = append(lm.merchants, int64(10_000+3*i))
	}
	top := lm.merchants[:benchMerchants/100]
	rest := slices.Clone(lm.merchants[benchMerchants/100:])
	rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	per := len(rest) / benchPatterns
	for r := range benchPatterns {
		var p []window.Delta
		add := func(id int64, cancelOneIn int) {
			a := window.Agg{Approvals: 1 + rng.Int64N(2)}
			a.ApprovedAmount = a.Approvals * (10_000 + rng.Int64N(90_000))
			if rng.IntN(cancelOneIn) == 0 {
				a.Cancels = 1
				a.CanceledAmount = 30_000
			}
			p = append(p, window.Delta{Key: window.Key{Merchant: id}, Agg: a})
		}
		for _, id := range top {
			add(id, 4)
		}
		for _, id := range rest[r*per : (r+1)*per] {
			add(id, 20)
		}
		lm.patterns = append(lm.patterns, p)
	}
	return lm
}

func (lm *loadModel) minute(m window.Minute) []window.Delta {
	p := lm.patterns[int(m)%len(lm.patterns)]
	out := make([]window.Delta, len(p))
	for i, d := range p {
		d.Minute = m
		out[i] = d
	}
	return out
}

// snapshot is the exact state at lc: the recent three hours from the
// patterns, B summed over the 10,080 minutes, its hours of the day, and a
// 7-day exposure window.
func (lm *loadModel) snapshot(lc window.Minute, cal window.Calendar) Snapshot {
	s := Snapshot{LastClosed: lc, ExposureMinutes: BaselineMinutes}
	for m := lc - RecentMinutes + 1; m <= lc; m++ {
		s.Recent = append(s.Recent, lm.minute(m)...)
	}
	hod := make(map[[2]int64]*HourOfDaySums)
	expo := make(map[int64]int64, benchMerchants)
	for m := lc - 10139; m <= lc; m++ {
		h := m.Start().In(cal.Location()).Hour()
		for _, d := range lm.patterns[int(m)%len(lm.patterns)] {
			if m > lc-BaselineMinutes {
				expo[d.Merchant] += d.ApprovedAmount
			}
			if m > lc-HourMinutes {
				continue
			}
			k := [2]int64{d.Merchant, int64(h)}
			x := hod[k]
			if x == nil {
				x = &HourOfDaySums{Merchant: d.Merchant, Hour: h}
				hod[k] = x
			}
			x.Approvals += d.Approvals
			x.Cancels += d.Cancels
		}
	}
	for _, x := range hod {
		s.HourOfDay = append(s.HourOfDay, *x)
	}
	for id, a := range expo {
		s.Exposure = append(s.Exposure, MerchantAmount{Merchant: id, Amount: a})
	}
	times := make([]int64, len(lm.patterns))
	for m := lc - 10139; m <= lc-60; m++ {
		times[int(m)%len(lm.patterns)]++
	}
	sums := make(map[int64]*MerchantSums, benchMerchants)
	for _, id := range lm.merchants {
		sums[id] = &MerchantSums{Merchant: id}
	}
	for r, p := range lm.patterns {
		for _, d := range p {
			x := sums[d.Merchant]
			x.Approvals += times[r] * d.Approvals
			x.Cancels += times[r] * d.Cancels
		}
	}
	for _, id := range lm.merchants {
		s.Baseline = append(s.Baseline, *sums[id])
	}
	return s
}

func benchStart(tb testing.TB) window.Minute {
	return minuteAt(tb, "2024-03-08T01:00:00Z") // 10:00 KST
}

// BenchmarkCloseAndEvaluate measures one minute closing at full load: Close
// (2,000 merchants enter H, 2,000 move to B, 2,000 leave B) and
// cancel_rate_spike for every merchant active in the hour, ranked for the
// dashboard. Adding the
// minute's deltas is not timed (BenchmarkAdd).
func BenchmarkCloseAndEvaluate(b *testing.B) {
	lm := newLoadModel()
	lc := benchStart(b)
	s := NewState(lm.snapshot(lc, seoul(b)), seoul(b))
	p := DefaultCancelRateParams()
	m := lc
	evals, withEvidence := 0, 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		m++
		for _, d := range lm.minute(m) {
			s.Add(d)
		}
		leaving := lm.minute(LeavingMinute(m))
		if le, ok := s.ExposureLeavingMinute(m); ok {
			leaving = append(leaving, lm.minute(le)...)
		}
		b.StartTimer()
		if err := s.Close(m, leaving); err != nil {
			b.Fatal(err)
		}
		// As the engine does: every evaluation offered to the dashboard's
		// ranking, none of them kept beyond it.
		evals, withEvidence = 0, 0
		r := NewRanker(p)
		s.EachCancelEval(p, nil, func(e *CancelEval) {
			evals++
			if e.Batch > 0 {
				withEvidence++
			}
			r.Offer(e)
		})
		if rk := r.Ranking(m, nil); len(rk.Risk) == 0 {
			b.Fatal("nothing ranked")
		}
	}
	b.ReportMetric(float64(evals), "evals/op")
	b.ReportMetric(float64(withEvidence), "judged/op")
}

// BenchmarkAdd measures applying one minute delta: mostly on time (open
// minutes), some late into H.
func BenchmarkAdd(b *testing.B) {
	lm := newLoadModel()
	lc := benchStart(b)
	s := NewState(lm.snapshot(lc, seoul(b)), seoul(b))
	rng := rand.New(rand.NewPCG(5, 5))
	var ds []window.Delta
	for i := range 1 << 16 {
		p := lm.patterns[i%len(lm.patterns)]
		d := p[rng.IntN(len(p))]
		d.Minute = lc + 1 + window.Minute(rng.IntN(2))
		if rng.IntN(50) == 0 {
			d.Minute = lc - window.Minute(rng.IntN(60))
		}
		ds = append(ds, d)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Add(ds[i&(1<<16-1)])
		i++
	}
	// One op is one delta, the window's per merchant-minute sum of events,
	// not one event: the unit says so, for comparison with the per-event
	// benchmarks of source and window.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/delta")
}

// BenchmarkVolumeEvals measures volume_drop for 1,000 large merchants.
func BenchmarkVolumeEvals(b *testing.B) {
	lc := benchStart(b)
	s := NewState(Snapshot{LastClosed: lc}, seoul(b))
	day, _ := s.NeedsVolumeDay(lc)
	v := VolumeDay{Day: day, Curves: map[int64]*Curve{}, Today: map[int64]int64{}}
	for i := range 1000 {
		c := &Curve{Sum7: 7_200_000_000}
		for j := range c.PerMinute7 {
			c.PerMinute7[j] = 5_000_000
		}
		v.Curves[int64(i)] = c
		v.Today[int64(i)] = int64(i) * 1_000_000
	}
	s.SetVolumeDay(v)
	p := DefaultVolumeDropParams()
	b.ReportAllocs()
	for b.Loop() {
		if n := len(s.VolumeEvals(p, nil)); n != 1000 {
			b.Fatal(n)
		}
	}
}

// TestMemoryFootprint logs what a State costs at SPEC §1's scale: 100,000
// merchants with a 7-day baseline, a full hour of minutes in H, and 1,000
// large-merchant curves. A report, not an assertion.
func TestMemoryFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100,000-merchant state")
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	lm := newLoadModel()
	lc := benchStart(t)
	cal := seoul(t)
	before := heap()
	// Built in closures so that the snapshot and the loaded day are garbage
	// when the heap is measured: only the State remains.
	s := func() *State { return NewState(lm.snapshot(lc, cal), cal) }()
	cancelOnly := heap()
	func() {
		day, _ := s.NeedsVolumeDay(lc)
		v := VolumeDay{Day: day, Curves: map[int64]*Curve{}, Today: map[int64]int64{}}
		for i := range 1000 {
			v.Curves[lm.merchants[i]] = &Curve{Sum7: 7_000_000_000}
		}
		s.SetVolumeDay(v)
	}()
	after := heap()
	evals := s.CancelEvals(DefaultCancelRateParams(), nil)
	t.Logf("State for %d merchants with a 7-day baseline (%d active in H, %d minute buckets of ~2,000): %.1f MiB; with 1,000 volume curves: %.1f MiB (%.1f KiB per curve)",
		s.Merchants(), len(evals), len(s.closed),
		float64(cancelOnly-before)/(1<<20), float64(after-before)/(1<<20), float64(after-cancelOnly)/1000/1024)
	runtime.KeepAlive(s)
	runtime.KeepAlive(lm) // freeing the load model mid-measurement would skew the figures
}

// BenchmarkPeakMinutes measures what the state keeps of each closed minute
// at a 5,000 TPS peak, where most of the 100,000 merchants sell in every
// minute: 1,000 top merchants with about 150 approvals a minute, 78,000
// others with one to three, one delta in a hundred with a cancel. One op
// fills the three recent hours (RecentMinutes closes); the heap the
// closed minutes hold is reported per minute, after a collection.
func BenchmarkPeakMinutes(b *testing.B) {
	lc := benchStart(b)
	cal := seoul(b)
	rng := rand.New(rand.NewPCG(7, 11))
	var peak []window.Delta
	for i := range benchMerchants {
		var a window.Agg
		switch {
		case i < 1000:
			a.Approvals = 100 + rng.Int64N(100)
		case rng.IntN(100) < 79:
			a.Approvals = 1 + rng.Int64N(3)
		default:
			continue
		}
		a.ApprovedAmount = a.Approvals * (10_000 + rng.Int64N(90_000))
		if rng.IntN(100) == 0 {
			a.Cancels = 1
			a.CanceledAmount = 25_000
		}
		peak = append(peak, window.Delta{Key: window.Key{Merchant: int64(10_000 + 3*i)}, Agg: a})
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var perMinute float64
	closes := 0
	for b.Loop() {
		b.StopTimer()
		s := NewState(Snapshot{LastClosed: lc}, cal)
		before := heap()
		b.StartTimer()
		for m := lc + 1; m <= lc+RecentMinutes; m++ {
			for _, d := range peak {
				d.Minute = m
				s.Add(d)
			}
			if err := s.Close(m, nil); err != nil {
				b.Fatal(err)
			}
			closes++
		}
		b.StopTimer()
		perMinute = float64(heap()-before) / RecentMinutes / (1 << 20)
		runtime.KeepAlive(s)
		b.StartTimer()
	}
	b.ReportMetric(perMinute, "heap-MiB/minute")
	b.ReportMetric(float64(len(peak)), "merchants/minute")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(closes)/1e6, "ms/minute")
}
