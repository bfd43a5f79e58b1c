package rules

import (
	"math"
	"testing"
)

// pmfUpper sums a probability mass function's terms from n0 up until they
// stop mattering, in log space: the definition, not the incomplete
// gamma or beta functions the code uses.
func pmfUpper(n0 int, lnPMF func(n int) float64) float64 {
	best := math.Inf(-1)
	var terms []float64
	for n := n0; n < n0+100000; n++ {
		t := lnPMF(n)
		terms = append(terms, t)
		best = max(best, t)
		if t < best-50 && n > n0+10 {
			break
		}
	}
	var s float64
	for _, t := range terms {
		s += math.Exp(t - best)
	}
	return best + math.Log(s)
}

func lnFact(n int) float64 { v, _ := math.Lgamma(float64(n) + 1); return v }

func TestPoissonUpperAgainstTheSum(t *testing.T) {
	for _, c := range []struct {
		x  int
		mu float64
	}{{1, 0.5}, {5, 2}, {8, 2}, {30, 0.2}, {75, 50}, {150, 50}, {3, 40}, {500, 480}, {2000, 1000}} {
		want := pmfUpper(c.x, func(n int) float64 { return -c.mu + float64(n)*math.Log(c.mu) - lnFact(n) })
		got := lnPoissonUpper(float64(c.x), c.mu)
		if math.Abs(got-want) > 1e-9*max(1, math.Abs(want)) {
			t.Errorf("ln P(Poisson(%g) ≥ %d) = %.12g, the sum gives %.12g", c.mu, c.x, got, want)
		}
	}
	// P(Poisson(2) ≥ 5) = 1 − 7e^−2, worked by hand.
	if got, want := math.Exp(lnPoissonUpper(5, 2)), 1-7*math.Exp(-2); math.Abs(got-want) > 1e-12 {
		t.Errorf("P(Poisson(2) ≥ 5) = %g, want %g", got, want)
	}
	if lnPoissonUpper(0, 3) != 0 || !math.IsInf(lnPoissonUpper(2, 0), -1) {
		t.Error("edge cases: x ≤ 0 is certain, mu = 0 makes x > 0 impossible")
	}
}

func TestNegBinUpperAgainstTheSum(t *testing.T) {
	for _, c := range []struct {
		x       int
		mu, cv2 float64
	}{{5, 2, 0.1}, {8, 2, 0.5}, {30, 0.2, 0.3}, {75, 50, 0.05}, {150, 50, 0.2}, {3, 40, 1}, {100, 10, 2}} {
		k := 1 / c.cv2
		q := k / (k + c.mu)
		lgk, _ := math.Lgamma(k)
		want := pmfUpper(c.x, func(n int) float64 {
			lg, _ := math.Lgamma(float64(n) + k)
			return lg - lgk - lnFact(n) + k*math.Log(q) + float64(n)*math.Log1p(-q)
		})
		got := lnNegBinUpper(float64(c.x), c.mu, c.cv2)
		if math.Abs(got-want) > 1e-8*max(1, math.Abs(want)) {
			t.Errorf("ln P(NB(μ %g, cv² %g) ≥ %d) = %.12g, the sum gives %.12g", c.mu, c.cv2, c.x, got, want)
		}
	}
	// More spread, less surprise; no spread is Poisson.
	if !(lnNegBinUpper(20, 5, 0.5) > lnNegBinUpper(20, 5, 0.1) && lnNegBinUpper(20, 5, 0.1) > lnNegBinUpper(20, 5, 0)) {
		t.Error("the tail does not grow with the spread")
	}
	if lnNegBinUpper(20, 5, 0) != lnPoissonUpper(20, 5) {
		t.Error("cv² 0 is not Poisson")
	}
}

func TestStudentLower(t *testing.T) {
	// Table values of Student's t with 6 degrees of freedom.
	for _, c := range []struct{ t, p float64 }{{0, 0.5}, {-1.943, 0.05}, {-2.447, 0.025}, {-3.143, 0.01}, {-3.707, 0.005}, {-5.959, 0.0005}, {1.943, 0.95}} {
		if got := math.Exp(lnStudentLower(c.t, 6)); math.Abs(got-c.p) > 1e-3*max(c.p, 0.01) {
			t.Errorf("P(T6 ≤ %g) = %.6f, the table says %g", c.t, got, c.p)
		}
	}
	if got := lnStudentLower(-60, 6); math.IsInf(got, 0) || got > -20 {
		t.Errorf("far tail ln P(T6 ≤ −60) = %g: want finite and tiny", got)
	}
}
