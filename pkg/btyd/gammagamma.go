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
	x, mx := s.X, s.Monetary
	if x <= 0 || mx <= 0 {
		return 0
	}
	p, q, g := m.P, m.Q, m.Gamma
	px := p * x
	l1, _ := math.Lgamma(px + q)
	l2, _ := math.Lgamma(px)
	l3, _ := math.Lgamma(q)
	return l1 - l2 - l3 + q*math.Log(g) + (px-1)*math.Log(mx) + px*math.Log(x) - (px+q)*math.Log(g+x*mx)
}

// TotalLogLikelihood sums LogLikelihood over a population.
func (m GammaGamma) TotalLogLikelihood(ss []Summary) float64 {
	var ll float64
	for _, s := range ss {
		ll += m.LogLikelihood(s)
	}
	return ll
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
