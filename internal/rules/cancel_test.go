package rules

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func fptr(f float64) *float64 { return &f }

// near compares reported floats: they are computed by division, so the hand
// value and the computed one may differ in the last bit.
func near(a, b float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-12*math.Max(math.Abs(a), math.Abs(b))
}

func nearPtr(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return near(*a, *b)
}

func fmtPtr(p *float64) any {
	if p == nil {
		return "nil"
	}
	return *p
}

func TestEvalCancelRate(t *testing.T) {
	def := DefaultCancelRateParams()
	with := func(f func(*CancelRateParams)) CancelRateParams {
		p := def
		f(&p)
		return p
	}
	type want struct {
		fires     bool
		source    string
		baseline  float64
		effective float64
		rateH     *float64
		ratio     *float64
	}
	tests := []struct {
		name string
		p    CancelRateParams
		in   CancelInput
		want want
	}{
		{
			// baseline 50/10000 = 0.005 (AB >= 100: merchant), eff = max(0.005, 0.002) = 0.005.
			// need CH >= 2 × 0.005 × max(1000, 20) = 10; CH = 10 → fires.
			// rate 10/1000 = 0.01, ratio 0.01/0.005 = 2.
			name: "rate exactly twice the 7-day rate fires",
			p:    def,
			in:   CancelInput{AH: 1000, CH: 10, AB: 10000, CB: 50},
			want: want{true, "merchant", 0.005, 0.005, fptr(0.01), fptr(2)},
		},
		{
			// same, CH = 9 < 10. rate 0.009, ratio 1.8.
			name: "rate just under twice does not fire",
			p:    def,
			in:   CancelInput{AH: 1000, CH: 9, AB: 10000, CB: 50},
			want: want{false, "merchant", 0.005, 0.005, fptr(0.009), fptr(1.8)},
		},
		{
			// baseline 0/1000 = 0 → eff = floor 0.002; need 2 × 0.002 × 100 = 0.4,
			// but CH >= min_cancels 5 also: CH = 5 → fires. rate 0.05, ratio 25.
			name: "zero 7-day rate uses the floor, 5 cancels fire",
			p:    def,
			in:   CancelInput{AH: 100, CH: 5, AB: 1000, CB: 0},
			want: want{true, "merchant", 0, 0.002, fptr(0.05), fptr(25)},
		},
		{
			// as above, CH = 4 >= 0.4 but < min_cancels 5 → no. rate 0.04, ratio 20.
			name: "zero 7-day rate, 4 cancels are below min_cancels",
			p:    def,
			in:   CancelInput{AH: 100, CH: 4, AB: 1000, CB: 0},
			want: want{false, "merchant", 0, 0.002, fptr(0.04), fptr(20)},
		},
		{
			// AB = 99 < 100: the merchant's 50/99 is ignored; platform 5000/1e6 = 0.005.
			// need 2 × 0.005 × 1000 = 10; CH = 10 → fires. rate 0.01, ratio 2.
			name: "thin history uses the platform baseline",
			p:    def,
			in:   CancelInput{AH: 1000, CH: 10, AB: 99, CB: 50, PlatformAB: 1_000_000, PlatformCB: 5_000},
			want: want{true, "platform", 0.005, 0.005, fptr(0.01), fptr(2)},
		},
		{
			// as above with CH = 9 < 10.
			name: "thin history just under the platform threshold",
			p:    def,
			in:   CancelInput{AH: 1000, CH: 9, AB: 99, CB: 50, PlatformAB: 1_000_000, PlatformCB: 5_000},
			want: want{false, "platform", 0.005, 0.005, fptr(0.009), fptr(1.8)},
		},
		{
			// No history anywhere: platform baseline 0 (PlatformAB = 0) → floor 0.002.
			// need 2 × 0.002 × max(0, 20) = 0.08; CH = 5 → fires. AH = 0: no rate, no ratio.
			name: "thin history and an empty platform fall to the floor",
			p:    def,
			in:   CancelInput{AH: 0, CH: 5},
			want: want{true, "platform", 0, 0.002, nil, nil},
		},
		{
			// AB = 100 is enough (>=): merchant 1/100 = 0.01, not the platform's 0.1.
			// need 2 × 0.01 × 500 = 10; CH = 10 → fires (the platform would need 100).
			// rate 0.02, ratio 2.
			name: "exactly min_baseline_approvals uses the merchant",
			p:    def,
			in:   CancelInput{AH: 500, CH: 10, AB: 100, CB: 1, PlatformAB: 1_000_000, PlatformCB: 100_000},
			want: want{true, "merchant", 0.01, 0.01, fptr(0.02), fptr(2)},
		},
		{
			// Bust-out: no sales, a flood of cancels. baseline 10/1000 = 0.01.
			// need 2 × 0.01 × max(0, 20) = 0.4; CH = 30 >= 5 → fires. RateH, Ratio nil.
			name: "bust-out with zero approvals fires",
			p:    def,
			in:   CancelInput{AH: 0, CH: 30, AB: 1000, CB: 10},
			want: want{true, "merchant", 0.01, 0.01, nil, nil},
		},
		{
			// One sale, one cancel: rate 100%, but CH = 1 < 5 → no.
			// platform 2000/1e6 = 0.002 = floor; ratio 1/0.002 = 500.
			name: "tiny merchant with one approval and one cancel",
			p:    def,
			in:   CancelInput{AH: 1, CH: 1, PlatformAB: 1_000_000, PlatformCB: 2_000},
			want: want{false, "platform", 0.002, 0.002, fptr(1), fptr(500)},
		},
		{
			// baseline 200/1000 = 0.2; AH = 10 < 20 so the threshold uses 20:
			// need 2 × 0.2 × 20 = 8 (with AH it would be 4). CH = 7 → no.
			// rate 0.7, ratio 3.5.
			name: "few approvals use min_approvals, 7 cancels do not fire",
			p:    def,
			in:   CancelInput{AH: 10, CH: 7, AB: 1000, CB: 200},
			want: want{false, "merchant", 0.2, 0.2, fptr(0.7), fptr(3.5)},
		},
		{
			// as above, CH = 8 >= 8 → fires. rate 0.8, ratio 4.
			name: "few approvals use min_approvals, 8 cancels fire",
			p:    def,
			in:   CancelInput{AH: 10, CH: 8, AB: 1000, CB: 200},
			want: want{true, "merchant", 0.2, 0.2, fptr(0.8), fptr(4)},
		},
		{
			// baseline 9e12/9e12 = 1; need 2 × 1 × 4.5e12 = 9e12; CH = 9e12 → fires.
			// CH·md·ed = 9e12 × 1 × 9e12 = 8.1e25, far beyond int64.
			name: "huge values at the boundary fire",
			p:    def,
			in:   CancelInput{AH: 4_500_000_000_000, CH: 9_000_000_000_000, AB: 9_000_000_000_000, CB: 9_000_000_000_000},
			want: want{true, "merchant", 1, 1, fptr(2), fptr(2)},
		},
		{
			// need 2 × (4.5e12 + 1) = 9e12 + 2 > CH → no.
			name: "huge values one approval more do not fire",
			p:    def,
			in:   CancelInput{AH: 4_500_000_000_001, CH: 9_000_000_000_000, AB: 9_000_000_000_000, CB: 9_000_000_000_000},
			want: want{false, "merchant", 1, 1, fptr(9_000_000_000_000.0 / 4_500_000_000_001), fptr(9_000_000_000_000.0 / 4_500_000_000_001)},
		},
		{
			// rate 1 (MaxInt64/MaxInt64); AH = MaxInt64/2 = 4611686018427387903;
			// need 2 × 4611686018427387903 = 9223372036854775806 <= MaxInt64 → fires.
			name: "max int64 at the boundary fires",
			p:    def,
			in:   CancelInput{AH: math.MaxInt64 / 2, CH: math.MaxInt64, AB: math.MaxInt64, CB: math.MaxInt64},
			want: want{true, "merchant", 1, 1, fptr(2), fptr(2)},
		},
		{
			// AH = 2^62: need 2^63 = MaxInt64 + 1 > CH → no.
			name: "max int64 one approval more does not fire",
			p:    def,
			in:   CancelInput{AH: math.MaxInt64/2 + 1, CH: math.MaxInt64, AB: math.MaxInt64, CB: math.MaxInt64},
			want: want{false, "merchant", 1, 1, fptr(2), fptr(2)},
		},
		{
			// mult 21/10, floor 21/10000, no baseline → eff 0.0021.
			// need 2.1 × 0.0021 × 900000 = 441/100000 × 900000 = 3969 exactly.
			// In float64, 2.1*0.0021*900000 = 3968.9999999999995: only the
			// exact comparison puts the boundary where the operator wrote it.
			name: "multiplier 2.1 and floor 0.0021 at the exact boundary fire",
			p:    with(func(p *CancelRateParams) { p.Multiplier = Ratio{21, 10}; p.BaselineFloor = Ratio{21, 10000} }),
			in:   CancelInput{AH: 900_000, CH: 3969},
			want: want{true, "platform", 0, 0.0021, fptr(0.00441), fptr(2.1)},
		},
		{
			// as above, CH = 3968 < 3969.
			name: "multiplier 2.1 and floor 0.0021 one cancel under",
			p:    with(func(p *CancelRateParams) { p.Multiplier = Ratio{21, 10}; p.BaselineFloor = Ratio{21, 10000} }),
			in:   CancelInput{AH: 900_000, CH: 3968},
			want: want{false, "platform", 0, 0.0021, fptr(3968.0 / 900_000), fptr(3968.0 / 900_000 / 0.0021)},
		},
		{
			// baseline 2001/1e6 = 0.002001 > floor 0.002, so eff = 0.002001:
			// need 2 × 0.002001 × 1e6 = 4002; CH = 4002 → fires.
			name: "baseline just above the floor wins, at the boundary",
			p:    def,
			in:   CancelInput{AH: 1_000_000, CH: 4002, AB: 1_000_000, CB: 2001},
			want: want{true, "merchant", 0.002001, 0.002001, fptr(0.004002), fptr(2)},
		},
		{
			// CH = 4001 < 4002 (against the floor alone it would need 4000 and fire).
			name: "baseline just above the floor wins, one under",
			p:    def,
			in:   CancelInput{AH: 1_000_000, CH: 4001, AB: 1_000_000, CB: 2001},
			want: want{false, "merchant", 0.002001, 0.002001, fptr(0.004001), fptr(0.004001 / 0.002001)},
		},
		{
			// More cancels than approvals over B (cancels of older payments):
			// 150/100 = 1.5; need 2 × 1.5 × 20 = 60; CH = 60 → fires. rate 3, ratio 2.
			name: "7-day rate above 1",
			p:    def,
			in:   CancelInput{AH: 20, CH: 60, AB: 100, CB: 150},
			want: want{true, "merchant", 1.5, 1.5, fptr(3), fptr(2)},
		},
		{
			// min_approvals 0 and AH = 0: need 2 × 0.01 × 0 = 0; CH = 5 >= 5 → fires.
			name: "min_approvals 0 with no approvals leaves min_cancels",
			p:    with(func(p *CancelRateParams) { p.MinApprovals = 0 }),
			in:   CancelInput{AH: 0, CH: 5, AB: 1000, CB: 10},
			want: want{true, "merchant", 0.01, 0.01, nil, nil},
		},
		{
			// floor 0 and baseline 0: eff 0, need 0; CH = 5 → fires. rate 0.05,
			// ratio would be +Inf → nil.
			name: "zero floor and zero baseline report no ratio",
			p:    with(func(p *CancelRateParams) { p.BaselineFloor = Ratio{} }),
			in:   CancelInput{AH: 100, CH: 5, AB: 1000, CB: 0},
			want: want{true, "merchant", 0, 0, fptr(0.05), nil},
		},
		{
			// min_baseline_approvals 0 and AB = 0: 0/0 is no rate, so the
			// platform's 10/1000 = 0.01 is used; need 2 × 0.01 × 100 = 2, CH = 5 fires.
			name: "no baseline approvals at all never divides by zero",
			p:    with(func(p *CancelRateParams) { p.MinBaselineApprovals = 0 }),
			in:   CancelInput{AH: 100, CH: 5, AB: 0, CB: 3, PlatformAB: 1000, PlatformCB: 10},
			want: want{true, "platform", 0.01, 0.01, fptr(0.05), fptr(5)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EvalCancelRate(tt.p, tt.in)
			w := tt.want
			if got.Fires != w.fires || got.BaselineSource != w.source || !near(got.Baseline, w.baseline) ||
				!near(got.Effective, w.effective) || !nearPtr(got.RateH, w.rateH) || !nearPtr(got.Ratio, w.ratio) {
				t.Fatalf("got fires=%v source=%s baseline=%v eff=%v rate=%v ratio=%v\nwant fires=%v source=%s baseline=%v eff=%v rate=%v ratio=%v",
					got.Fires, got.BaselineSource, got.Baseline, got.Effective, fmtPtr(got.RateH), fmtPtr(got.Ratio),
					w.fires, w.source, w.baseline, w.effective, fmtPtr(w.rateH), fmtPtr(w.ratio))
			}
			if got.AH != tt.in.AH || got.CH != tt.in.CH || got.AB != tt.in.AB || got.CB != tt.in.CB {
				t.Fatalf("reported sums %d/%d/%d/%d, want the input's", got.AH, got.CH, got.AB, got.CB)
			}
		})
	}
}

// TestEvalCancelRateMatchesBigRat decides random inputs, biased towards the
// threshold, with math/big rationals as the reference.
func TestEvalCancelRateMatchesBigRat(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	count := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return rng.Int64N(50)
		case 1:
			return rng.Int64N(100_000)
		case 2:
			return rng.Int64N(1 << 40)
		default:
			return rng.Int64N(math.MaxInt64)
		}
	}
	ratio := func() Ratio {
		d := []int64{1, 10, 100, 1000, 10000, 1_000_000_000_000_000_000}[rng.IntN(6)]
		return Ratio{Num: rng.Int64N(d*5 + 1), Den: d}
	}
	rat := func(n, d int64) *big.Rat { return new(big.Rat).SetFrac(big.NewInt(n), big.NewInt(d)) }
	for i := range 200000 {
		p := CancelRateParams{
			MinBaselineApprovals: rng.Int64N(200),
			BaselineFloor:        ratio(),
			MinCancels:           rng.Int64N(10),
			Multiplier:           ratio(),
			MinApprovals:         rng.Int64N(40),
		}
		in := CancelInput{AH: count(), AB: count(), CB: count(), PlatformAB: count(), PlatformCB: count()}
		if rng.IntN(5) == 0 {
			in.PlatformAB = 0
		}
		// Reference: eff and the threshold as exact rationals.
		base := new(big.Rat)
		if in.AB >= p.MinBaselineApprovals && in.AB > 0 {
			base = rat(in.CB, in.AB)
		} else if in.PlatformAB > 0 {
			base = rat(in.PlatformCB, in.PlatformAB)
		}
		eff := rat(p.BaselineFloor.Num, p.BaselineFloor.Den)
		if base.Cmp(eff) > 0 {
			eff = base
		}
		need := new(big.Rat).Mul(rat(p.Multiplier.Num, p.Multiplier.Den), eff)
		need.Mul(need, rat(max(in.AH, p.MinApprovals), 1))
		// Put CH on, just below or just above the threshold when it fits.
		ceil := new(big.Int).Quo(new(big.Int).Add(need.Num(), new(big.Int).Sub(need.Denom(), big.NewInt(1))), need.Denom())
		switch {
		case ceil.IsInt64() && i%2 == 0:
			in.CH = ceil.Int64() + rng.Int64N(3) - 1
			if in.CH < 0 {
				in.CH = 0
			}
		default:
			in.CH = count()
		}
		want := in.CH >= p.MinCancels && rat(in.CH, 1).Cmp(need) >= 0
		if got := EvalCancelRate(p, in); got.Fires != want {
			t.Fatalf("params %+v input %+v: fires %v, want %v (need %v)", p, in, got.Fires, want, need.FloatString(6))
		}
	}
}
