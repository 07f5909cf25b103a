package btyd

import (
	"fmt"
	"math"
)

// GammaGamma holds the parameters of the Gamma-Gamma spend model (Fader &
// Hardie 2013): the value of each transaction is Gamma(P, ν) with ν varying
// across customers as Gamma(Q, Gamma).
type GammaGamma struct {
	P     float64 `json:"p"`
	Q     float64 `json:"q"`
	Gamma float64 `json:"gamma"`
}

// Validate reports an error naming the first parameter that is not a finite
// positive number.
func (m GammaGamma) Validate() error {
	for _, p := range []struct {
		name string
		v    float64
	}{{"p", m.P}, {"q", m.Q}, {"gamma", m.Gamma}} {
		if !(p.v > 0) || math.IsInf(p.v, 0) {
			return fmt.Errorf("gammagamma.%s: must be a finite number > 0, got %v", p.name, p.v)
		}
	}
	return nil
}

// LogLikelihood is the log-likelihood of a repeat customer's mean
// transaction value given x repeat transactions. Customers with X = 0 or a
// non-positive mean contribute nothing (they carry no spend information).
func (m GammaGamma) LogLikelihood(s Summary) float64 {
	return m.logLikelihoodWith(m.termsOf(s.X), s)
}

// gammaGammaTerms are the parts of the log-likelihood that depend on the
// parameters and X only (three log-gammas), computed once per distinct X by a
// fit; grouped as LogLikelihood groups them, so either way gives the same bits.
type gammaGammaTerms struct {
	x, px float64
	head  float64 // log Γ(px+q) − log Γ(px) − log Γ(q) + q log γ
	pxlx  float64 // px log x
}

func (m GammaGamma) termsOf(x float64) gammaGammaTerms {
	if x <= 0 {
		return gammaGammaTerms{x: x}
	}
	p, q, g := m.P, m.Q, m.Gamma
	px := p * x
	l1, _ := math.Lgamma(px + q)
	l2, _ := math.Lgamma(px)
	l3, _ := math.Lgamma(q)
	return gammaGammaTerms{x: x, px: px, head: l1 - l2 - l3 + q*math.Log(g), pxlx: px * math.Log(x)}
}

func (m GammaGamma) logLikelihoodWith(t gammaGammaTerms, s Summary) float64 {
	if t.x <= 0 || s.Monetary <= 0 {
		return 0
	}
	return m.logLikelihoodLogM(t, s, math.Log(s.Monetary))
}

// logLikelihoodLogM is logLikelihoodWith given log(Monetary), for x > 0 and Monetary > 0.
func (m GammaGamma) logLikelihoodLogM(t gammaGammaTerms, s Summary, logMx float64) float64 {
	x, mx, px := t.x, s.Monetary, t.px
	return t.head + (px-1)*logMx + t.pxlx - (px+m.Q)*math.Log(m.Gamma+x*mx)
}

// sumLogLikelihoodLogM is sumLogLikelihood over groups of repeat customers with positive
// spend, given each group's log(Monetary): a fit takes those once, not once per evaluation.
// terms (as long as groups) holds each group's weighted term on the way, taken on pool's
// goroutines (nil: the caller's alone).
func (m GammaGamma) sumLogLikelihoodLogM(groups []group, logM, terms []float64, pool *termPool) float64 {
	pool.fillTerms(len(groups), func(lo, hi int) {
		var t gammaGammaTerms
		for i := lo; i < hi; i++ {
			g := &groups[i]
			if i == lo || g.s.X != t.x {
				t = m.termsOf(g.s.X)
			}
			terms[i] = g.n * m.logLikelihoodLogM(t, g.s, logM[i])
		}
	})
	return sumInOrder(terms[:len(groups)])
}

// sumLogLikelihood is Σ weight(i) × LogLikelihood(summary(i)) over n summaries,
// computing the X terms once per run of equal X.
func (m GammaGamma) sumLogLikelihood(n int, summary func(int) Summary, weight func(int) float64) float64 {
	var ll float64
	var t gammaGammaTerms
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
func (m GammaGamma) TotalLogLikelihood(ss []Summary) float64 {
	return m.sumLogLikelihood(len(ss), func(i int) Summary { return ss[i] }, func(int) float64 { return 1 })
}

// ExpectedSpend is the conditional expected value of one future transaction
// of a customer with X repeat transactions of mean value Monetary: a
// credibility-weighted mix of the population mean p·γ/(q-1) and the
// customer's own mean. For X = 0 it is the population mean. It requires
// Q > 1 (otherwise the population mean is infinite) and returns NaN then.
func (m GammaGamma) ExpectedSpend(s Summary) float64 {
	if m.Q <= 1 {
		return math.NaN()
	}
	x := s.X
	if s.Monetary <= 0 {
		x = 0
	}
	return m.P * (m.Gamma + x*s.Monetary) / (m.P*x + m.Q - 1)
}
