package aggregates

import (
	"cmp"
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/window"
)

// ---------------------------------------------------------------------------
// Rules data: the state's snapshot and the volume rule's day.

// seeded is a set of minute aggregates and their brute-force sums.
type seeded map[window.Key]window.Agg

func (sd seeded) add(merchant int64, m window.Minute, a window.Agg) {
	k := window.Key{Merchant: merchant, Minute: m}
	x := sd[k]
	x.Add(a)
	sd[k] = x
}

// applyInBatches writes the points through Apply in several batches; a
// point's key may repeat across batches (the sink adds them up).
func applyInBatches(t *testing.T, s *Store, w Checkpoint, points []window.Delta, batches int, closed window.Minute) {
	t.Helper()
	for b := 0; b < batches; b++ {
		sum := seeded{}
		for i := b; i < len(points); i += batches {
			sum.add(points[i].Merchant, points[i].Minute, points[i].Agg)
		}
		var deltas []window.Delta
		for k, a := range sum {
			deltas = append(deltas, window.Delta{Key: k, Agg: a})
		}
		slices.SortFunc(deltas, func(x, y window.Delta) int {
			return cmp.Or(cmp.Compare(x.Minute, y.Minute), cmp.Compare(x.Merchant, y.Merchant))
		})
		err := s.Apply(context.Background(), &Batch{Deltas: deltas, Position: w.At(lsn(uint64(10+b)), closed, closed.End())})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRulesSnapshot(t *testing.T) {
	t.Parallel()
	at := func(s string) window.Minute { return minute(t, s) }
	// lastClosed on and off hour boundaries: with L = hh:59, H starts on an
	// hour and B = [L-10139, L-60] is whole hours; with L = hh:00 B has 59
	// edge minutes at each end; the others in between.
	cases := []window.Minute{
		at("2026-11-20T06:59:00Z"),
		at("2026-11-20T07:00:00Z"),
		at("2026-11-20T07:01:00Z"),
		at("2026-11-20T07:37:00Z"),
		at("2026-11-20T07:58:00Z"),
		at("2026-11-20T08:30:00Z"),
		// Just after a Seoul midnight: today before H is empty, then an
		// half hour long (Kolkata's is a whole day).
		at("2026-11-20T15:59:00Z"),
		at("2026-11-20T16:30:00Z"),
	}
	rng := rand.New(rand.NewPCG(7, 11))
	var points []window.Delta
	point := func(merchant int64, m window.Minute) {
		a := window.Agg{Approvals: rng.Int64N(4), Cancels: rng.Int64N(3)}
		if a.Approvals == 0 && a.Cancels == 0 {
			a.Approvals = 1
		}
		a.ApprovedAmount, a.CanceledAmount = a.Approvals*(1000+rng.Int64N(9000)), a.Cancels*500
		points = append(points, window.Delta{Key: window.Key{Merchant: merchant, Minute: m}, Agg: a})
	}
	lo, hi := cases[0]-rules.BaselineMinutes-200, cases[len(cases)-1]+40
	for i := 0; i < 3000; i++ {
		point(1+rng.Int64N(4), lo+window.Minute(rng.Int64N(int64(hi-lo))))
	}
	// Every edge of every case, for several merchants: just outside B,
	// B's first and last minutes, H's first and last, the first open
	// minute, and the minutes around the whole hours of B.
	for _, l := range cases {
		for _, off := range []window.Minute{-10141, -10140, -10139, -10138, -61, -60, -59, -58, -1, 0, 1, 2} {
			point(1+int64(off+20000)%4, l+off)
			point(5, l+off)
		}
		bLo := l - 10139
		h := window.MinuteOf(bLo.Start().Truncate(time.Hour))
		for _, off := range []window.Minute{-1, 0, 59, 60, 61, 119, 120} {
			point(6, h+off)
		}
	}
	// Today's first and last minutes: midnight in Seoul (15:00Z) and in
	// Kolkata (18:30Z).
	for _, mid := range []string{"2026-11-19T15:00:00Z", "2026-11-20T15:00:00Z", "2026-11-19T18:30:00Z"} {
		for _, off := range []window.Minute{-1, 0, 1} {
			point(7, at(mid)+off)
		}
	}
	// Merchant 9 only just before the earliest B, and merchant 10 only
	// after the latest lastClosed: never in a baseline.
	point(9, cases[0]-10140)
	point(10, cases[len(cases)-1]+3)
	brute := seeded{}
	for _, p := range points {
		brute.add(p.Merchant, p.Minute, p.Agg)
	}

	for _, zone := range []string{"Asia/Seoul", "Asia/Kolkata"} {
		t.Run(zone, func(t *testing.T) {
			t.Parallel()
			loc, err := time.LoadLocation(zone)
			if err != nil {
				t.Fatal(err)
			}
			s := openStore(t, loc)
			w := bootstrapEmpty(t, s, 1)
			applyInBatches(t, s, w, points, 3, cases[len(cases)-1])
			for i, l := range cases {
				for _, withOpen := range []bool{false, true} {
					// Exposure windows of 7 days and of 2½ hours: whole
					// hours of the rollup and minute edges both.
					checkSnapshot(t, s, loc, brute, l, withOpen, []int{rules.BaselineMinutes, 150}[i%2])
				}
			}
		})
	}
}

func checkSnapshot(t *testing.T, s *Store, loc *time.Location, brute seeded, l window.Minute, withOpen bool, exposure int) {
	t.Helper()
	snap, err := s.RulesSnapshot(context.Background(), l, withOpen, exposure)
	if err != nil {
		t.Fatal(err)
	}
	var wantRecent []window.Delta
	base := map[int64]rules.MerchantSums{}
	hod := map[[2]int64]rules.HourOfDaySums{}
	today := map[int64]rules.MerchantSums{}
	ly, lm, ld := l.Start().In(loc).Date()
	expo := map[int64]int64{}
	for k, a := range brute {
		if k.Minute > l-window.Minute(exposure) && k.Minute <= l {
			expo[k.Merchant] += a.ApprovedAmount
		}
		if k.Minute >= l-179 && (k.Minute <= l || withOpen) {
			wantRecent = append(wantRecent, window.Delta{Key: k, Agg: a})
		}
		if k.Minute >= l-10139 && k.Minute <= l-60 {
			b := base[k.Merchant]
			b.Merchant = k.Merchant
			b.Approvals += a.Approvals
			b.Cancels += a.Cancels
			base[k.Merchant] = b
			h := k.Minute.Start().In(loc).Hour()
			x := hod[[2]int64{k.Merchant, int64(h)}]
			x.Merchant, x.Hour = k.Merchant, h
			x.Approvals += a.Approvals
			x.Cancels += a.Cancels
			hod[[2]int64{k.Merchant, int64(h)}] = x
			if y, m, d := k.Minute.Start().In(loc).Date(); y == ly && m == lm && d == ld {
				t := today[k.Merchant]
				t.Merchant = k.Merchant
				t.Approvals += a.Approvals
				t.Cancels += a.Cancels
				today[k.Merchant] = t
			}
		}
	}
	gotToday := map[int64]rules.MerchantSums{}
	for _, x := range snap.Today {
		gotToday[x.Merchant] = x
	}
	maps.DeleteFunc(today, func(_ int64, v rules.MerchantSums) bool { return v.Approvals == 0 && v.Cancels == 0 })
	if !maps.Equal(gotToday, today) || len(snap.Today) != len(today) {
		t.Errorf("L=%s: Today\n got %v\nwant %v", l, snap.Today, today)
	}
	if snap.ExposureMinutes != exposure {
		t.Errorf("L=%s: ExposureMinutes = %d, want %d", l, snap.ExposureMinutes, exposure)
	}
	gotExpo := map[int64]int64{}
	for _, e := range snap.Exposure {
		gotExpo[e.Merchant] += e.Amount
	}
	maps.DeleteFunc(expo, func(_ int64, v int64) bool { return v == 0 })
	if !maps.Equal(gotExpo, expo) || len(snap.Exposure) != len(expo) {
		t.Errorf("L=%s exposure %d: Exposure\n got %v\nwant %v", l, exposure, snap.Exposure, expo)
	}
	gotHod := map[[2]int64]rules.HourOfDaySums{}
	for _, h := range snap.HourOfDay {
		gotHod[[2]int64{h.Merchant, int64(h.Hour)}] = h
	}
	maps.DeleteFunc(hod, func(_ [2]int64, v rules.HourOfDaySums) bool { return v.Approvals == 0 && v.Cancels == 0 })
	if !maps.Equal(gotHod, hod) || len(snap.HourOfDay) != len(hod) {
		t.Errorf("L=%s: HourOfDay\n got %v\nwant %v", l, snap.HourOfDay, hod)
	}
	slices.SortFunc(wantRecent, func(x, y window.Delta) int {
		return cmp.Or(cmp.Compare(x.Minute, y.Minute), cmp.Compare(x.Merchant, y.Merchant))
	})
	if snap.LastClosed != l {
		t.Errorf("L=%s: LastClosed = %s", l, snap.LastClosed)
	}
	if !slices.Equal(snap.Recent, wantRecent) {
		t.Errorf("L=%s withOpen=%v: Recent has %d deltas, want %d\n got %v\nwant %v", l, withOpen, len(snap.Recent), len(wantRecent), snap.Recent, wantRecent)
	}
	got := map[int64]rules.MerchantSums{}
	for _, b := range snap.Baseline {
		if _, dup := got[b.Merchant]; dup {
			t.Errorf("L=%s: merchant %d twice in Baseline", l, b.Merchant)
		}
		got[b.Merchant] = b
	}
	if !maps.Equal(got, base) {
		t.Errorf("L=%s withOpen=%v: Baseline\n got %v\nwant %v", l, withOpen, got, base)
	}
	if _, ok := base[5]; !ok {
		t.Errorf("L=%s: the edge merchant has no baseline; the seed is wrong", l)
	}
}

func TestVolumeDay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	loc := seoul(t)
	s := openStore(t, loc)
	w := bootstrapEmpty(t, s, 1)
	kst := func(v string) window.Minute {
		tm, err := time.ParseInLocation("2006-01-02T15:04", v, loc)
		if err != nil {
			t.Fatal(err)
		}
		return window.MinuteOf(tm)
	}
	const large = 1000 // KRW a day, so 7,000 over the 7 days
	type ev struct {
		merchant int64
		at       string // Seoul wall clock
		amount   int64  // approved; negative: a cancel of -amount
	}
	// The day is 2026-11-20 (Seoul); its 7 days are 11-13 … 11-19.
	events := []ev{
		// Merchant 1: exactly 7,000 in the 7 days: large.
		{1, "2026-11-13T00:00", 1000}, // first minute of the 7 days, index 0
		{1, "2026-11-15T00:30", 1500}, // index 30 …
		{1, "2026-11-18T00:30", 500},  // … twice
		{1, "2026-11-19T23:59", 4000}, // last minute, index 1439
		{1, "2026-11-19T12:00", -900}, // cancels count for nothing
		{1, "2026-11-12T23:59", 9999}, // day D-8: outside
		{1, "2026-11-20T00:00", 70},   // today, first minute
		{1, "2026-11-20T00:30", 30},   // today
		{1, "2026-11-20T01:10", 5},    // today, at lastClosed
		{1, "2026-11-20T01:11", 1000}, // after lastClosed: not today yet
		// Merchant 2: 6,999: not large.
		{2, "2026-11-14T09:00", 6999},
		{2, "2026-11-20T00:10", 50},
		// Merchant 3: large amounts only on D-8 and on D: not large.
		{3, "2026-11-12T10:00", 100000},
		{3, "2026-11-20T00:05", 100000},
		// Merchant 4: large in one minute; nothing today but a cancel.
		{4, "2026-11-16T17:45", 8000},
		{4, "2026-11-17T17:45", 1},
		{4, "2026-11-20T00:20", -5000},
		// Merchant 5: large, spread.
		{5, "2026-11-13T08:00", 3000},
		{5, "2026-11-19T08:00", 3000},
		{5, "2026-11-19T08:01", 3000},
		{5, "2026-11-20T01:00", 10},
	}
	var points []window.Delta
	for _, e := range events {
		a := window.Agg{Approvals: 1, ApprovedAmount: e.amount}
		if e.amount < 0 {
			a = window.Agg{Cancels: 1, CanceledAmount: -e.amount}
		}
		points = append(points, window.Delta{Key: window.Key{Merchant: e.merchant, Minute: kst(e.at)}, Agg: a})
	}
	applyInBatches(t, s, w, points, 2, kst("2026-11-20T01:11"))

	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC) // Calendar.Day form
	// The worked-out curves of the large merchants 1, 4 and 5.
	var c1, c4, c5 rules.Curve
	c1.Sum7 = 7000
	c1.PerMinute7[0], c1.PerMinute7[30], c1.PerMinute7[1439] = 1000, 2000, 4000
	c4.Sum7 = 8001
	c4.PerMinute7[17*60+45] = 8001
	c5.Sum7 = 9000
	c5.PerMinute7[8*60], c5.PerMinute7[8*60+1] = 6000, 3000
	// Each day's own quarter hours: day k is 11-13 + k.
	c1.PerDay[0][0], c1.PerDay[2][2], c1.PerDay[5][2], c1.PerDay[6][95] = 1000, 1500, 500, 4000
	c4.PerDay[3][17*4+3], c4.PerDay[4][17*4+3] = 8000, 1
	c5.PerDay[0][32], c5.PerDay[6][32] = 3000, 6000
	wantCurves := map[int64]*rules.Curve{1: &c1, 4: &c4, 5: &c5}

	tests := []struct {
		name       string
		lastClosed window.Minute
		today      map[int64]int64
	}{
		{"mid-morning", kst("2026-11-20T01:10"), map[int64]int64{1: 105, 5: 10}},
		{"first minute", kst("2026-11-20T00:00"), map[int64]int64{1: 70}},
		{"before the day", kst("2026-11-19T23:59"), map[int64]int64{}},
	}
	for _, tc := range tests {
		v, err := s.VolumeDay(ctx, day, large, tc.lastClosed)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Day.Equal(day) {
			t.Errorf("%s: Day = %s", tc.name, v.Day)
		}
		if len(v.Curves) != len(wantCurves) {
			t.Errorf("%s: large merchants %v, want 1, 4, 5", tc.name, slices.Sorted(maps.Keys(v.Curves)))
		}
		for m, want := range wantCurves {
			got := v.Curves[m]
			if got == nil {
				t.Errorf("%s: merchant %d is not large", tc.name, m)
				continue
			}
			if got.Sum7 != want.Sum7 {
				t.Errorf("%s: merchant %d Sum7 = %d, want %d", tc.name, m, got.Sum7, want.Sum7)
			}
			if got.PerDay != want.PerDay {
				for k := range got.PerDay {
					for q := range got.PerDay[k] {
						if got.PerDay[k][q] != want.PerDay[k][q] {
							t.Errorf("%s: merchant %d PerDay[%d][%d] = %d, want %d", tc.name, m, k, q, got.PerDay[k][q], want.PerDay[k][q])
						}
					}
				}
			}
			if got.PerMinute7 != want.PerMinute7 {
				for i := range got.PerMinute7 {
					if got.PerMinute7[i] != want.PerMinute7[i] {
						t.Errorf("%s: merchant %d PerMinute7[%d] = %d, want %d", tc.name, m, i, got.PerMinute7[i], want.PerMinute7[i])
					}
				}
			}
		}
		for m := range v.Today {
			if v.Curves[m] == nil {
				t.Errorf("%s: Today has merchant %d, which is not large", tc.name, m)
			}
		}
		for _, m := range []int64{1, 4, 5} {
			if v.Today[m] != tc.today[m] {
				t.Errorf("%s: Today[%d] = %d, want %d", tc.name, m, v.Today[m], tc.today[m])
			}
		}
	}
	// With a threshold nobody reaches, no curves and no today.
	v, err := s.VolumeDay(ctx, day, 1_000_000_000, kst("2026-11-20T01:10"))
	if err != nil || len(v.Curves) != 0 || len(v.Today) != 0 {
		t.Fatalf("VolumeDay with a high threshold = %+v, %v", v, err)
	}
}
