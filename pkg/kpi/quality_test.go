package kpi

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// TestQualityReportIsTheDirectComputation: the report summed from the counters of observations
// and of outcomes settled at later boundaries gives each group's repurchase rates, the
// calibration table and the Brier score of a direct computation over the customers.
func TestQualityReportIsTheDirectComputation(t *testing.T) {
	p := scoring.DefaultPolicy()
	rng := rand.New(rand.NewPCG(9, 4))
	d := scoring.Day(20440) // a quality day
	if !p.Churn.QualityAt(d) {
		t.Fatalf("day %d is not a quality day", d)
	}
	type customer struct {
		o      scoring.Observation
		bought [2]bool
	}
	var cs []customer
	deltas := Deltas{}
	for range 5000 {
		o := scoring.Observation{Day: d, Level: scoring.Level(rng.IntN(3)), Decile: -1, Within: [2]int16{-1, -1}}
		if rng.IntN(5) > 0 {
			w30 := rng.IntN(10001)
			o.Decile, o.Within = int8(rng.IntN(10)), [2]int16{int16(w30), int16(w30 + rng.IntN(10001-w30))}
		}
		first := 1 + rng.IntN(200) // the first purchase after the day
		c := customer{o: o, bought: [2]bool{first <= 30, first <= 90}}
		cs = append(cs, c)
		OfSamples([]scoring.Sample{{Boundary: d, Quality: scoring.Quality{Observed: &o}}}, deltas)
		settle := scoring.NextBoundary(d+scoring.Day(min(first, 90))-1, p)
		OfSamples([]scoring.Sample{{Boundary: settle, Quality: scoring.Quality{Outcomes: []scoring.Outcome{{Observation: o, Bought: c.bought}}}}}, deltas)
	}
	counters := NewCounters()
	counters.AddAll(deltas)
	if days := counters.QualityDays(); len(days) != 1 || days[0] != d {
		t.Fatalf("quality days %v, want [%d]", days, d)
	}

	early := counters.Quality(d, d+34, p)
	if early.Horizons[0].Final || early.Levels[0].Rate30 != nil || early.Horizons[0].Brier != nil {
		t.Fatalf("30-day outcomes reported final before the boundary after day+30: %+v", early.Horizons[0])
	}
	r := counters.Quality(d, d+91, p)
	if !r.Horizons[0].Final || !r.Horizons[1].Final {
		t.Fatalf("outcomes not final 91 days on: %+v", r.Horizons)
	}
	near := func(a *float64, b float64) bool { return a != nil && math.Abs(*a-b) < 1e-9 }
	for _, l := range []scoring.Level{scoring.LevelLow, scoring.LevelMedium, scoring.LevelHigh} {
		var n, b30, b90 float64
		for _, c := range cs {
			if c.o.Level == l {
				n++
				b30 += b2f(c.bought[0])
				b90 += b2f(c.bought[1])
			}
		}
		g := r.Levels[l]
		if g.Group != "l."+l.String() || float64(g.Customers) != n || !near(g.Rate30, b30/n) || !near(g.Rate90, b90/n) {
			t.Errorf("level %s: %+v, want %v customers, rates %.4f %.4f", l, g, n, b30/n, b90/n)
		}
	}
	for dec := range 10 {
		var n, b90 float64
		for _, c := range cs {
			if int(c.o.Decile) == dec {
				n++
				b90 += b2f(c.bought[1])
			}
		}
		if g := r.Deciles[dec]; float64(g.Customers) != n || !near(g.Rate90, b90/n) {
			t.Errorf("decile %d: %+v, want %v customers, 90-day rate %.4f", dec, g, n, b90/n)
		}
	}
	for i, h := range scoring.QualityHorizons {
		var n, brier, bought float64
		bins := [10][3]float64{}
		for _, c := range cs {
			if c.o.Decile < 0 {
				continue
			}
			p, y := float64(c.o.Within[i])/10000, b2f(c.bought[i])
			n++
			brier += (p - y) * (p - y)
			bought += y
			b := min(int(c.o.Within[i])/1000, 9)
			bins[b][0]++
			bins[b][1] += p
			bins[b][2] += y
		}
		hq := r.Horizons[i]
		if hq.Days != h || float64(hq.Customers) != n || !near(hq.Brier, brier/n) || !near(hq.BrierBase, bought/n*(1-bought/n)) {
			t.Errorf("%d days: %d customers, Brier %v (base %v); want %v, %.6f (%.6f)", h, hq.Customers, deref(hq.Brier), deref(hq.BrierBase), n, brier/n, bought/n*(1-bought/n))
		}
		for b, cb := range hq.Calibration {
			if float64(cb.Customers) != bins[b][0] || !near(cb.Predicted, bins[b][1]/bins[b][0]) || !near(cb.Observed, bins[b][2]/bins[b][0]) {
				t.Errorf("%d days, bin %d: %+v, want %v customers, predicted %.4f, observed %.4f", h, b, cb, bins[b][0], bins[b][1]/bins[b][0], bins[b][2]/bins[b][0])
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}
