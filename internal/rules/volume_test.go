package rules

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestEvalVolumeDrop(t *testing.T) {
	def := DefaultVolumeDropParams()
	with := func(f func(*VolumeDropParams)) VolumeDropParams {
		p := def
		f(&p)
		return p
	}
	// A shop open 09:00–21:00 selling 2,000,000 KRW a minute on each of the
	// last 7 days: 720 min × 2e6 = 1.44e9 a day (large), Sum7 = 7 × 1.44e9 =
	// 10,080,000,000. Today it sold 09:00–09:59 (60 × 2e6 = 120e6) and then
	// went silent. Prefix7 at t = 7 × (t − 540) × 2e6 for t in 540..1260.
	const shopSum7, shopToday = 10_080_000_000, 120_000_000
	shopPrefix := func(t int64) int64 { return 7 * (t - 540) * 2_000_000 }
	// A merchant selling 1,000,000 KRW every minute of the day: Sum7 =
	// 7 × 1440 × 1e6 = 10,080,000,000, daily_avg 1.44e9, guard 5% = 72e6,
	// Prefix7 at t = 7 × t × 1e6.
	const flatSum7 = 10_080_000_000
	flatPrefix := func(t int64) int64 { return 7 * t * 1_000_000 }
	type want struct {
		large, fires bool
		dailyAvg     float64
		expected     float64
		drop         *float64
	}
	tests := []struct {
		name string
		p    VolumeDropParams
		in   VolumeInput
		want want
	}{
		{
			// t = 600 (end of 09:59): expected 60 × 2e6 = 120e6 = today; drop 0.
			name: "silent shop at 10:00 is on its curve",
			p:    def,
			in:   VolumeInput{Sum7: shopSum7, Prefix7: shopPrefix(600), Today: shopToday},
			want: want{true, false, 1.44e9, 120e6, fptr(0)},
		},
		{
			// t = 659 (end of 10:58): expected 119 × 2e6 = 238e6; half is
			// 119e6 < today 120e6 → no. drop = 1 − 120/238 = 0.4957983...
			name: "silent shop at 10:59 is one minute short",
			p:    def,
			in:   VolumeInput{Sum7: shopSum7, Prefix7: shopPrefix(659), Today: shopToday},
			want: want{true, false, 1.44e9, 238e6, fptr(1 - 120.0/238)},
		},
		{
			// t = 660 (end of 10:59): Prefix7 = 7 × 120 × 2e6 = 1.68e9, expected
			// 240e6; today 120e6 <= 0.5 × 240e6 → fires, drop exactly 0.5.
			name: "silent shop at 11:00 fires at exactly half",
			p:    def,
			in:   VolumeInput{Sum7: shopSum7, Prefix7: shopPrefix(660), Today: shopToday},
			want: want{true, true, 1.44e9, 240e6, fptr(0.5)},
		},
		{
			// t = 840 (end of 13:59): Prefix7 = 7 × 300 × 2e6 = 4.2e9, expected
			// 600e6; guard 600e6 >= 72e6; today 120e6 <= 300e6 → fires. drop 0.8.
			name: "silent shop at 14:00 fires",
			p:    def,
			in:   VolumeInput{Sum7: shopSum7, Prefix7: shopPrefix(840), Today: shopToday},
			want: want{true, true, 1.44e9, 600e6, fptr(0.8)},
		},
		{
			// t = 1440: the plain "today vs daily average": expected 1.44e9,
			// drop 1 − 120/1440 = 0.91666...
			name: "silent shop at the end of the day",
			p:    def,
			in:   VolumeInput{Sum7: shopSum7, Prefix7: shopSum7, Today: shopToday},
			want: want{true, true, 1.44e9, 1.44e9, fptr(1 - 120.0/1440)},
		},
		{
			// 00:05 (t = 5): expected 5e6 < 5% of 1.44e9 = 72e6 → the guard
			// holds the rule back even though nothing was sold yet. drop 1.
			name: "first minutes after midnight are guarded",
			p:    def,
			in:   VolumeInput{Sum7: flatSum7, Prefix7: flatPrefix(5), Today: 0},
			want: want{true, false, 1.44e9, 5e6, fptr(1)},
		},
		{
			// t = 71: expected 71e6 < 72e6 → still guarded.
			name: "one minute before the guard opens",
			p:    def,
			in:   VolumeInput{Sum7: flatSum7, Prefix7: flatPrefix(71), Today: 0},
			want: want{true, false, 1.44e9, 71e6, fptr(1)},
		},
		{
			// t = 72: expected 72e6 = 5% of daily_avg (>=) and today 0 → fires.
			name: "guard opens at exactly 5 percent",
			p:    def,
			in:   VolumeInput{Sum7: flatSum7, Prefix7: flatPrefix(72), Today: 0},
			want: want{true, true, 1.44e9, 72e6, fptr(1)},
		},
		{
			// daily_avg = (7e9 − 1)/7 < 1e9: not large, never fires.
			name: "just below the large threshold",
			p:    def,
			in:   VolumeInput{Sum7: 7_000_000_000 - 1, Prefix7: 7_000_000_000 - 1, Today: 0},
			want: want{false, false, (7e9 - 1) / 7, (7e9 - 1) / 7, fptr(1)},
		},
		{
			// daily_avg = 7e9/7 = 1e9 exactly: large. At t = 1440 with nothing
			// sold: expected 1e9, today 0 → fires.
			name: "exactly at the large threshold",
			p:    def,
			in:   VolumeInput{Sum7: 7_000_000_000, Prefix7: 7_000_000_000, Today: 0},
			want: want{true, true, 1e9, 1e9, fptr(1)},
		},
		{
			// expected 1e9, today 5e8: 7 × 5e8 = 3.5e9 <= 0.5 × 7e9 → fires.
			name: "drop of exactly 50 percent fires",
			p:    def,
			in:   VolumeInput{Sum7: 7_000_000_000, Prefix7: 7_000_000_000, Today: 500_000_000},
			want: want{true, true, 1e9, 1e9, fptr(0.5)},
		},
		{
			// today 500,100,000: drop 1 − 0.5001 = 0.4999 → no.
			name: "drop of 49.99 percent does not fire",
			p:    def,
			in:   VolumeInput{Sum7: 7_000_000_000, Prefix7: 7_000_000_000, Today: 500_100_000},
			want: want{true, false, 1e9, 1e9, fptr(0.4999)},
		},
		{
			// today 500,000,001: 7 × today = 3,500,000,007 > 3.5e9 → no.
			name: "one won above half does not fire",
			p:    def,
			in:   VolumeInput{Sum7: 7_000_000_000, Prefix7: 7_000_000_000, Today: 500_000_001},
			want: want{true, false, 1e9, 1e9, fptr(1 - 500_000_001.0/1e9)},
		},
		{
			// Nothing expected by now (Prefix7 = 0): no drop, no fire.
			name: "expected zero reports no drop",
			p:    def,
			in:   VolumeInput{Sum7: 7_000_000_000, Prefix7: 0, Today: 0},
			want: want{true, false, 1e9, 0, nil},
		},
		{
			// Even with the guard at 0 (0 >= 0 would hold), an empty
			// expectation cannot fire.
			name: "expected zero with a zero guard",
			p:    with(func(p *VolumeDropParams) { p.MinExpectedFraction = Ratio{0, 1} }),
			in:   VolumeInput{Sum7: 7_000_000_000, Prefix7: 0, Today: 0},
			want: want{true, false, 1e9, 0, nil},
		},
		{
			// expected 3.5e9/7 = 5e8, today 6e8: drop −0.2, no fire.
			name: "growth reports a negative drop",
			p:    def,
			in:   VolumeInput{Sum7: 7_000_000_000, Prefix7: 3_500_000_000, Today: 600_000_000},
			want: want{true, false, 1e9, 5e8, fptr(-0.2)},
		},
		{
			// drop_ratio 1: (1 − 1) × expected = 0, so only today = 0 fires.
			name: "drop ratio 1 with one won sold",
			p:    with(func(p *VolumeDropParams) { p.DropRatio = Ratio{1, 1} }),
			in:   VolumeInput{Sum7: 7_000_000_000, Prefix7: 7_000_000_000, Today: 1},
			want: want{true, false, 1e9, 1e9, fptr(1 - 1/1e9)},
		},
		{
			name: "drop ratio 1 with nothing sold",
			p:    with(func(p *VolumeDropParams) { p.DropRatio = Ratio{1, 1} }),
			in:   VolumeInput{Sum7: 7_000_000_000, Prefix7: 7_000_000_000, Today: 0},
			want: want{true, true, 1e9, 1e9, fptr(1)},
		},
		{
			// Sum7 = Prefix7 = MaxInt64; today = MaxInt64/14 = 658812288346769700:
			// 7 × today × 2 = 9223372036854775800 <= 1 × MaxInt64 → fires.
			name: "max int64 at half fires",
			p:    def,
			in:   VolumeInput{Sum7: math.MaxInt64, Prefix7: math.MaxInt64, Today: math.MaxInt64 / 14},
			want: want{true, true, math.MaxInt64 / 7.0, math.MaxInt64 / 7.0, fptr(0.5)},
		},
		{
			// today + 1: 14 × 658812288346769701 = 9223372036854775814 > MaxInt64.
			name: "max int64 one won above half",
			p:    def,
			in:   VolumeInput{Sum7: math.MaxInt64, Prefix7: math.MaxInt64, Today: math.MaxInt64/14 + 1},
			want: want{true, false, math.MaxInt64 / 7.0, math.MaxInt64 / 7.0, fptr(0.5)},
		},
		{
			// 7 × L = 7 × MaxInt64 does not fit in int64; no overflow to negative.
			name: "huge large threshold",
			p:    with(func(p *VolumeDropParams) { p.LargeDailyAmount = math.MaxInt64 }),
			in:   VolumeInput{Sum7: math.MaxInt64, Prefix7: math.MaxInt64, Today: 0},
			want: want{false, false, math.MaxInt64 / 7.0, math.MaxInt64 / 7.0, fptr(1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EvalVolumeDrop(tt.p, tt.in)
			w := tt.want
			if got.Large != w.large || got.Fires != w.fires || !near(got.DailyAvg, w.dailyAvg) ||
				!near(got.Expected, w.expected) || !nearPtr(got.Drop, w.drop) || got.Today != tt.in.Today {
				t.Fatalf("got large=%v fires=%v daily=%v expected=%v today=%d drop=%v\nwant large=%v fires=%v daily=%v expected=%v drop=%v",
					got.Large, got.Fires, got.DailyAvg, got.Expected, got.Today, fmtPtr(got.Drop),
					w.large, w.fires, w.dailyAvg, w.expected, fmtPtr(w.drop))
			}
		})
	}
}

// TestEvalVolumeDropMatchesBigRat checks the exact decision against SPEC §6
// written with math/big rationals, on random inputs near the thresholds.
func TestEvalVolumeDropMatchesBigRat(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	rat := func(n, d int64) *big.Rat { return new(big.Rat).SetFrac(big.NewInt(n), big.NewInt(d)) }
	for range 200000 {
		d := []int64{1, 10, 100, 10000, 1_000_000_000_000_000_000}[rng.IntN(5)]
		p := VolumeDropParams{
			LargeDailyAmount:    rng.Int64N(1 << 40),
			MinExpectedFraction: Ratio{rng.Int64N(d + 1), d},
			DropRatio:           Ratio{rng.Int64N(d + 1), d},
		}
		in := VolumeInput{Sum7: 7*p.LargeDailyAmount + rng.Int64N(3) - 1}
		if rng.IntN(3) == 0 {
			in.Sum7 = rng.Int64N(math.MaxInt64)
		}
		in.Sum7 = max(in.Sum7, 0)
		in.Prefix7 = rng.Int64N(in.Sum7 + 1)
		// today near (1 − drop) × expected.
		edge := new(big.Rat).Mul(new(big.Rat).Sub(big.NewRat(1, 1), rat(p.DropRatio.Num, p.DropRatio.Den)), rat(in.Prefix7, 7))
		in.Today = new(big.Int).Quo(edge.Num(), edge.Denom()).Int64() + rng.Int64N(3) - 1
		if rng.IntN(4) == 0 {
			in.Today = rng.Int64N(in.Sum7 + 1)
		}
		in.Today = max(in.Today, 0)

		daily := rat(in.Sum7, 7)
		expected := rat(in.Prefix7, 7)
		large := daily.Cmp(rat(p.LargeDailyAmount, 1)) >= 0
		guard := expected.Cmp(new(big.Rat).Mul(rat(p.MinExpectedFraction.Num, p.MinExpectedFraction.Den), daily)) >= 0
		want := large && in.Prefix7 > 0 && guard && rat(in.Today, 1).Cmp(edge) <= 0
		got := EvalVolumeDrop(p, in)
		if got.Large != large || got.Fires != want {
			t.Fatalf("params %+v input %+v: large %v fires %v, want %v %v", p, in, got.Large, got.Fires, large, want)
		}
	}
}
