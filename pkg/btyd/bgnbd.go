package btyd

import (
	"errors"
	"fmt"
	"math"
)

// Summary is one customer's calibration-period purchase history in the form
// the models need. X is the number of repeat purchases (the first purchase is
// not counted), TX the time of the last purchase measured from the first one
// (0 when X is 0), T the time from the first purchase to the end of the
// calibration period, and Monetary the mean value of the X repeat purchases
// (0 when X is 0). Times are in the caller's unit.
type Summary struct {
	X        float64
	TX       float64
	T        float64
	Monetary float64
}

// ErrInvalidSummary is returned (wrapped) for a summary the models cannot use.
var ErrInvalidSummary = errors.New("invalid customer summary")

// Validate reports whether s is a consistent summary: non-negative counts and
// times, 0 <= TX <= T, TX = 0 when X = 0.
func (s Summary) Validate() error {
	switch {
	case !(s.X >= 0) || math.IsInf(s.X, 0):
		return fmt.Errorf("%w: x=%v must be a finite number >= 0", ErrInvalidSummary, s.X)
	case !(s.TX >= 0) || !(s.T >= 0) || math.IsInf(s.T, 0):
		return fmt.Errorf("%w: t_x=%v and T=%v must be finite numbers >= 0", ErrInvalidSummary, s.TX, s.T)
	case s.TX > s.T:
		return fmt.Errorf("%w: t_x=%v is after T=%v", ErrInvalidSummary, s.TX, s.T)
	case s.X == 0 && s.TX != 0:
		return fmt.Errorf("%w: t_x=%v must be 0 when x=0", ErrInvalidSummary, s.TX)
	case !(s.Monetary >= 0) || math.IsInf(s.Monetary, 0):
		return fmt.Errorf("%w: monetary=%v must be a finite number >= 0", ErrInvalidSummary, s.Monetary)
	}
	return nil
}

// BGNBD holds the four parameters of the BG/NBD model: purchase rates are
// Gamma(R, Alpha) distributed across customers and the per-purchase dropout
// probability is Beta(A, B) distributed.
type BGNBD struct {
	R     float64 `json:"r"`
	Alpha float64 `json:"alpha"`
	A     float64 `json:"a"`
	B     float64 `json:"b"`
}

// Validate reports an error naming the first parameter that is not a finite
// positive number.
func (m BGNBD) Validate() error {
	for _, p := range []struct {
		name string
		v    float64
	}{{"r", m.R}, {"alpha", m.Alpha}, {"a", m.A}, {"b", m.B}} {
		if !(p.v > 0) || math.IsInf(p.v, 0) {
			return fmt.Errorf("bgnbd.%s: must be a finite number > 0, got %v", p.name, p.v)
		}
	}
	return nil
}

// LogLikelihood is the log-likelihood of one customer's summary (FHL 2005,
// equation 6), computed in log space.
func (m BGNBD) LogLikelihood(s Summary) float64 {
	return m.logLikelihoodWith(m.termsOf(s.X), s)
}

// bgnbdTerms are the parts of the log-likelihood that depend on the
// parameters and the number of repeat purchases only. A fit sums over
// summaries sorted by X, so it computes them (four log-gammas) once per
// distinct X instead of once per customer; the sums are grouped as
// LogLikelihood groups them, so either way gives the same bits.
type bgnbdTerms struct {
	x   float64
	a12 float64 // log Γ(r+x) − log Γ(r) + r log α + log B(a, b+x) − log B(a, b)
	a4  float64 // log a − log(b+x−1), for x > 0
}

func (m BGNBD) termsOf(x float64) bgnbdTerms {
	r, alpha, a, b := m.R, m.Alpha, m.A, m.B
	lr, _ := math.Lgamma(r + x)
	lr0, _ := math.Lgamma(r)
	a1 := lr - lr0 + r*math.Log(alpha)
	a2 := lbeta(a, b+x) - lbeta(a, b)
	t := bgnbdTerms{x: x, a12: a1 + a2}
	if x != 0 {
		t.a4 = math.Log(a) - math.Log(b+x-1)
	}
	return t
}

func (m BGNBD) logLikelihoodWith(t bgnbdTerms, s Summary) float64 {
	logT := math.Log(m.Alpha + s.T)
	if t.x == 0 {
		return m.logLikelihoodLogs(t, logT, 0)
	}
	return m.logLikelihoodLogs(t, logT, math.Log(m.Alpha+s.TX))
}

// logLikelihoodLogs is logLikelihoodWith given log(α+T) and log(α+TX) (unused when x = 0).
func (m BGNBD) logLikelihoodLogs(t bgnbdTerms, logT, logTX float64) float64 {
	r, x := m.R, t.x
	a3 := -(r + x) * logT
	if x == 0 {
		return t.a12 + a3
	}
	a4 := t.a4 - (r+x)*logTX
	return t.a12 + logAddExp(a3, a4)
}

// sumLogLikelihood is Σ weight(i) × LogLikelihood(summary(i)) over n summaries,
// computing the X terms once per run of equal X.
func (m BGNBD) sumLogLikelihood(n int, summary func(int) Summary, weight func(int) float64) float64 {
	var ll float64
	var t bgnbdTerms
	for i := range n {
		s := summary(i)
		if i == 0 || s.X != t.x {
			t = m.termsOf(s.X)
		}
		ll += weight(i) * m.logLikelihoodWith(t, s)
	}
	return ll
}

// TotalLogLikelihood sums LogLikelihood over a population.
func (m BGNBD) TotalLogLikelihood(ss []Summary) float64 {
	return m.sumLogLikelihood(len(ss), func(i int) Summary { return ss[i] }, func(int) float64 { return 1 })
}

// logOddsDead is log(P(dead)/P(alive)) for a customer with x > 0.
func (m BGNBD) logOddsDead(s Summary) float64 {
	return math.Log(m.A) - math.Log(m.B+s.X-1) +
		(m.R+s.X)*(math.Log(m.Alpha+s.T)-math.Log(m.Alpha+s.TX))
}

// PAlive is the probability that a customer with history s is still alive at
// the end of the calibration period (FHL 2005, equation 13). It is exactly 1
// when X is 0 (the model assumes nobody drops out before a repeat purchase)
// and never NaN: the odds are formed in log space and passed through a
// logistic function.
func (m BGNBD) PAlive(s Summary) float64 {
	if s.X == 0 {
		return 1
	}
	return logistic(-m.logOddsDead(s))
}

// ExpectedPurchases is the conditional expected number of purchases in the
// next t time units for a customer with history s (FHL 2005, equation 10).
//
// The Gaussian hypergeometric function in that formula is evaluated after an
// Euler transformation, 2F1(r+x, b+x; c; z) = (1-z)^(a-1-r-x)·2F1(a+b-1-r, a-1; c; z)
// with c = a+b+x-1, whose series has small numerator parameters and therefore
// converges quickly and without overflow even for very large x; the power
// (1-z)^(r+x) in front of it cancels analytically.
func (m BGNBD) ExpectedPurchases(s Summary, t float64) float64 {
	if t <= 0 {
		return 0
	}
	r, alpha, a, b, x := m.R, m.Alpha, m.A, m.B, s.X
	c := a + b + x - 1
	z := t / (alpha + s.T + t)
	// (1-z)^(r+x) · 2F1(r+x, b+x; c; z) = (1-z)^(a-1) · 2F1(a+b-1-r, a-1; c; z)
	h := hyp2f1(a+b-1-r, a-1, c, z)
	inner := 1 - math.Exp((a-1)*math.Log1p(-z))*h
	num := c / (a - 1) * inner
	if math.Abs(a-1) < 1e-9 {
		// Limit a -> 1: (1 - (1-z)^(a-1) H)/(a-1) -> -log(1-z) - dH/da; use a
		// symmetric finite difference, which is accurate to O(eps^2).
		const eps = 1e-6
		lo, hi := m, m
		lo.A, hi.A = a-eps, a+eps
		return (lo.ExpectedPurchases(s, t) + hi.ExpectedPurchases(s, t)) / 2
	}
	if x == 0 {
		return num
	}
	return num * logistic(-m.logOddsDead(s))
}

// UnconditionalExpectedPurchases is E[X(t)] for a randomly chosen new
// customer (FHL 2005, equation 9), useful as a sanity check.
func (m BGNBD) UnconditionalExpectedPurchases(t float64) float64 {
	r, alpha, a, b := m.R, m.Alpha, m.A, m.B
	z := t / (alpha + t)
	// (alpha/(alpha+t))^r 2F1(r, b; a+b-1; z) = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b-1; z)
	h := hyp2f1(a+b-1-r, a-1, a+b-1, z)
	return (a + b - 1) / (a - 1) * (1 - math.Exp((a-1)*math.Log1p(-z))*h)
}

// hyp2f1 evaluates the Gaussian hypergeometric series 2F1(a, b; c; z) for
// 0 <= z < 1 by direct summation with a relative tolerance of 1e-15. Callers
// arrange for the series to converge quickly (see ExpectedPurchases).
func hyp2f1(a, b, c, z float64) float64 {
	sum, term := 1.0, 1.0
	for k := 0.0; k < 1e6; k++ {
		term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
		sum += term
		if term == 0 || math.Abs(term) <= 1e-15*math.Abs(sum) {
			break
		}
	}
	return sum
}

func lbeta(a, b float64) float64 {
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	return la + lb - lab
}

func logAddExp(x, y float64) float64 {
	if x < y {
		x, y = y, x
	}
	if math.IsInf(x, -1) {
		return x
	}
	return x + math.Log1p(math.Exp(y-x))
}

// logistic is 1/(1+exp(-v)) without overflow for large |v|.
func logistic(v float64) float64 {
	if v >= 0 {
		return 1 / (1 + math.Exp(-v))
	}
	e := math.Exp(v)
	return e / (1 + e)
}

// ProbPurchaseWithin is the probability that a customer with history s buys at least once in
// the next t time units. A customer drops out only right after a purchase, so with no
// purchase in the period a living one stays alive, and given alive the purchase rate is
// Gamma(r+x, α+T) (FHL 2005): P = P(alive) · (1 − ((α+T)/(α+T+t))^(r+x)).
func (m BGNBD) ProbPurchaseWithin(s Summary, t float64) float64 {
	if t <= 0 {
		return 0
	}
	none := math.Exp((m.R + s.X) * (math.Log(m.Alpha+s.T) - math.Log(m.Alpha+s.T+t)))
	return m.PAlive(s) * (1 - none)
}
