package rules

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// maxDigits bounds a parsed decimal so that both its numerator and its
// denominator (a power of ten) fit in an int64: 10^18 < 2^63 < 10^19.
const maxDigits = 18

// Ratio is an exact non-negative rational. Thresholds are written as
// decimals ("0.002", "2.1") and compared exactly through it: a float64 cannot
// hold 0.002, and an alert that fires or not depending on the last bit of a
// product is not reproducible between a live run and a backtest.
//
// A Ratio from ParseRatio is reduced and has Den > 0. The zero Ratio (and any
// Ratio with Num <= 0 or Den <= 0) is treated as 0 by the rules.
type Ratio struct{ Num, Den int64 }

// ParseRatio reads a plain non-negative decimal: digits, optionally followed
// by a point and more digits ("2", "2.0", "0.002", "1.5"). Signs, exponents,
// spaces, "NaN"/"Inf", and a leading or trailing point are rejected, as is any
// value needing more than 18 digits once leading zeros and trailing fractional
// zeros are dropped, or more than 18 decimal places.
func ParseRatio(s string) (Ratio, error) {
	intPart, fracPart, dot := strings.Cut(s, ".")
	if dot && fracPart == "" {
		return Ratio{}, fmt.Errorf("ratio %q: no digits after the decimal point", s)
	}
	if intPart == "" {
		if s == "" {
			return Ratio{}, errors.New("ratio: empty")
		}
		return Ratio{}, fmt.Errorf("ratio %q: no digits before the decimal point", s)
	}
	for _, part := range [2]string{intPart, fracPart} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return Ratio{}, fmt.Errorf("ratio %q: want a plain non-negative decimal like 0.002", s)
			}
		}
	}
	fracPart = strings.TrimRight(fracPart, "0")
	digits := intPart + fracPart
	for len(digits) > 1 && digits[0] == '0' {
		digits = digits[1:]
	}
	if len(fracPart) > maxDigits || len(digits) > maxDigits {
		return Ratio{}, fmt.Errorf("ratio %q: more than %d significant digits or decimal places", s, maxDigits)
	}
	num, err := strconv.ParseInt(digits, 10, 64)
	if err != nil { // unreachable after the checks above; kept so a bug cannot yield a wrong value
		return Ratio{}, fmt.Errorf("ratio %q: %w", s, err)
	}
	den := int64(1)
	for range len(fracPart) {
		den *= 10
	}
	g := gcd(num, den)
	return Ratio{Num: num / g, Den: den / g}, nil
}

// RatioFromFloat converts a configured float64 to the decimal it was written
// as: strconv's shortest representation round-trips, so 2.1 becomes 21/10, not
// the binary value 2.100000000000000088817841970012523...
func RatioFromFloat(f float64) (Ratio, error) {
	return ParseRatio(strconv.FormatFloat(f, 'f', -1, 64))
}

// Float64 is the nearest float64, for reports only.
func (r Ratio) Float64() float64 {
	n, d := r.parts()
	return float64(n) / float64(d)
}

// String formats the ratio as num/den.
func (r Ratio) String() string { return fmt.Sprintf("%d/%d", r.Num, r.Den) }

// parts returns the ratio as unsigned parts with a positive denominator,
// mapping anything that is not a valid non-negative ratio to 0/1.
func (r Ratio) parts() (num, den uint64) {
	if r.Num <= 0 || r.Den <= 0 {
		return 0, 1
	}
	return uint64(r.Num), uint64(r.Den)
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	if a == 0 {
		return 1
	}
	return a
}

// u192 is an unsigned 192-bit integer. A product of three non-negative int64
// values (a count, a threshold's numerator and the baseline's denominator)
// needs up to 189 bits; comparing such products exactly is all the rules need.
type u192 struct{ hi, mid, lo uint64 }

// mul3 returns a*b*c exactly.
func mul3(a, b, c uint64) u192 {
	h, l := bits.Mul64(a, b)
	h1, lo := bits.Mul64(l, c)
	h2, l2 := bits.Mul64(h, c)
	mid, carry := bits.Add64(h1, l2, 0)
	return u192{hi: h2 + carry, mid: mid, lo: lo}
}

// cmp returns -1, 0 or +1 as x is less than, equal to or greater than y.
func (x u192) cmp(y u192) int {
	switch {
	case x.hi != y.hi:
		return cmp.Compare(x.hi, y.hi)
	case x.mid != y.mid:
		return cmp.Compare(x.mid, y.mid)
	default:
		return cmp.Compare(x.lo, y.lo)
	}
}

// nonNeg maps a count or amount to the unsigned decision domain. Stored
// aggregates are never negative; if an inconsistent caller made a window sum
// negative, it counts as nothing rather than wrapping around to 2^64-1.
func nonNeg(x int64) uint64 {
	if x < 0 {
		return 0
	}
	return uint64(x)
}
