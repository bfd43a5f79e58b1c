package bench

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/pgserver"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/sim"
)

var cluster *pgtest.Cluster

// burnEnv makes the test binary, started again by TestTreeCPUCountsReapedChildren,
// burn CPU and exit instead of running tests.
const burnEnv = "RISKWATCH_BENCH_BURN_CPU"

func TestMain(m *testing.M) {
	if os.Getenv(burnEnv) != "" {
		burnCPU(300 * time.Millisecond)
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m, &cluster))
}

// The evaluated minute: M = 05:29 UTC = 14:29 in Seoul on business day
// 2026-11-20. So H = [04:30, 05:30) UTC, B = [2026-11-13 04:30, 2026-11-20
// 04:30) UTC, D−7 … D−1 = 13 … 19 November (Seoul), t = 14:30.
var (
	testMinute = time.Date(2026, 11, 20, 5, 29, 0, 0, time.UTC)
	hStart     = time.Date(2026, 11, 20, 4, 30, 0, 0, time.UTC)
	mEnd       = time.Date(2026, 11, 20, 5, 30, 0, 0, time.UTC)
	bStart     = time.Date(2026, 11, 13, 4, 30, 0, 0, time.UTC)
)

func seoul(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

type txRow struct {
	merchant int64
	at       time.Time
	amount   int64
}

// dataset is the hand-built source content: approvals and cancellations.
type dataset struct{ payments, cancels []txRow }

func (d *dataset) pay(m int64, at time.Time, amount int64) {
	d.payments = append(d.payments, txRow{m, at, amount})
}

func (d *dataset) cancel(m int64, at time.Time) { d.cancels = append(d.cancels, txRow{m, at, 10_000}) }

// spread adds n rows evenly over [from, from+span), the first at from.
func spread(n int, from time.Time, span time.Duration, add func(time.Time)) {
	for i := range n {
		add(from.Add(span * time.Duration(i) / time.Duration(n)))
	}
}

// cancelMerchant adds aB approvals and cB cancels inside B (in its last
// 1,000 minutes, away from both edges) and aH approvals and cH cancels over H.
func (d *dataset) cancelMerchant(m int64, aB, cB, aH, cH int) {
	week := 1000 * time.Minute
	spread(aB, hStart.Add(-week), week, func(at time.Time) { d.pay(m, at, 10_000) })
	spread(cB, hStart.Add(-week+30*time.Second), week, func(at time.Time) { d.cancel(m, at) })
	spread(aH, hStart, time.Hour, func(at time.Time) { d.pay(m, at, 10_000) })
	spread(cH, hStart, time.Hour, func(at time.Time) { d.cancel(m, at) })
}

// The cases and their hand-worked outcomes at testMinute with SPEC's
// defaults (floor 0.002, ×2, min_cancels 5, min_approvals 20, own baseline
// from 100 approvals; large from 7e9 KRW over 7 days, expected ≥ 5% of the
// daily average, fires at today ≤ 50% of expected).
//
// cancel_rate_spike (ids 1xx). The platform's B, the fallback baseline, holds
// 9,400 approvals and 94 cancels, a rate of exactly 0.01: 5,599 approvals and
// the 94 cancels of these merchants, 148 approvals of the volume merchants
// (their rows from 13:30 on 13 November through 13:30 today, local time) and
// 3,653 of merchant 300, which has nothing in H.
//
//	101 1h rate 10× its 7-day rate: B 1000 a/10 c (0.01), H 100 a/10 c: 10 ≥ 2·0.01·100 = 2          fires
//	102 1h rate exactly 2×: B 1000/10, H 250 a/5 c (one cancel at exactly start(H)): 5 ≥ 5            fires
//	103 just below 2×: B 1000/10, H 251 a/5 c, one more cancel at exactly end(M) (not in H): 5 < 5.02  no
//	104 99 approvals in B (+1 a microsecond before B, outside): platform baseline 0.01,
//	    H 20 a/5 c: 5 ≥ 2·0.01·20 = 0.4; its own 30/99 would need 12.1                               fires
//	105 100 approvals in B (one at exactly start(B)): own baseline 30/100, H 20/5: 5 < 12              no
//	106 bust-out: B 200/2, H 0 a/5 c: 5 ≥ 2·0.01·max(0, 20) = 0.4                                    fires
//	107 bust-out below min_cancels: B 200/2, H 0 a/4 c                                              no
//	108 no cancels in B, so eff = floor 0.002: H 1250 a/5 c: 5 ≥ 2·0.002·1250 = 5                   fires
//	109 same floor, H 1251 a/5 c: 5 < 5.004                                                         no
//	110 new merchant, nothing in B: platform baseline 0.01, H 250 a/5 c: 5 ≥ 2·0.01·250 = 5            fires
//	111 as 110 with H 251 a/5 c: 5 < 5.02                                                            no
//
// volume_drop (ids 2xx), amounts per history day D−7 … D−1 at local times;
// "silent" = no approval today.
//
//	201 1e9 at 10:00 + 1e9 at 20:00 (avg 2e9, expected 1e9); today 3e8 at 09:00 and 1e10 at
//	    exactly 14:30 = end(M) (not counted): 7·3e8 ≤ 0.5·7e9                                       fires
//	202 as 201, silent                                                                              fires
//	203 as 201, today 5e8 at exactly 00:00 of D: 7·5e8 = 3.5e9 ≤ 3.5e9 (a drop of exactly 50%)        fires
//	204 as 201, today 5e8+1: 3.5e9+7 > 3.5e9                                                        no
//	205 5e8 at 10:00 (00:00 exactly on D−7) + 5e8 at 20:00: avg exactly 1e9, large; silent           fires
//	206 as 205 but 1 KRW less on D−1 (avg just under 1e9, not large), plus 1 KRW at 23:59:59.999999
//	    of D−8 (outside the week); silent, a 100% drop of a small merchant                          no
//	207 2e9 at 20:00: nothing expected by 14:30; silent                                             no
//	208 1e8 at 10:00 + 1.9e9 at 20:00: expected 1e8 = exactly 5% of 2e9; silent                      fires
//	209 1e8−1 at 10:00 + 1.9e9+1 at 20:00: expected just under 5%; silent                           no
//	210 1e9 at 14:29:59.999999 + 1e9 at 23:00: expected 1e9 (the last instant before t counts); silent fires
//	211 1e9 at 10:00 + 1e9 at exactly 14:30 (not before t): expected 1e9; today 5e8+1                no
//	212 1e8 at 12:00 (small); silent                                                                no
var (
	wantCancel = []int64{101, 102, 104, 106, 108, 110}
	wantVolume = []int64{201, 202, 203, 205, 208, 210}
)

func seedDataset(loc *time.Location) *dataset {
	d := &dataset{}
	d.cancelMerchant(101, 1000, 10, 100, 10)
	d.cancelMerchant(102, 1000, 10, 250, 5)
	d.cancelMerchant(103, 1000, 10, 251, 5)
	d.cancel(103, mEnd)
	d.cancelMerchant(104, 99, 30, 20, 5)
	d.pay(104, bStart.Add(-time.Microsecond), 10_000)
	d.cancelMerchant(105, 99, 30, 20, 5)
	d.pay(105, bStart, 10_000)
	d.cancelMerchant(106, 200, 2, 0, 5)
	d.cancelMerchant(107, 200, 2, 0, 4)
	d.cancelMerchant(108, 1000, 0, 1250, 5)
	d.cancelMerchant(109, 1000, 0, 1251, 5)
	d.cancelMerchant(110, 0, 0, 250, 5)
	d.cancelMerchant(111, 0, 0, 251, 5)
	d.cancelMerchant(300, 3653, 0, 0, 0)

	// at is day D+day (day ≤ 0) at the local time hh:mm:ss.µs.
	at := func(day, hh, mm, ss, us int) time.Time {
		return time.Date(2026, 11, 20+day, hh, mm, ss, us*1000, loc)
	}
	history := func(m int64, hh, mm, ss, us int, amount int64) {
		for day := -7; day <= -1; day++ {
			d.pay(m, at(day, hh, mm, ss, us), amount)
		}
	}
	for _, m := range []int64{201, 202, 203, 204} {
		history(m, 10, 0, 0, 0, 1e9)
		history(m, 20, 0, 0, 0, 1e9)
	}
	d.pay(201, at(0, 9, 0, 0, 0), 3e8)
	d.pay(201, at(0, 14, 30, 0, 0), 1e10)
	d.pay(203, at(0, 0, 0, 0, 0), 5e8)
	d.pay(204, at(0, 9, 0, 0, 0), 5e8+1)

	d.pay(205, at(-7, 0, 0, 0, 0), 5e8)
	for day := -6; day <= -1; day++ {
		d.pay(205, at(day, 10, 0, 0, 0), 5e8)
	}
	history(205, 20, 0, 0, 0, 5e8)
	for day := -7; day <= -1; day++ {
		d.pay(206, at(day, 10, 0, 0, 0), 5e8)
		amount := int64(5e8)
		if day == -1 {
			amount-- // 1 KRW short of large
		}
		d.pay(206, at(day, 20, 0, 0, 0), amount)
	}
	d.pay(206, at(-8, 23, 59, 59, 999_999), 1)
	history(207, 20, 0, 0, 0, 2e9)
	history(208, 10, 0, 0, 0, 1e8)
	history(208, 20, 0, 0, 0, 19e8)
	history(209, 10, 0, 0, 0, 1e8-1)
	history(209, 20, 0, 0, 0, 19e8+1)
	history(210, 14, 29, 59, 999_999, 1e9)
	history(210, 23, 0, 0, 0, 1e9)
	history(211, 10, 0, 0, 0, 1e9)
	history(211, 14, 30, 0, 0, 1e9)
	d.pay(211, at(0, 11, 0, 0, 0), 5e8+1)
	history(212, 12, 0, 0, 0, 1e8)
	return d
}

func newSource(t *testing.T, d *dataset) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, cluster.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, sim.Schema); err != nil {
		t.Fatalf("creating the source schema: %v", err)
	}
	var id int64
	var ps, cs [][]any
	for _, p := range d.payments {
		id++
		ps = append(ps, []any{id, p.merchant, p.amount, "DONE", p.at})
	}
	for _, c := range d.cancels {
		id++
		// payment_id only needs to be non-null: the rules never join on it.
		cs = append(cs, []any{id, id, c.merchant, c.amount, c.at})
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"payments"}, []string{"id", "merchant_id", "amount", "status", "approved_at"}, pgx.CopyFromRows(ps)); err != nil {
		t.Fatalf("loading payments: %v", err)
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"payment_cancels"}, []string{"id", "payment_id", "merchant_id", "cancel_amount", "canceled_at"}, pgx.CopyFromRows(cs)); err != nil {
		t.Fatalf("loading payment_cancels: %v", err)
	}
	return pool
}

// each calls pay for every approval and cancel for every cancellation.
func (d *dataset) each(pay, cancel func(txRow)) {
	for _, r := range d.payments {
		pay(r)
	}
	for _, r := range d.cancels {
		cancel(r)
	}
}

// engineFiring evaluates both rules at minute m with the engine's own rule
// code, rules.EvalCancelRate and rules.EvalVolumeDrop, on window sums taken
// from the rows (one pass of each) with plain Go. The windows are the
// engine's: H the hour ending with M, B the 10,080 minutes before, and for
// volume_drop the business days of p.Location with the wall-clock minute
// of day.
func engineFiring(t testing.TB, each func(pay, cancel func(txRow)), p BaselineParams, m time.Time) (cancel, volume []int64) {
	t.Helper()
	ratio := func(f float64) rules.Ratio {
		r, err := rules.RatioFromFloat(f)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cp := rules.CancelRateParams{MinBaselineApprovals: p.MinBaselineApprovals, BaselineFloor: ratio(p.BaselineFloor),
		MinCancels: p.MinCancels, Multiplier: ratio(p.Multiplier), MinApprovals: p.MinApprovals}
	vp := rules.VolumeDropParams{LargeDailyAmount: p.LargeDailyAmount, MinExpectedFraction: ratio(p.MinExpectedFraction),
		DropRatio: ratio(p.DropRatio)}

	end := m.Add(time.Minute)
	h0 := end.Add(-time.Hour)
	b0 := h0.Add(-7 * 24 * time.Hour)
	local := m.In(p.Location)
	y, mo, dd := local.Date()
	day0 := time.Date(y, mo, dd, 0, 0, 0, 0, p.Location)
	week0 := time.Date(y, mo, dd-7, 0, 0, 0, 0, p.Location)
	tod := local.Hour()*60 + local.Minute() + 1

	in := func(at, from, to time.Time) bool { return !at.Before(from) && at.Before(to) }
	ci := map[int64]*rules.CancelInput{}
	vi := map[int64]*rules.VolumeInput{}
	var platA, platC int64
	cin := func(id int64) *rules.CancelInput {
		if ci[id] == nil {
			ci[id] = &rules.CancelInput{}
		}
		return ci[id]
	}
	vin := func(id int64) *rules.VolumeInput {
		if vi[id] == nil {
			vi[id] = &rules.VolumeInput{}
		}
		return vi[id]
	}
	each(func(r txRow) {
		switch {
		case in(r.at, h0, end):
			cin(r.merchant).AH++
		case in(r.at, b0, h0):
			cin(r.merchant).AB++
			platA++
		}
		switch {
		case in(r.at, week0, day0):
			v := vin(r.merchant)
			v.Sum7 += r.amount
			if l := r.at.In(p.Location); l.Hour()*60+l.Minute() < tod {
				v.Prefix7 += r.amount
			}
		case in(r.at, day0, end):
			vin(r.merchant).Today += r.amount
		}
	}, func(r txRow) {
		switch {
		case in(r.at, h0, end):
			cin(r.merchant).CH++
		case in(r.at, b0, h0):
			cin(r.merchant).CB++
			platC++
		}
	})

	for id, c := range ci {
		c.PlatformAB, c.PlatformCB = platA, platC
		// The engine evaluates merchants with an event in H (and open alerts,
		// which a single evaluation has none of).
		if (c.AH > 0 || c.CH > 0) && rules.EvalCancelRate(cp, *c).Fires {
			cancel = append(cancel, id)
		}
	}
	for id, v := range vi {
		if rules.EvalVolumeDrop(vp, *v).Fires {
			volume = append(volume, id)
		}
	}
	slices.Sort(cancel)
	slices.Sort(volume)
	return cancel, volume
}

func TestRunBaseline(t *testing.T) {
	ctx := context.Background()
	loc := seoul(t)
	d := seedDataset(loc)
	pool := newSource(t, d)
	if err := PrepareBaseline(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := PrepareBaseline(ctx, pool); err != nil {
		t.Fatalf("a second PrepareBaseline: %v", err)
	}
	pid, err := pgserver.PostmasterPID(cluster.Dir)
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultBaselineParams(loc)
	p.ServerPID = pid

	run, err := RunBaseline(ctx, pool, p, testMinute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cancel_rate_spike %v in %v, volume_drop %v in %v, server CPU %v",
		run.CancelFiring, run.CancelDur, run.VolumeFiring, run.VolumeDur, run.SourceCPU)
	if !slices.Equal(run.CancelFiring, wantCancel) {
		t.Errorf("cancel_rate_spike fires for %v, want %v", run.CancelFiring, wantCancel)
	}
	if !slices.Equal(run.VolumeFiring, wantVolume) {
		t.Errorf("volume_drop fires for %v, want %v", run.VolumeFiring, wantVolume)
	}
	if !run.Minute.Equal(testMinute) || run.CancelDur <= 0 || run.VolumeDur <= 0 || run.SourceCPU < 0 {
		t.Errorf("run = %+v: want the minute, positive durations and a non-negative CPU time", run)
	}

	// The platform sums the hand-worked answer assumes.
	var platA, platC int
	for _, r := range d.payments {
		if !r.at.Before(bStart) && r.at.Before(hStart) {
			platA++
		}
	}
	for _, r := range d.cancels {
		if !r.at.Before(bStart) && r.at.Before(hStart) {
			platC++
		}
	}
	if platA != 9400 || platC != 94 {
		t.Errorf("B holds %d approvals and %d cancels, the hand-worked cases assume 9400 and 94", platA, platC)
	}

	// The hand-worked answer is also the engine's, and the two keep agreeing
	// at other minutes: the next one (the 14:30 rows enter), the first and
	// the last minute of D (t = 00:01 and 24:00), 11:30 local (H and B
	// shift), and the first minute of the following day.
	c, v := engineFiring(t, d.each, p, testMinute)
	if !slices.Equal(c, wantCancel) || !slices.Equal(v, wantVolume) {
		t.Errorf("the engine's rule code fires %v and %v at %s, the hand-worked answer is %v and %v", c, v, testMinute, wantCancel, wantVolume)
	}
	for _, m := range []time.Time{
		testMinute.Add(time.Minute),
		time.Date(2026, 11, 20, 0, 0, 0, 0, loc),
		time.Date(2026, 11, 20, 23, 59, 0, 0, loc),
		time.Date(2026, 11, 20, 11, 30, 0, 0, loc),
		time.Date(2026, 11, 21, 0, 0, 0, 0, loc),
	} {
		run, err := RunBaseline(ctx, pool, p, m)
		if err != nil {
			t.Fatal(err)
		}
		c, v := engineFiring(t, d.each, p, m)
		if !slices.Equal(run.CancelFiring, c) || !slices.Equal(run.VolumeFiring, v) {
			t.Errorf("at %s the SQL fires %v and %v, the engine's rule code %v and %v", m, run.CancelFiring, run.VolumeFiring, c, v)
		}
	}

	// Other thresholds go through as exact decimals: a floor of 0.0025
	// makes 108's threshold 6.25 and 109's 6.255, a drop ratio of 0.7
	// leaves only 201 (7·3e8 = 0.3·7e9 exactly) and the silent merchants.
	p2 := p
	p2.BaselineFloor, p2.DropRatio = 0.0025, 0.7
	run, err = RunBaseline(ctx, pool, p2, testMinute)
	if err != nil {
		t.Fatal(err)
	}
	c, v = engineFiring(t, d.each, p2, testMinute)
	if !slices.Equal(run.CancelFiring, c) || !slices.Equal(run.VolumeFiring, v) {
		t.Errorf("with floor 0.0025 and drop 0.7 the SQL fires %v and %v, the engine's rule code %v and %v", run.CancelFiring, run.VolumeFiring, c, v)
	}
	if want := []int64{101, 102, 104, 106, 110}; !slices.Equal(run.CancelFiring, want) {
		t.Errorf("with floor 0.0025 cancel_rate_spike fires for %v, want %v", run.CancelFiring, want)
	}
	if want := []int64{201, 202, 205, 208, 210}; !slices.Equal(run.VolumeFiring, want) {
		t.Errorf("with drop ratio 0.7 volume_drop fires for %v, want %v", run.VolumeFiring, want)
	}

	// With min_expected_fraction 0, 209 (expected just under 5%) fires, and
	// 207, with nothing expected by 14:30, still does not.
	p3 := p
	p3.MinExpectedFraction = 0
	run, err = RunBaseline(ctx, pool, p3, testMinute)
	if err != nil {
		t.Fatal(err)
	}
	c, v = engineFiring(t, d.each, p3, testMinute)
	if want := []int64{201, 202, 203, 205, 208, 209, 210}; !slices.Equal(run.VolumeFiring, want) || !slices.Equal(v, want) {
		t.Errorf("with min_expected_fraction 0 volume_drop fires for %v (the engine's rule code: %v), want %v", run.VolumeFiring, v, want)
	}
}

func TestRunBaselineRejects(t *testing.T) {
	ctx := context.Background()
	pool := newSource(t, &dataset{})
	p := DefaultBaselineParams(seoul(t))
	if _, err := RunBaseline(ctx, pool, p, testMinute.Add(time.Second)); err == nil {
		t.Error("a minute not on a minute boundary was accepted")
	}
	p.MinCancels = 0
	if _, err := RunBaseline(ctx, pool, p, testMinute); err == nil {
		t.Error("min_cancels 0 was accepted")
	}
	if _, err := RunBaseline(ctx, pool, DefaultBaselineParams(nil), testMinute); err == nil {
		t.Error("a missing time zone was accepted")
	}
	run, err := RunBaseline(ctx, pool, DefaultBaselineParams(seoul(t)), testMinute)
	if err != nil || len(run.CancelFiring) != 0 || len(run.VolumeFiring) != 0 {
		t.Errorf("empty source: %+v, %v", run, err)
	}
}

// burnCPU spins for d of CPU time (not wall time).
func burnCPU(d time.Duration) {
	start, _ := ProcCPU(os.Getpid())
	x := 1
	for i := 0; ; i++ {
		x = x*31 + i
		if i%1_000_000 == 0 {
			if now, _ := ProcCPU(os.Getpid()); now-start >= d {
				break
			}
		}
	}
	if x == 42 {
		println() // keeps the loop from being optimised away
	}
}

func TestProcCPU(t *testing.T) {
	self := os.Getpid()
	c0, err := ProcCPU(self)
	if err != nil {
		t.Fatal(err)
	}
	burnCPU(200 * time.Millisecond)
	c1, err := ProcCPU(self)
	if err != nil {
		t.Fatal(err)
	}
	if c1-c0 < 200*time.Millisecond {
		t.Errorf("cpu time went from %v to %v after burning 200ms", c0, c1)
	}
	tree, err := TreeCPU(self)
	if err != nil {
		t.Fatal(err)
	}
	if tree < c1 {
		t.Errorf("TreeCPU %v < ProcCPU %v", tree, c1)
	}
	rss, err := ProcRSS(self)
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || rss > 1<<40 {
		t.Errorf("rss = %d bytes", rss)
	}
	if _, err := ProcCPU(-1); err == nil {
		t.Error("ProcCPU(-1) succeeded")
	}
	if _, err := TreeCPU(-1); err == nil {
		t.Error("TreeCPU(-1) succeeded")
	}
}

// A child that ran and was reaped is gone from /proc; its CPU must still
// count, through our cutime (PostgreSQL's parallel workers are such children).
func TestTreeCPUCountsReapedChildren(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	before, err := TreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), burnEnv+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	after, err := TreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if child < 300*time.Millisecond || after-before < child-2*tick {
		t.Errorf("the child used %v; the tree's CPU went from %v to %v", child, before, after)
	}
}

func TestServerCPU(t *testing.T) {
	ctx := context.Background()
	pid, err := pgserver.PostmasterPID(cluster.Dir)
	if err != nil {
		t.Fatal(err)
	}
	// One connection, so the busy query runs in the backend we watch.
	conn, err := pgx.Connect(ctx, cluster.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		t.Fatal(err)
	}
	if s, err := readStat(backend); err != nil || s.ppid != pid {
		t.Fatalf("backend %d: parent %d (%v), want the postmaster %d", backend, s.ppid, err, pid)
	}
	before, err := TreeCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	backend0, err := ProcCPU(backend)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT count(*) FROM generate_series(1, 5000000)`); err != nil {
		t.Fatal(err)
	}
	backend1, err := ProcCPU(backend)
	if err != nil {
		t.Fatal(err)
	}
	after, err := TreeCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server tree %v → %v, backend %v → %v", before, after, backend0, backend1)
	if before <= 0 || backend1-backend0 < 100*time.Millisecond || after-before < backend1-backend0 {
		t.Errorf("server tree %v → %v, backend %v → %v: want the tree to grow at least as much as the busy backend", before, after, backend0, backend1)
	}
	if rss, err := ProcRSS(pid); err != nil || rss <= 0 {
		t.Errorf("postmaster rss = %d, %v", rss, err)
	}
}

func TestParseStat(t *testing.T) {
	// A command name may hold spaces and parentheses.
	line := "4242 (post) (gres x) S 17 4242 4242 0 -1 4194560 100 0 0 0 123 45 6 7 20 0 1 0 99 0 0\n"
	s, err := parseStat(4242, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if s != (procStat{ppid: 17, utime: 123, stime: 45, cutime: 6, cstime: 7}) {
		t.Errorf("parsed %+v", s)
	}
	if _, err := parseStat(1, []byte("1 (x) S 0 1")); err == nil {
		t.Error("a short stat line was accepted")
	}
}
