package rules

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Asia/Seoul without relying on the host's zoneinfo

	"github.com/riskwatch/riskwatch/internal/window"
)

func seoul(t testing.TB) window.Calendar {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	return window.NewCalendar(loc)
}

func minuteAt(t testing.TB, s string) window.Minute {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return window.MinuteOf(ts)
}

func TestLeavingMinute(t *testing.T) {
	m := window.Minute(1_000_000)
	// B(m) = [m-10139, m-60]; B(m-1) = [m-10140, m-61]: the one minute in
	// B(m-1) but not in B(m) is m-10140.
	if got, want := LeavingMinute(m), m-10140; got != want {
		t.Fatalf("LeavingMinute(%d) = %d, want %d", m, got, want)
	}
}

// randomDelta draws a delta for a minute of the given kind relative to the
// minute about to close, so every routing case of Add is exercised.
type deltaGen struct {
	rng       *rand.Rand
	merchants []int64
	scale     map[int64]int64
}

func (g *deltaGen) agg(id int64) window.Agg {
	a := window.Agg{Approvals: g.rng.Int64N(6), Cancels: 0}
	if g.rng.IntN(3) == 0 {
		a.Cancels = g.rng.Int64N(4)
	}
	a.ApprovedAmount = a.Approvals * (g.scale[id] + g.rng.Int64N(g.scale[id]))
	a.CanceledAmount = a.Cancels * g.scale[id]
	return a
}

func (g *deltaGen) delta(next window.Minute) window.Delta {
	last := next - 1
	var m window.Minute
	switch k := g.rng.IntN(20); {
	case k < 8:
		m = next // on time: the minute about to close
	case k < 10:
		m = next + 1 + window.Minute(g.rng.IntN(5)) // future, still open
	case k < 13:
		m = last - window.Minute(g.rng.IntN(60)) // late into H
	case k == 13:
		m = last - 59 // the minute about to move from H to B
	case k < 16:
		m = last - 60 - window.Minute(g.rng.IntN(10080)) // late into B
	case k == 16:
		m = LeavingMinute(next) // in B now, leaves at this very Close
	case k == 17:
		m = LeavingMinute(next) + 1 // leaves at the next Close
	default:
		m = last - 10140 - window.Minute(g.rng.IntN(2000)) // older than B (may be in a curve day)
	}
	id := g.merchants[g.rng.IntN(len(g.merchants))]
	return window.Delta{Key: window.Key{Merchant: id, Minute: m}, Agg: g.agg(id)}
}

// oracleRun drives a State through closes and compares every evaluation
// with the brute-force oracle.
type oracleRun struct {
	t        *testing.T
	sink     *fakeSink
	state    *State
	cp       CancelRateParams
	vp       VolumeDropParams
	prio     PriorityParams
	expo     int // exposure window, minutes
	curveSet map[int64]bool
	// coverage counters, so a test that stops exercising a branch fails
	cancelFires, cancelQuiet, platform, merchantBase int
	volFires, volQuiet, volLarge, dayChanges         int
	priorities                                       map[string]int // "cancel P1", "volume P3", …
}

// newOracleRun starts a State from the sink's snapshot at lc, with
// priority thresholds low enough for the random history to reach every
// priority.
func newOracleRun(t *testing.T, sink *fakeSink, lc window.Minute, expo int, cp CancelRateParams, vp VolumeDropParams) *oracleRun {
	r := &oracleRun{
		t: t, sink: sink, cp: cp, vp: vp, expo: expo,
		prio: PriorityParams{
			CancelDispersion: 0.1, CancelBatchWeight: 0.7, VolumeMinSpread: 0.05,
			CancelP1Evidence: 0.8, CancelP2Evidence: 0.3, VolumeP1Evidence: 0.6, VolumeP2Evidence: 0.2,
			P1MinExposure: 1_000_000,
		},
		priorities: map[string]int{},
	}
	r.state = NewState(sink.snapshot(lc, expo), sink.cal)
	r.state.SetPriorityParams(r.prio)
	return r
}

func (r *oracleRun) close(m window.Minute, also []int64) {
	t := r.t
	t.Helper()
	if day, needed := r.state.NeedsVolumeDay(m); needed {
		v := r.sink.volumeDay(day, r.state.LastClosed(), r.vp.LargeDailyAmount)
		r.curveSet = map[int64]bool{}
		for id := range v.Curves {
			r.curveSet[id] = true
		}
		r.state.SetVolumeDay(v)
		r.dayChanges++
	}
	leaving := r.sink.minute(LeavingMinute(m))
	if le, ok := r.state.ExposureLeavingMinute(m); ok {
		leaving = append(leaving, r.sink.minute(le)...)
	}
	if err := r.state.Close(m, leaving); err != nil {
		t.Fatal(err)
	}
	r.check(also)
}

// check compares the evaluations at LastClosed with the oracle's.
func (r *oracleRun) check(also []int64) {
	t := r.t
	t.Helper()
	m := r.state.LastClosed()
	gotC := r.state.CancelEvals(r.cp, also)
	wantC := r.sink.cancelEvals(r.cp, r.prio, r.expo, m, also)
	if !reflect.DeepEqual(gotC, wantC) {
		t.Fatalf("close %s: cancel evaluations differ\n got %s\nwant %s", m, dumpCancel(gotC), dumpCancel(wantC))
	}
	for _, e := range gotC {
		if e.Fires {
			r.cancelFires++
		} else {
			r.cancelQuiet++
		}
		if e.Priority != 0 {
			r.priorities["cancel "+e.Priority.String()]++
		}
		if e.BaselineSource == BaselinePlatform {
			r.platform++
		} else {
			r.merchantBase++
		}
	}
	gotV := r.state.VolumeEvals(r.vp, also)
	wantV := r.sink.volumeEvals(r.vp, r.prio, r.expo, m, r.curveSet, also)
	if !reflect.DeepEqual(gotV, wantV) {
		t.Fatalf("close %s: volume evaluations differ\n got %s\nwant %s", m, dumpVolume(gotV), dumpVolume(wantV))
	}
	for _, e := range gotV {
		if e.Large {
			r.volLarge++
		}
		if e.Priority != 0 {
			r.priorities["volume "+e.Priority.String()]++
		}
		if e.Fires {
			r.volFires++
		} else {
			r.volQuiet++
		}
	}
	if got, want := r.state.Merchants(), r.sink.activeMerchants(m); got != want {
		t.Fatalf("close %s: state holds %d merchants, %d have events in H or B", m, got, want)
	}
}

func dumpCancel(es []CancelEval) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "\n  %d fires=%v AH=%d CH=%d AB=%d CB=%d base=%v(%s) exposure=%d", e.Merchant, e.Fires, e.AH, e.CH, e.AB, e.CB, e.Baseline, e.BaselineSource, e.Exposure)
	}
	return b.String()
}

func dumpVolume(es []VolumeEval) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "\n  %d large=%v fires=%v daily=%v expected=%v today=%d", e.Merchant, e.Large, e.Fires, e.DailyAvg, e.Expected, e.Today)
	}
	return b.String()
}

// TestStateMatchesOracle starts a State from a snapshot of 8 days of random
// history in the middle of the night before a KST midnight, closes 200
// minutes with random on-time, open, late-H, late-B and too-old deltas, and
// compares every evaluation with the oracle.
func TestStateMatchesOracle(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			cal := seoul(t)
			rng := rand.New(rand.NewPCG(seed, 42))
			g := &deltaGen{rng: rng, scale: map[int64]int64{}}
			for i := range 40 {
				id := int64(1000 + 7*i)
				g.merchants = append(g.merchants, id)
				// amounts per approval from 1,000 to 10,000,000 KRW: some
				// merchants are large, most are not.
				g.scale[id] = []int64{1_000, 50_000, 1_000_000, 10_000_000}[i%4]
			}
			// 14:00 UTC = 23:00 KST: the 200 closes cross midnight KST.
			lc0 := minuteAt(t, "2024-03-04T14:00:00Z")
			sink := newFakeSink(cal)
			for m := lc0 - 8*1440 - 120; m <= lc0+5; m++ {
				for range rng.IntN(4) {
					id := g.merchants[rng.IntN(len(g.merchants))]
					sink.add(window.Delta{Key: window.Key{Merchant: id, Minute: m}, Agg: g.agg(id)})
				}
			}
			// Merchants new in H: nothing in B, so the snapshot's exposure
			// is all that tells the state what they have at stake.
			for i := range 3 {
				id := int64(5000 + i)
				g.scale[id] = 1_000_000
				for m := lc0 - 40; m <= lc0+5; m += 3 {
					sink.add(window.Delta{Key: window.Key{Merchant: id, Minute: m}, Agg: g.agg(id)})
				}
			}
			r := newOracleRun(t, sink, lc0, BaselineMinutes,
				CancelRateParams{MinBaselineApprovals: 1000, BaselineFloor: Ratio{1, 100}, MinCancels: 3, Multiplier: Ratio{3, 2}, MinApprovals: 10},
				VolumeDropParams{LargeDailyAmount: 20_000_000, MinExpectedFraction: Ratio{1, 20}, DropRatio: Ratio{1, 10}})
			for m := lc0 + 1; m <= lc0+200; m++ {
				for range rng.IntN(10) {
					d := g.delta(m)
					sink.add(d)
					r.state.Add(d)
				}
				var also []int64
				for range rng.IntN(4) {
					if rng.IntN(3) == 0 {
						also = append(also, 999_999) // a merchant the state never saw
					} else {
						also = append(also, g.merchants[rng.IntN(len(g.merchants))])
					}
				}
				if rng.IntN(3) == 0 {
					// Between closes too: late deltas must already count at
					// LastClosed, not only after the next Close.
					r.check(also)
				}
				r.close(m, also)
			}
			t.Logf("cancel fires %d quiet %d (platform %d merchant %d); volume large %d fires %d quiet %d; day loads %d; priorities %v",
				r.cancelFires, r.cancelQuiet, r.platform, r.merchantBase, r.volLarge, r.volFires, r.volQuiet, r.dayChanges, r.priorities)
			if r.cancelFires == 0 || r.cancelQuiet == 0 || r.platform == 0 || r.merchantBase == 0 ||
				r.volLarge == 0 || r.volFires == 0 || r.volQuiet == 0 || r.dayChanges != 2 ||
				r.priorities["cancel P1"] == 0 || r.priorities["cancel P2"] == 0 || r.priorities["cancel P3"] == 0 ||
				r.priorities["volume P1"] == 0 || r.priorities["volume P2"] == 0 {
				t.Fatal("the random history no longer exercises every branch; adjust the generator")
			}
		})
	}
}

// TestStateFullBaselineSpan closes more than H+B (10,140 minutes) for a few
// merchants with sparse data, so every minute enters H, moves to B and
// leaves B again through the leaving data, with late deltas throughout;
// afterwards no merchant has data in the windows and the state is empty.
func TestStateFullBaselineSpan(t *testing.T) {
	if testing.Short() {
		t.Skip("closes 12,500 minutes")
	}
	cal := seoul(t)
	rng := rand.New(rand.NewPCG(9, 10))
	g := &deltaGen{rng: rng, merchants: []int64{11, 22, 33, 44, 55}, scale: map[int64]int64{11: 1_000_000, 22: 2_000_000, 33: 10_000, 44: 5_000_000, 55: 100}}
	lc0 := minuteAt(t, "2024-05-01T03:00:00Z")
	sink := newFakeSink(cal)
	// A 50-hour exposure window: its minutes leave long before B's.
	r := newOracleRun(t, sink, lc0, 3000,
		CancelRateParams{MinBaselineApprovals: 20, BaselineFloor: Ratio{1, 500}, MinCancels: 2, Multiplier: Ratio{2, 1}, MinApprovals: 5},
		VolumeDropParams{LargeDailyAmount: 1_000_000, MinExpectedFraction: Ratio{1, 20}, DropRatio: Ratio{1, 2}})
	const active = 2300 // data only at first: then the windows drain
	end := lc0 + active + HourMinutes + BaselineMinutes + 20
	for m := lc0 + 1; m <= end; m++ {
		if m <= lc0+active && rng.IntN(4) == 0 {
			d := g.delta(m)
			sink.add(d)
			r.state.Add(d)
		}
		r.close(m, nil)
	}
	if n := r.state.Merchants(); n != 0 {
		t.Fatalf("after every minute left B the state still holds %d merchants", n)
	}
	if a, c := r.state.PlatformBaseline(); a != 0 || c != 0 {
		t.Fatalf("platform baseline %d/%d after everything left B", a, c)
	}
	if n := len(r.state.open) + len(r.state.closed); n > 6 { // only open-minute buckets may remain
		t.Fatalf("%d minute buckets kept", n)
	}
	t.Logf("cancel fires %d quiet %d; volume large %d fires %d; day loads %d", r.cancelFires, r.cancelQuiet, r.volLarge, r.volFires, r.dayChanges)
	if r.cancelFires == 0 || r.volFires == 0 || r.dayChanges < 8 {
		t.Fatal("the sparse history no longer exercises the rules; adjust the generator")
	}
}

// TestStateArrivalOrder: the same deltas added in any order, split
// differently, give the same evaluations (a backtest replays stored minutes
// in one piece, the live run sees them in many flushes).
func TestStateArrivalOrder(t *testing.T) {
	cal := seoul(t)
	lc := minuteAt(t, "2024-03-04T05:00:00Z")
	var ds []window.Delta
	rng := rand.New(rand.NewPCG(11, 12))
	for range 300 {
		ds = append(ds, window.Delta{
			Key: window.Key{Merchant: int64(1 + rng.IntN(5)), Minute: lc - window.Minute(rng.IntN(10300)) + 3},
			Agg: window.Agg{Approvals: rng.Int64N(5), ApprovedAmount: rng.Int64N(1e6), Cancels: rng.Int64N(3)},
		})
	}
	run := func(order []window.Delta, split bool) ([]CancelEval, []VolumeEval) {
		s := NewState(Snapshot{LastClosed: lc}, cal)
		day, _ := s.NeedsVolumeDay(lc + 1)
		s.SetVolumeDay(VolumeDay{Day: day, Curves: map[int64]*Curve{1: {Sum7: 7e9}, 3: {Sum7: 7e9}}})
		for _, d := range order {
			if split { // the same delta as two flushes
				h := d
				h.Approvals, h.ApprovedAmount, h.Cancels = d.Approvals/2, d.ApprovedAmount/2, d.Cancels/2
				d.Approvals, d.ApprovedAmount, d.Cancels = d.Approvals-h.Approvals, d.ApprovedAmount-h.ApprovedAmount, d.Cancels-h.Cancels
				s.Add(h)
			}
			s.Add(d)
		}
		for m := lc + 1; m <= lc+3; m++ {
			if err := s.Close(m, nil); err != nil {
				t.Fatal(err)
			}
		}
		return s.CancelEvals(DefaultCancelRateParams(), []int64{4}), s.VolumeEvals(DefaultVolumeDropParams(), nil)
	}
	wantC, wantV := run(ds, false)
	for i := range 5 {
		shuffled := append([]window.Delta(nil), ds...)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		gotC, gotV := run(shuffled, i%2 == 1)
		if !reflect.DeepEqual(gotC, wantC) || !reflect.DeepEqual(gotV, wantV) {
			t.Fatalf("order %d: evaluations differ", i)
		}
	}
}

func TestCloseErrors(t *testing.T) {
	cal := seoul(t)
	lc := minuteAt(t, "2024-03-04T05:00:00Z")
	newState := func() *State {
		s := NewState(Snapshot{LastClosed: lc, Baseline: []MerchantSums{{Merchant: 1, Approvals: 10}}}, cal)
		s.Add(window.Delta{Key: window.Key{Merchant: 1, Minute: lc + 1}, Agg: window.Agg{Approvals: 3}})
		return s
	}
	tests := []struct {
		name    string
		prepare func(*State)
		m       window.Minute
		leaving []window.Delta
		wantErr string
	}{
		{name: "skipping a minute", m: lc + 2, wantErr: "the next minute to close is"},
		{name: "closing again", m: lc, wantErr: "the next minute to close is"},
		{name: "leaving data of another minute", m: lc + 1,
			leaving: []window.Delta{{Key: window.Key{Merchant: 1, Minute: LeavingMinute(lc + 1)}}, {Key: window.Key{Merchant: 1, Minute: LeavingMinute(lc + 2)}}},
			wantErr: "leaving delta of merchant 1"},
		{name: "stale volume day", m: lc + 1, wantErr: "call SetVolumeDay",
			prepare: func(s *State) { s.SetVolumeDay(VolumeDay{Day: time.Date(2024, 3, 3, 0, 0, 0, 0, time.UTC)}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newState()
			if tt.prepare != nil {
				tt.prepare(s)
			}
			err := s.Close(tt.m, tt.leaving)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Close: %v, want an error containing %q", err, tt.wantErr)
			}
			// Nothing changed: the held minute is still open, B untouched.
			if s.LastClosed() != lc {
				t.Fatalf("LastClosed moved to %s", s.LastClosed())
			}
			if a, _ := s.PlatformBaseline(); a != 10 {
				t.Fatalf("platform approvals %d, want 10", a)
			}
			if evals := s.CancelEvals(DefaultCancelRateParams(), nil); len(evals) != 0 {
				t.Fatalf("open minute counted in H: %+v", evals)
			}
		})
	}
}

// TestSnapshotRouting checks NewState's reading of a snapshot by hand.
func TestSnapshotRouting(t *testing.T) {
	lc := window.Minute(50_000_000)
	d := func(id int64, m window.Minute, a, c int64) window.Delta {
		return window.Delta{Key: window.Key{Merchant: id, Minute: m}, Agg: window.Agg{Approvals: a, Cancels: c}}
	}
	s := NewState(Snapshot{
		LastClosed: lc,
		Recent: []window.Delta{
			d(1, lc, 2, 1),     // H
			d(1, lc-59, 3, 0),  // H (oldest minute of H)
			d(1, lc+1, 100, 0), // open: not in H yet
			d(1, lc-60, 50, 0), // not in H: B is given by Baseline only, so ignored
			d(2, lc-5, 0, 4),   // H
		},
		Baseline: []MerchantSums{{1, 1000, 10}, {3, 500, 5}},
	}, window.Calendar{})
	got := s.CancelEvals(DefaultCancelRateParams(), []int64{3})
	// merchant 1: AH = 2+3 = 5, CH = 1, AB = 1000, CB = 10.
	// merchant 2: AH = 0, CH = 4, no B (platform 15/1500).
	// merchant 3: only via also, B 500/5.
	want := []struct{ id, ah, ch, ab, cb int64 }{{1, 5, 1, 1000, 10}, {2, 0, 4, 0, 0}, {3, 0, 0, 500, 5}}
	if len(got) != len(want) {
		t.Fatalf("got %s", dumpCancel(got))
	}
	for i, w := range want {
		g := got[i]
		if g.Merchant != w.id || g.AH != w.ah || g.CH != w.ch || g.AB != w.ab || g.CB != w.cb {
			t.Fatalf("eval %d: got %s, want %+v", i, dumpCancel(got[i:i+1]), w)
		}
	}
	if a, c := s.PlatformBaseline(); a != 1500 || c != 15 {
		t.Fatalf("platform %d/%d, want 1500/15", a, c)
	}
	// Closing lc+1 brings the held 100 approvals into H and moves lc-59's 3
	// approvals into B: AH = 5 - 3 + 100 = 102, AB = 1003.
	if err := s.Close(lc+1, nil); err != nil {
		t.Fatal(err)
	}
	got = s.CancelEvals(DefaultCancelRateParams(), nil)
	if got[0].AH != 102 || got[0].AB != 1003 {
		t.Fatalf("after close: %s", dumpCancel(got))
	}
}

// TestEvictionWhileListed: a merchant remembered in the evaluation list is
// evicted (its hour and week both drain while nobody evaluates), its slab
// slot is reused by another merchant, and it comes back. Evaluations must
// follow merchants, not slots.
func TestEvictionWhileListed(t *testing.T) {
	lc := window.Minute(60_000_000)
	s := NewState(Snapshot{LastClosed: lc}, window.Calendar{})
	add := func(id int64, m window.Minute, a, c int64) window.Delta {
		d := window.Delta{Key: window.Key{Merchant: id, Minute: m}, Agg: window.Agg{Approvals: a, Cancels: c}}
		s.Add(d)
		return d
	}
	first := add(5, lc+1, 2, 1)
	if err := s.Close(lc+1, nil); err != nil {
		t.Fatal(err)
	}
	if ev := s.CancelEvals(DefaultCancelRateParams(), nil); len(ev) != 1 || ev[0].Merchant != 5 || ev[0].AH != 2 {
		t.Fatalf("before: %s", dumpCancel(ev))
	}
	// Close through the minute where lc+1 leaves B, without evaluating.
	for m := lc + 2; m <= lc+1+HourMinutes+BaselineMinutes; m++ {
		var leaving []window.Delta
		if LeavingMinute(m) == first.Minute {
			leaving = []window.Delta{first}
		}
		if err := s.Close(m, leaving); err != nil {
			t.Fatal(err)
		}
	}
	if s.Merchants() != 0 {
		t.Fatalf("merchant 5 not evicted: %d merchants", s.Merchants())
	}
	last := s.LastClosed()
	add(6, last, 0, 7) // late into H: takes merchant 5's old slot
	add(5, last, 1, 0) // merchant 5 again, in a new slot
	got := s.CancelEvals(DefaultCancelRateParams(), []int64{5, 6, 6})
	// 5: AH 1, CH 0; 6: AH 0, CH 7 (≥ 5, need 2 × 0.002 × 20 = 0.08 → fires).
	if len(got) != 2 || got[0].Merchant != 5 || got[0].AH != 1 || got[0].CH != 0 || got[0].Fires ||
		got[1].Merchant != 6 || got[1].CH != 7 || !got[1].Fires {
		t.Fatalf("after: %s", dumpCancel(got))
	}
}

// TestSetPlatformBaseline: a state holding only some merchants (a worker's)
// takes the platform-wide baseline it is given instead of its own sums.
// Merchant 9 has 6 cancels and no history, so the platform rate decides:
// from the state's own merchant 1 (10/1,000 = 1%) the line is 2 × 0.01 × 20
// = 0.4 cancels and it fires; given 20,000/100,000 = 20% the line is 8 and
// it does not.
func TestSetPlatformBaseline(t *testing.T) {
	lc := minuteAt(t, "2026-11-25T12:00:00Z")
	s := NewState(Snapshot{
		LastClosed: lc,
		Baseline:   []MerchantSums{{Merchant: 1, Approvals: 1000, Cancels: 10}},
		Recent:     []window.Delta{{Key: window.Key{Merchant: 9, Minute: lc - 3}, Agg: window.Agg{Cancels: 6, CanceledAmount: 600}}},
	}, window.Calendar{})
	eval9 := func() CancelEval {
		for _, e := range s.CancelEvals(DefaultCancelRateParams(), nil) {
			if e.Merchant == 9 {
				return e
			}
		}
		t.Fatal("merchant 9 not evaluated")
		return CancelEval{}
	}
	if e := eval9(); !e.Fires || e.BaselineSource != BaselinePlatform || e.Baseline != 0.01 {
		t.Fatalf("own platform sums: %s", dumpCancel([]CancelEval{e}))
	}
	s.SetPlatformBaseline(100_000, 20_000)
	if a, c := s.PlatformBaseline(); a != 100_000 || c != 20_000 {
		t.Fatalf("PlatformBaseline() = %d/%d after setting 100000/20000", a, c)
	}
	if e := eval9(); e.Fires || e.BaselineSource != BaselinePlatform || e.Baseline != 0.2 {
		t.Fatalf("given platform sums: %s", dumpCancel([]CancelEval{e}))
	}
}

// CancelEvals collects EachCancelEval's evaluations, each with its own
// floats, for the tests to compare.
func (s *State) CancelEvals(p CancelRateParams, also []int64) []CancelEval {
	out := make([]CancelEval, 0, len(s.listed)+len(also))
	s.EachCancelEval(p, also, func(e *CancelEval) {
		c := *e
		if c.RateH != nil {
			c.RateH = new(*c.RateH)
		}
		if c.Ratio != nil {
			c.Ratio = new(*c.Ratio)
		}
		out = append(out, c)
	})
	return out
}
