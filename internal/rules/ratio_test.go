package rules

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseRatio(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Ratio
		wantErr string
	}{
		{name: "integer", in: "2", want: Ratio{2, 1}},
		{name: "integer with zero fraction", in: "2.0", want: Ratio{2, 1}},
		{name: "default floor", in: "0.002", want: Ratio{1, 500}},    // 2/1000 reduced by 2
		{name: "one and a half", in: "1.5", want: Ratio{3, 2}},       // 15/10 reduced by 5
		{name: "default fraction", in: "0.05", want: Ratio{1, 20}},   // 5/100 reduced by 5
		{name: "default drop", in: "0.5", want: Ratio{1, 2}},         // 5/10
		{name: "multiplier 2.1", in: "2.1", want: Ratio{21, 10}},     // already reduced
		{name: "floor 0.0021", in: "0.0021", want: Ratio{21, 10000}}, // 21 and 10^4 are coprime
		{name: "zero", in: "0", want: Ratio{0, 1}},                   // 0/1, not 0/0
		{name: "zero with fraction", in: "0.000", want: Ratio{0, 1}}, // trailing zeros dropped first
		{name: "leading and trailing zeros", in: "000.500", want: Ratio{1, 2}},
		{name: "18 digits", in: "123456789012345678", want: Ratio{123456789012345678, 1}},
		{name: "18 decimal places", in: "0.000000000000000001", want: Ratio{1, 1_000_000_000_000_000_000}},
		{name: "18 significant digits with fraction", in: "1.23456789012345678", want: Ratio{61728394506172839, 50000000000000000}}, // 123456789012345678/10^17, gcd 2
		{name: "trailing zeros do not count", in: "1.50000000000000000000000", want: Ratio{3, 2}},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "negative", in: "-1", wantErr: "plain non-negative decimal"},
		{name: "negative zero", in: "-0", wantErr: "plain non-negative decimal"},
		{name: "plus sign", in: "+1", wantErr: "plain non-negative decimal"},
		{name: "exponent", in: "1e3", wantErr: "plain non-negative decimal"},
		{name: "exponent with fraction", in: "2.5E-3", wantErr: "plain non-negative decimal"},
		{name: "leading point", in: ".5", wantErr: "before the decimal point"},
		{name: "trailing point", in: "5.", wantErr: "after the decimal point"},
		{name: "two points", in: "1.2.3", wantErr: "plain non-negative decimal"},
		{name: "space", in: " 1", wantErr: "plain non-negative decimal"},
		{name: "underscore", in: "1_000", wantErr: "plain non-negative decimal"},
		{name: "hex", in: "0x10", wantErr: "plain non-negative decimal"},
		{name: "NaN", in: "NaN", wantErr: "plain non-negative decimal"},
		{name: "Inf", in: "Inf", wantErr: "plain non-negative decimal"},
		{name: "19 digits", in: "1234567890123456789", wantErr: "significant digits"},
		{name: "19 digits with trailing integer zeros", in: "1000000000000000000", wantErr: "significant digits"},
		{name: "19 decimal places", in: "0.0000000000000000001", wantErr: "significant digits"},
		{name: "19 significant digits across the point", in: "123456789.0123456789", wantErr: "significant digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRatio(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRatio(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRatio(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseRatio(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestRatioFromFloat(t *testing.T) {
	tests := []struct {
		name    string
		in      float64
		want    Ratio
		wantErr bool
	}{
		// FormatFloat(2.1, 'f', -1, 64) = "2.1": the shortest string that
		// round-trips, so the operator's decimal comes back exactly.
		{name: "multiplier 2.1", in: 2.1, want: Ratio{21, 10}},
		{name: "floor 0.0021", in: 0.0021, want: Ratio{21, 10000}},
		{name: "default multiplier", in: 2.0, want: Ratio{2, 1}},
		{name: "default floor", in: 0.002, want: Ratio{1, 500}},
		{name: "default fraction", in: 0.05, want: Ratio{1, 20}},
		{name: "one tenth", in: 0.1, want: Ratio{1, 10}},
		{name: "zero", in: 0, want: Ratio{0, 1}},
		{name: "large integer", in: 1000, want: Ratio{1000, 1}},
		{name: "too small", in: 1e-20, wantErr: true}, // "0.00000000000000000001": 20 places
		{name: "too large", in: 1e19, wantErr: true},  // 20 digits
		{name: "negative", in: -0.5, wantErr: true},   // "-0.5"
		{name: "negative zero", in: math.Copysign(0, -1), wantErr: true},
		{name: "NaN", in: math.NaN(), wantErr: true},
		{name: "Inf", in: math.Inf(1), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RatioFromFloat(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("RatioFromFloat(%v) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("RatioFromFloat(%v) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestRatioFloat64(t *testing.T) {
	tests := []struct {
		name string
		r    Ratio
		want float64
	}{
		{"half", Ratio{1, 2}, 0.5},
		{"floor", Ratio{1, 500}, 0.002},
		{"multiplier", Ratio{21, 10}, 2.1},
		{"zero value is zero", Ratio{}, 0},
		{"negative numerator is zero", Ratio{-1, 2}, 0},
		{"zero denominator is zero", Ratio{3, 0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Float64(); got != tt.want {
				t.Fatalf("%v.Float64() = %v, want %v", tt.r, got, tt.want)
			}
		})
	}
}

// TestParseRatioMatchesBigRat checks random decimals against math/big's
// parser, which is exact.
func TestParseRatioMatchesBigRat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for range rng.IntN(9) + 1 { // at most 9+9 digits: always within the 18-digit limit
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		if rng.IntN(2) == 0 {
			b.WriteByte('.')
			for range rng.IntN(9) + 1 {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		s := b.String()
		got, err := ParseRatio(s)
		if err != nil {
			t.Fatalf("ParseRatio(%q): %v", s, err)
		}
		want, _ := new(big.Rat).SetString(s)
		if got.Num != want.Num().Int64() || got.Den != want.Denom().Int64() {
			t.Fatalf("ParseRatio(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestMul3MatchesBigInt(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	edge := []uint64{0, 1, 2, 7, math.MaxInt64, math.MaxUint64, 1 << 63, 1<<32 - 1, 1 << 32, 1_000_000_000_000_000_000}
	pick := func() uint64 {
		if rng.IntN(3) == 0 {
			return edge[rng.IntN(len(edge))]
		}
		return rng.Uint64() >> rng.UintN(64)
	}
	toBig := func(x u192) *big.Int {
		v := new(big.Int).SetUint64(x.hi)
		v.Lsh(v, 64).Add(v, new(big.Int).SetUint64(x.mid))
		v.Lsh(v, 64).Add(v, new(big.Int).SetUint64(x.lo))
		return v
	}
	for range 100000 {
		a, b, c := pick(), pick(), pick()
		d, e, f := pick(), pick(), pick()
		x, y := mul3(a, b, c), mul3(d, e, f)
		bx := new(big.Int).Mul(new(big.Int).SetUint64(a), new(big.Int).SetUint64(b))
		bx.Mul(bx, new(big.Int).SetUint64(c))
		by := new(big.Int).Mul(new(big.Int).SetUint64(d), new(big.Int).SetUint64(e))
		by.Mul(by, new(big.Int).SetUint64(f))
		if toBig(x).Cmp(bx) != 0 {
			t.Fatalf("mul3(%d, %d, %d) = %v, want %v", a, b, c, toBig(x), bx)
		}
		if x.cmp(y) != bx.Cmp(by) {
			t.Fatalf("cmp(%v, %v) = %d, want %d", bx, by, x.cmp(y), bx.Cmp(by))
		}
	}
}
