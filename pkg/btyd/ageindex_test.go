package btyd

import (
	"math"
	"math/rand/v2"
	"runtime"
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
		if got := m.sumLogLikelihoodLogM(pop, logM, make([]float64, len(pop)), nil); math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%+v: with log(Monetary) taken once %v, per summary %v", m, got, want)
		}
	}
}

// A fit's likelihood is the same bits on any number of cores: its terms are taken by a pool
// of up to GOMAXPROCS goroutines, but summed in one order. A sweeper on a larger machine than
// the replay's fits the same model.
func TestLikelihoodIsTheSameBitsOnAnyNumberOfCores(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	// Ages in fractions of a day, so each purchase count's run of groups (X = 0's first)
	// spans several chunks: a chunk starting inside a run must take its own terms.
	var bs []Summary
	for range 16 * termChunk {
		x := float64(r.IntN(4))
		s := Summary{X: x, T: float64(1+r.IntN(400*24)) / 24 / 7}
		if x > 0 {
			s.TX = s.T * r.Float64()
		}
		bs = append(bs, s)
	}
	bg := newAgeIndex(compress(bs, func(s Summary) Summary { return s }))
	if bg.groups[2*termChunk].s.X != 0 {
		t.Fatalf("%d groups, of which fewer than %d buy none: the first run does not span chunks", len(bg.groups), 2*termChunk)
	}
	var gs []Summary
	for range 16 * termChunk {
		gs = append(gs, Summary{X: float64(1 + r.IntN(10)), Monetary: float64(1+r.IntN(20000)) / 100 * (0.5 + r.Float64())})
	}
	gg := compress(gs, func(s Summary) Summary { return s })
	logM := make([]float64, len(gg))
	for i, g := range gg {
		logM[i] = math.Log(g.s.Monetary)
	}
	type params struct {
		bg BGNBD
		gg GammaGamma
	}
	var ps []params
	for range 50 {
		ps = append(ps, params{
			bg: BGNBD{R: math.Exp(r.NormFloat64()), Alpha: math.Exp(r.NormFloat64()), A: math.Exp(r.NormFloat64()), B: math.Exp(r.NormFloat64())},
			gg: GammaGamma{P: math.Exp(r.NormFloat64()), Q: math.Exp(r.NormFloat64()), Gamma: math.Exp(r.NormFloat64())},
		})
	}
	sums := func() (out []uint64) {
		pool := newTermPool(len(bg.groups), maxTermWorkers)
		defer pool.close()
		bg.pool = pool
		defer func() { bg.pool = nil }()
		terms := make([]float64, len(gg))
		for _, p := range ps {
			out = append(out, math.Float64bits(bg.sumLogLikelihood(p.bg)),
				math.Float64bits(p.gg.sumLogLikelihoodLogM(gg, logM, terms, pool)))
		}
		return out
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	one := sums()
	for _, procs := range []int{2, 3, 8} {
		runtime.GOMAXPROCS(procs)
		pool := newTermPool(len(bg.groups), maxTermWorkers)
		if pool == nil {
			t.Fatalf("GOMAXPROCS %d: no pool", procs)
		}
		pool.close()
		for i, got := range sums() {
			if got != one[i] {
				t.Fatalf("GOMAXPROCS %d: sum %d is %v, on one core %v", procs, i, math.Float64frombits(got), math.Float64frombits(one[i]))
			}
		}
	}
}

// BenchmarkLikelihoodDays is one evaluation of a refit's BG/NBD likelihood over a population
// of 20,000 customers observed in whole days, its terms taken by a fit's pool (-cpu 1: the
// caller's goroutine alone).
func BenchmarkLikelihoodDays(b *testing.B) {
	ix := newAgeIndex(compress(daySummaries(20000, 1), func(s Summary) Summary { return s }))
	ix.pool = newTermPool(len(ix.groups), runtime.GOMAXPROCS(0))
	defer ix.pool.close()
	m := BGNBD{R: 0.25, Alpha: 4.4, A: 0.8, B: 2.4}
	for b.Loop() {
		ix.sumLogLikelihood(m)
	}
	b.ReportMetric(float64(len(ix.groups)), "groups")
}
