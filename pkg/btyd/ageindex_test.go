package btyd

import (
	"math"
	"math/rand/v2"
	"testing"
)

// daySummaries is a population observed in whole days (in weeks, as the pipeline fits it):
// many customers share each T and TX.
func daySummaries(n int, seed uint64) []Summary {
	r := rand.New(rand.NewPCG(seed, 1))
	ss := make([]Summary, n)
	for i := range ss {
		t := float64(1+r.IntN(400)) / 7
		x := float64(r.IntN(12))
		tx := 0.0
		if x > 0 {
			tx = float64(r.IntN(int(t*7)+1)) / 7
		}
		ss[i] = Summary{X: x, TX: tx, T: t}
	}
	return ss
}

// The indexed likelihood a fit evaluates is the per-summary one, bit for bit, for any
// parameters: it only takes the same logarithms once per distinct value.
func TestAgeIndexSumsTheSameBits(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, seed := range []uint64{1, 2, 3} {
		pop := compress(daySummaries(5000, seed), func(s Summary) Summary { return s })
		ix := newAgeIndex(pop)
		if len(ix.ts) >= len(pop) || len(ix.txs) >= len(pop) {
			t.Fatalf("%d groups but %d distinct T and %d distinct TX: nothing shared", len(pop), len(ix.ts), len(ix.txs))
		}
		for range 200 {
			m := BGNBD{R: math.Exp(r.NormFloat64() * 2), Alpha: math.Exp(r.NormFloat64() * 2),
				A: math.Exp(r.NormFloat64() * 2), B: math.Exp(r.NormFloat64() * 2)}
			want := m.sumLogLikelihood(len(pop), func(i int) Summary { return pop[i].s }, func(i int) float64 { return pop[i].n })
			if got := ix.sumLogLikelihood(m); math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("%+v: indexed %v, per summary %v", m, got, want)
			}
		}
	}
}

// BenchmarkFitBGNBDDays fits a population of 20,000 customers observed in whole days, the
// shape of the pipeline's refits.
func BenchmarkFitBGNBDDays(b *testing.B) {
	ss := daySummaries(20000, 1)
	for b.Loop() {
		if _, err := FitBGNBDPenalized(ss, 0.0001); err != nil {
			b.Fatal(err)
		}
	}
}

// The Gamma-Gamma likelihood a fit evaluates, with each group's log(Monetary) taken once,
// is the per-summary one, bit for bit.
func TestGammaGammaLogMSumsTheSameBits(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	var ss []Summary
	for range 3000 {
		ss = append(ss, Summary{X: float64(1 + r.IntN(10)), Monetary: float64(1+r.IntN(20000)) / 100 * (0.5 + r.Float64())})
	}
	pop := compress(ss, func(s Summary) Summary { return s })
	logM := make([]float64, len(pop))
	for i, g := range pop {
		logM[i] = math.Log(g.s.Monetary)
	}
	for range 200 {
		m := GammaGamma{P: math.Exp(r.NormFloat64() * 2), Q: math.Exp(r.NormFloat64() * 2), Gamma: math.Exp(r.NormFloat64() * 2)}
		want := m.sumLogLikelihood(len(pop), func(i int) Summary { return pop[i].s }, func(i int) float64 { return pop[i].n })
		if got := m.sumLogLikelihoodLogM(pop, logM); math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%+v: with log(Monetary) taken once %v, per summary %v", m, got, want)
		}
	}
}
