package btyd

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// ErrNoData is returned when a fit has no usable customers.
var ErrNoData = errors.New("no usable customers to fit")

// ErrNotConverged is returned when the optimizer ends without meeting its
// tolerance.
var ErrNotConverged = errors.New("maximum-likelihood fit did not converge")

// ErrUnidentified is returned when the likelihood keeps growing as a parameter
// runs off towards 0 or infinity: the data do not identify the model (for
// BG/NBD, typically a history too short to show anyone dropping out). The
// search is bounded to parameters within [1e-6, 1e6]; an optimum within a
// factor of 10 of a bound counts as running off.
var ErrUnidentified = errors.New("the data do not identify the model: a parameter runs off to its bound")

// maxEvals bounds the objective evaluations of a fit: a well-posed fit takes a
// few hundred to a few thousand; more means the likelihood is flat along a ridge.
const maxEvals = 12000

// maxLogParam bounds the search (|log parameter| <= maxLogParam); an optimum
// beyond edgeLogParam is ErrUnidentified.
var (
	maxLogParam  = math.Log(1e6)
	edgeLogParam = math.Log(1e5)
)

// bounded wraps an objective over log-parameters so that it is +Inf outside
// the search bounds.
func bounded(f func([]float64) float64) func([]float64) float64 {
	return func(v []float64) float64 {
		for _, x := range v {
			if math.Abs(x) > maxLogParam {
				return math.Inf(1)
			}
		}
		return f(v)
	}
}

// checkIdentified returns ErrUnidentified when an optimum lies at the edge of
// the search bounds.
func checkIdentified(v []float64, names ...string) error {
	for i, x := range v {
		if math.Abs(x) > edgeLogParam {
			name := fmt.Sprintf("parameter %d", i+1)
			if i < len(names) {
				name = names[i]
			}
			return fmt.Errorf("%w (%s = %.3g)", ErrUnidentified, name, math.Exp(x))
		}
	}
	return nil
}

// BGNBDFit is the result of fitting the BG/NBD model.
type BGNBDFit struct {
	Params    BGNBD
	LogLik    float64
	Customers int
	Evals     int
}

// GammaGammaFit is the result of fitting the Gamma-Gamma model.
type GammaGammaFit struct {
	Params    GammaGamma
	LogLik    float64
	Customers int // customers with X > 0 and a positive mean spend
	Evals     int
}

// FitBGNBD finds the maximum-likelihood BG/NBD parameters for the summaries
// by Nelder-Mead search over the logarithms of the parameters (which keeps
// them positive without constraints), restarted from its own optimum until
// the log-likelihood stops improving.
func FitBGNBD(ss []Summary) (BGNBDFit, error) { return FitBGNBDPenalized(ss, 0) }

// FitBGNBDPenalized is FitBGNBD with an L2 penalty on the logarithms of the
// parameters: it minimizes the mean negative log-likelihood plus penalizer ×
// Σ log(θ)² (the penalizer_coef of the Python lifetimes package). A small
// penalizer (0.001) keeps a short history, which cannot show anyone dropping
// out, from sending a and b off to 0 or infinity, at a negligible cost to a
// well-posed fit; 0 is the plain maximum-likelihood fit. LogLik is the
// unpenalized log-likelihood at the result.
func FitBGNBDPenalized(ss []Summary, penalizer float64) (BGNBDFit, error) {
	return FitBGNBDPenalizedOn(ss, penalizer, 1)
}

// FitBGNBDPenalizedOn is FitBGNBDPenalized with the likelihood's terms taken on up to workers
// goroutines (at most GOMAXPROCS; 1 or less: the caller's alone). The result is the same bits
// whatever workers is. More than one pays where the fit waits on the critical path and the
// other cores are idle (a replay's refits: their fitting time fell by 44%); on a machine busy
// with other work the helpers, which spin between evaluations, take CPU from it.
func FitBGNBDPenalizedOn(ss []Summary, penalizer float64, workers int) (BGNBDFit, error) {
	if penalizer < 0 || math.IsNaN(penalizer) || math.IsInf(penalizer, 0) {
		return BGNBDFit{}, fmt.Errorf("fitting BG/NBD: penalizer %v: must be a finite number >= 0", penalizer)
	}
	if len(ss) == 0 {
		return BGNBDFit{}, fmt.Errorf("fitting BG/NBD: %w", ErrNoData)
	}
	for i, s := range ss {
		if err := s.Validate(); err != nil {
			return BGNBDFit{}, fmt.Errorf("fitting BG/NBD: customer %d: %w", i, err)
		}
	}
	pop := newAgeIndex(compress(ss, func(s Summary) Summary { s.Monetary = 0; return s }))
	pop.pool = newTermPool(len(pop.groups), workers)
	defer pop.pool.close()
	nll := func(v []float64) float64 {
		m := BGNBD{R: math.Exp(v[0]), Alpha: math.Exp(v[1]), A: math.Exp(v[2]), B: math.Exp(v[3])}
		ll := pop.sumLogLikelihood(m)
		if math.IsNaN(ll) {
			return math.Inf(1)
		}
		return -ll
	}
	objective := nll
	if penalizer > 0 {
		n := float64(len(ss))
		objective = func(v []float64) float64 {
			var pen float64
			for _, x := range v {
				pen += x * x
			}
			return nll(v)/n + penalizer*pen
		}
	}
	v, _, evals, err := minimize(bounded(objective), []float64{0, 0, 0, 0})
	if err == nil {
		err = checkIdentified(v, "r", "alpha", "a", "b")
	}
	if err != nil {
		return BGNBDFit{}, fmt.Errorf("fitting BG/NBD: %w", err)
	}
	return BGNBDFit{
		Params:    BGNBD{R: math.Exp(v[0]), Alpha: math.Exp(v[1]), A: math.Exp(v[2]), B: math.Exp(v[3])},
		LogLik:    -nll(v),
		Customers: len(ss),
		Evals:     evals,
	}, nil
}

// FitGammaGamma finds the maximum-likelihood Gamma-Gamma parameters from the
// customers with at least one repeat purchase and a positive mean spend;
// the others carry no information about spend and are ignored.
func FitGammaGamma(ss []Summary) (GammaGammaFit, error) { return FitGammaGammaOn(ss, 1) }

// FitGammaGammaOn is FitGammaGamma with the likelihood's terms taken on up to workers
// goroutines, the same bits whatever workers is (see FitBGNBDPenalizedOn).
func FitGammaGammaOn(ss []Summary, workers int) (GammaGammaFit, error) {
	var rep []Summary
	for i, s := range ss {
		if err := s.Validate(); err != nil {
			return GammaGammaFit{}, fmt.Errorf("fitting Gamma-Gamma: customer %d: %w", i, err)
		}
		if s.X > 0 && s.Monetary > 0 {
			rep = append(rep, s)
		}
	}
	if len(rep) == 0 {
		return GammaGammaFit{}, fmt.Errorf("fitting Gamma-Gamma: %w (no repeat customers with positive spend)", ErrNoData)
	}
	pop := compress(rep, func(s Summary) Summary { s.TX, s.T = 0, 0; return s })
	// Spend is fitted in units of its mean (gamma is a scale parameter: p and q do not
	// depend on the currency's unit), so the search starts near the optimum and the bounds
	// on gamma hold for cents as for dollars. The mean is summed in the groups' sorted order.
	var total, count float64
	for _, g := range pop {
		total += g.n * g.s.Monetary
		count += g.n
	}
	scale := total / count
	scaled := make([]group, len(pop))
	for i, g := range pop {
		scaled[i] = g
		scaled[i].s.Monetary = g.s.Monetary / scale
	}
	logM := make([]float64, len(scaled)) // every group has X > 0 and Monetary > 0
	for i, g := range scaled {
		logM[i] = math.Log(g.s.Monetary)
	}
	terms, pool := make([]float64, len(scaled)), newTermPool(len(scaled), workers)
	defer pool.close()
	nll := func(v []float64) float64 {
		m := GammaGamma{P: math.Exp(v[0]), Q: math.Exp(v[1]), Gamma: math.Exp(v[2])}
		ll := m.sumLogLikelihoodLogM(scaled, logM, terms, pool)
		if math.IsNaN(ll) {
			return math.Inf(1)
		}
		return -ll
	}
	v, _, evals, err := minimize(bounded(nll), []float64{0, 0, 0})
	if err == nil {
		err = checkIdentified(v, "p", "q", "gamma")
	}
	if err != nil {
		return GammaGammaFit{}, fmt.Errorf("fitting Gamma-Gamma: %w", err)
	}
	params := GammaGamma{P: math.Exp(v[0]), Q: math.Exp(v[1]), Gamma: math.Exp(v[2]) * scale}
	ll := params.sumLogLikelihood(len(pop), func(i int) Summary { return pop[i].s }, func(i int) float64 { return pop[i].n })
	return GammaGammaFit{
		Params:    params,
		LogLik:    ll,
		Customers: len(rep),
		Evals:     evals,
	}, nil
}

// ageIndex is a fit's population with each group's T and TX replaced by indexes into the
// distinct values: a population observed in whole days has a few hundred of each against
// thousands of groups, so an evaluation of the likelihood takes log(α+T) and log(α+TX) once
// per distinct value instead of once per group, the same numbers in the same order.
type ageIndex struct {
	groups     []group
	ti, txi    []int32
	ts, txs    []float64
	logT, logX []float64 // log(α+T), log(α+TX) of the evaluation in progress
	terms      []float64 // each group's weighted term of the evaluation in progress
	pool       *termPool // nil: one goroutine
}

func newAgeIndex(groups []group) *ageIndex {
	ix := &ageIndex{groups: groups, ti: make([]int32, len(groups)), txi: make([]int32, len(groups))}
	tAt, txAt := map[float64]int32{}, map[float64]int32{}
	distinct := func(at map[float64]int32, vals *[]float64, v float64) int32 {
		i, ok := at[v]
		if !ok {
			i = int32(len(*vals))
			at[v] = i
			*vals = append(*vals, v)
		}
		return i
	}
	for i, g := range groups {
		ix.ti[i] = distinct(tAt, &ix.ts, g.s.T)
		ix.txi[i] = distinct(txAt, &ix.txs, g.s.TX)
	}
	ix.logT, ix.logX = make([]float64, len(ix.ts)), make([]float64, len(ix.txs))
	ix.terms = make([]float64, len(groups))
	return ix
}

// sumLogLikelihood is m.sumLogLikelihood over the groups, weighted by their sizes.
func (ix *ageIndex) sumLogLikelihood(m BGNBD) float64 {
	for i, t := range ix.ts {
		ix.logT[i] = math.Log(m.Alpha + t)
	}
	for i, t := range ix.txs {
		ix.logX[i] = math.Log(m.Alpha + t)
	}
	ix.pool.fillTerms(len(ix.groups), func(lo, hi int) {
		var t bgnbdTerms
		for i := lo; i < hi; i++ {
			g := &ix.groups[i]
			if i == lo || g.s.X != t.x {
				t = m.termsOf(g.s.X)
			}
			ix.terms[i] = g.n * m.logLikelihoodLogs(t, ix.logT[ix.ti[i]], ix.logX[ix.txi[i]])
		}
	})
	return sumInOrder(ix.terms)
}

type group struct {
	s Summary
	n float64
}

// compress merges identical summaries (after projecting out the fields a
// model ignores) so that each distinct history is evaluated once. The
// result is sorted, which also makes the floating-point sum independent of
// input order.
func compress(ss []Summary, project func(Summary) Summary) []group {
	idx := make(map[Summary]int, len(ss))
	var out []group
	for _, s := range ss {
		s = project(s)
		if i, ok := idx[s]; ok {
			out[i].n++
			continue
		}
		idx[s] = len(out)
		out = append(out, group{s: s, n: 1})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].s, out[j].s
		if a.X != b.X {
			return a.X < b.X
		}
		if a.TX != b.TX {
			return a.TX < b.TX
		}
		if a.T != b.T {
			return a.T < b.T
		}
		return a.Monetary < b.Monetary
	})
	return out
}

// minimize runs Nelder-Mead from x0, restarting from the best point with a
// fresh simplex until a restart no longer improves the objective by more
// than 1e-10 (restarts guard against the simplex collapsing early).
func minimize(f func([]float64) float64, x0 []float64) ([]float64, float64, int, error) {
	x := append([]float64(nil), x0...)
	fx := f(x)
	if math.IsInf(fx, 0) || math.IsNaN(fx) {
		return nil, 0, 1, fmt.Errorf("%w: objective is not finite at the starting point", ErrNotConverged)
	}
	evals := 1
	for restart := 0; evals < maxEvals; restart++ {
		nx, nf, n := nelderMead(f, x, 0.5, 1e-12, min(5000, maxEvals-evals))
		evals += n
		improved := fx - nf
		x, fx = nx, nf
		if restart > 0 && improved < 1e-10 {
			return x, fx, evals, nil
		}
		if restart > 0 && checkIdentified(x) != nil {
			return x, fx, evals, nil // running off along a ridge: the caller reports it
		}
	}
	return nil, 0, evals, fmt.Errorf("%w within %d evaluations", ErrNotConverged, maxEvals)
}

// nelderMead is the standard downhill-simplex method (reflection 1,
// expansion 2, contraction 1/2, shrink 1/2) started from a simplex with the
// given step along each axis. It stops when the spread of objective values
// across the simplex falls below ftol (relative) or after maxEval
// evaluations.
func nelderMead(f func([]float64) float64, x0 []float64, step, ftol float64, maxEval int) ([]float64, float64, int) {
	n := len(x0)
	pts := make([][]float64, n+1)
	vals := make([]float64, n+1)
	for i := range pts {
		p := append([]float64(nil), x0...)
		if i > 0 {
			p[i-1] += step
		}
		pts[i] = p
		vals[i] = f(p)
	}
	evals := n + 1
	order := make([]int, n+1)
	centroid := make([]float64, n)
	trial := func(coef float64) ([]float64, float64) {
		worst := pts[order[n]]
		p := make([]float64, n)
		for j := range p {
			p[j] = centroid[j] + coef*(worst[j]-centroid[j])
		}
		evals++
		return p, f(p)
	}
	for evals < maxEval {
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(i, j int) bool { return vals[order[i]] < vals[order[j]] })
		best, worst, second := order[0], order[n], order[n-1]
		if math.Abs(vals[worst]-vals[best]) <= ftol*(math.Abs(vals[best])+1e-300) {
			break
		}
		for j := range centroid {
			centroid[j] = 0
			for _, i := range order[:n] {
				centroid[j] += pts[i][j]
			}
			centroid[j] /= float64(n)
		}
		xr, fr := trial(-1)
		switch {
		case fr < vals[best]:
			if xe, fe := trial(-2); fe < fr {
				pts[worst], vals[worst] = xe, fe
			} else {
				pts[worst], vals[worst] = xr, fr
			}
		case fr < vals[second]:
			pts[worst], vals[worst] = xr, fr
		default:
			coef := 0.5 // inside contraction
			if fr < vals[worst] {
				coef = -0.5 // outside contraction
			}
			if xc, fc := trial(coef); fc < math.Min(fr, vals[worst]) {
				pts[worst], vals[worst] = xc, fc
			} else {
				for _, i := range order[1:] {
					for j := range pts[i] {
						pts[i][j] = pts[best][j] + 0.5*(pts[i][j]-pts[best][j])
					}
					vals[i] = f(pts[i])
					evals++
				}
			}
		}
	}
	bi := 0
	for i := range vals {
		if vals[i] < vals[bi] {
			bi = i
		}
	}
	return pts[bi], vals[bi], evals
}
