package btyd

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// The fits compute the log-likelihood's X terms once per distinct X. Summed that way, over
// summaries sorted by X as a fit sorts them, the total must have exactly the bits of FHL
// (2005) equation 6 and the Gamma-Gamma likelihood written out per customer, so that a fit,
// live or in a replay or offline, lands on the same parameters it did before the change.
func TestGroupedLogLikelihoodHasTheBitsOfThePerCustomerFormula(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	ss := make([]Summary, 5000)
	weights := make([]float64, len(ss))
	for i := range ss {
		x := float64(rng.IntN(12))
		if rng.IntN(50) == 0 {
			x = float64(20 + rng.IntN(300))
		}
		T := 1 + rng.Float64()*52
		tx := 0.0
		if x > 0 {
			tx = rng.Float64() * T
		}
		ss[i] = Summary{X: x, TX: tx, T: T, Monetary: rng.ExpFloat64() * 40}
		weights[i] = float64(1 + rng.IntN(3))
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].X < ss[j].X })
	for _, m := range []BGNBD{{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}, {R: 2.1, Alpha: 0.3, A: 0.01, B: 40}} {
		var want float64
		for i, s := range ss {
			want += weights[i] * bgnbdPerCustomer(m, s)
		}
		got := m.sumLogLikelihood(len(ss), func(i int) Summary { return ss[i] }, func(i int) float64 { return weights[i] })
		if math.Float64bits(got) != math.Float64bits(want) || math.IsNaN(got) {
			t.Errorf("BG/NBD %+v: grouped sum %v, per customer %v", m, got, want)
		}
	}
	for _, m := range []GammaGamma{{P: 6.25, Q: 3.74, Gamma: 15.44}, {P: 0.4, Q: 12, Gamma: 0.9}} {
		var want float64
		for i, s := range ss {
			want += weights[i] * gammaGammaPerCustomer(m, s)
		}
		got := m.sumLogLikelihood(len(ss), func(i int) Summary { return ss[i] }, func(i int) float64 { return weights[i] })
		if math.Float64bits(got) != math.Float64bits(want) || math.IsNaN(got) || want == 0 {
			t.Errorf("Gamma-Gamma %+v: grouped sum %v, per customer %v", m, got, want)
		}
	}
}

// bgnbdPerCustomer is FHL (2005) equation 6 for one customer, in log space.
func bgnbdPerCustomer(m BGNBD, s Summary) float64 {
	r, alpha, a, b, x := m.R, m.Alpha, m.A, m.B, s.X
	lr, _ := math.Lgamma(r + x)
	lr0, _ := math.Lgamma(r)
	a1 := lr - lr0 + r*math.Log(alpha)
	a2 := lbeta(a, b+x) - lbeta(a, b)
	a3 := -(r + x) * math.Log(alpha+s.T)
	if x == 0 {
		return a1 + a2 + a3
	}
	a4 := math.Log(a) - math.Log(b+x-1) - (r+x)*math.Log(alpha+s.TX)
	return a1 + a2 + logAddExp(a3, a4)
}

// gammaGammaPerCustomer is the Gamma-Gamma log-likelihood of one customer's mean spend.
func gammaGammaPerCustomer(m GammaGamma, s Summary) float64 {
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
