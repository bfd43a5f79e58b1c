package rules

import "math"

// The tail probabilities behind an alert's evidence, in natural-log space:
// the ones that matter are far below what a float64 holds as a plain
// probability near 1 − ε, and far above the smallest it holds as e^x.

const (
	cfMaxIter = 300
	cfEps     = 1e-15
	cfTiny    = 1e-300
)

// lnPoissonUpper is ln P(X ≥ x) for X ~ Poisson(mu), extended to real
// x > 0 as the regularized lower incomplete gamma P(x, mu). x ≤ 0 is
// certain (0); mu ≤ 0 with x > 0 is impossible (−Inf).
func lnPoissonUpper(x, mu float64) float64 {
	switch {
	case x <= 0:
		return 0
	case mu <= 0:
		return math.Inf(-1)
	}
	return lnGammaP(x, mu)
}

// lnGammaP is ln P(a, x), the regularized lower incomplete gamma function,
// for a > 0, x > 0: the series where it converges fast (x < a + 1),
// otherwise 1 − Q from Legendre's continued fraction.
func lnGammaP(a, x float64) float64 {
	lg, _ := math.Lgamma(a + 1)
	lnPre := -x + a*math.Log(x) - lg // ln(e^−x x^a / Γ(a+1))
	if x < a+1 {
		sum, term := 1.0, 1.0
		for n := 1; n < 10*cfMaxIter; n++ {
			term *= x / (a + float64(n))
			sum += term
			if term < sum*cfEps {
				break
			}
		}
		return lnPre + math.Log(sum)
	}
	// Q(a, x) = e^−x x^a / Γ(a) · 1/(x + 1 − a − 1·(1−a)/(x + 3 − a − …)),
	// evaluated with the modified Lentz method.
	b := x + 1 - a
	c := 1 / cfTiny
	d := 1 / b
	h := d
	for i := 1; i < cfMaxIter; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		del := lentz(an, b, &c, &d)
		h *= del
		if math.Abs(del-1) < cfEps {
			break
		}
	}
	lnQ := lnPre + math.Log(a) + math.Log(h) // Γ(a+1) = a·Γ(a)
	return math.Log1p(-math.Exp(lnQ))
}

// lnBetaI is ln I_x(a, b), the regularized incomplete beta function, for
// a, b > 0 and 0 ≤ x ≤ 1.
func lnBetaI(x, a, b float64) float64 {
	switch {
	case x <= 0:
		return math.Inf(-1)
	case x >= 1:
		return 0
	}
	if x > (a+1)/(a+b+2) {
		// The continued fraction converges on the other side.
		return math.Log1p(-math.Exp(lnBetaI(1-x, b, a)))
	}
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	lnPre := a*math.Log(x) + b*math.Log1p(-x) - math.Log(a) - (la + lb - lab)
	return lnPre + math.Log(betaCF(x, a, b))
}

// betaCF is the continued fraction of I_x(a, b) (modified Lentz).
func betaCF(x, a, b float64) float64 {
	qab, qap, qam := a+b, a+1, a-1
	c, d := 1.0, 1-qab*x/qap
	if math.Abs(d) < cfTiny {
		d = cfTiny
	}
	d = 1 / d
	h := d
	for m := 1; m < cfMaxIter; m++ {
		fm := float64(m)
		m2 := 2 * fm
		h *= lentz(fm*(b-fm)*x/((qam+m2)*(a+m2)), 1, &c, &d)
		del := lentz(-(a+fm)*(qab+fm)*x/((a+m2)*(qap+m2)), 1, &c, &d)
		h *= del
		if math.Abs(del-1) < cfEps {
			break
		}
	}
	return h
}

// lentz is one step of the modified Lentz method for a continued fraction
// b0 + a1/(b1 + a2/(b2 + …)): with the next coefficients an, bn it updates
// the running c and d and returns the factor the fraction's value takes.
func lentz(an, bn float64, c, d *float64) float64 {
	*d = bn + an**d
	if math.Abs(*d) < cfTiny {
		*d = cfTiny
	}
	*c = bn + an/(*c)
	if math.Abs(*c) < cfTiny {
		*c = cfTiny
	}
	*d = 1 / *d
	return *d * *c
}

// lnNegBinUpper is ln P(X ≥ x) for a negative binomial count with mean mu
// whose variance is mu + cv2·mu² (a Poisson count whose rate itself varies
// with squared coefficient of variation cv2, gamma-distributed), extended
// to real x. cv2 ≤ 0 is the Poisson case.
func lnNegBinUpper(x, mu, cv2 float64) float64 {
	switch {
	case x <= 0:
		return 0
	case mu <= 0:
		return math.Inf(-1)
	case cv2 <= 1e-9:
		return lnPoissonUpper(x, mu)
	}
	k := 1 / cv2
	// P(X ≥ x) = I_{μ/(μ+k)}(x, k).
	return lnBetaI(mu/(mu+k), x, k)
}

// lnStudentLower is ln P(T ≤ t) for Student's t with nu degrees of freedom.
func lnStudentLower(t, nu float64) float64 {
	if t > 0 {
		return math.Log1p(-math.Exp(lnStudentLower(-t, nu)))
	}
	// P(T ≤ t) = ½ I_{ν/(ν+t²)}(ν/2, ½) for t ≤ 0.
	return math.Log(0.5) + lnBetaI(nu/(nu+t*t), nu/2, 0.5)
}
