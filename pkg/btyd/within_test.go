package btyd

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestProbPurchaseWithinIsTheSimulatedShare checks the closed form against a simulation of
// the BG/NBD process itself: customers drawn from the CDNOW parameters, their first 39 weeks
// observed, and the share of those with a given history who buy again in the next 4 and 13
// weeks.
func TestProbPurchaseWithinIsTheSimulatedShare(t *testing.T) {
	m := BGNBD{R: 0.2426, Alpha: 4.4137, A: 0.7930, B: 2.4262}
	rng := rand.New(rand.NewPCG(5, 8))
	gamma := func(shape float64) float64 { // Marsaglia–Tsang
		boost := 1.0
		if shape < 1 {
			boost = math.Pow(rng.Float64(), 1/shape)
			shape++
		}
		d := shape - 1.0/3
		c := 1 / math.Sqrt(9*d)
		for {
			x := rng.NormFloat64()
			v := (1 + c*x) * (1 + c*x) * (1 + c*x)
			if v > 0 && math.Log(rng.Float64()) < x*x/2+d-d*v+d*math.Log(v) {
				return boost * d * v
			}
		}
	}
	const T = 39.0
	type key struct{ x, tx int }
	type tally struct{ n, in4, in13 int }
	byHistory := map[key]*tally{}
	for range 400000 {
		lambda := gamma(m.R) / m.Alpha
		ga, gb := gamma(m.A), gamma(m.B)
		p := ga / (ga + gb)
		var x int
		var tx, now float64
		alive, next := true, math.Inf(1)
		for alive {
			now += rng.ExpFloat64() / lambda
			if now > T {
				next = now
				break
			}
			x, tx = x+1, now
			if rng.Float64() < p {
				alive = false
			}
		}
		k := key{x, int(tx)}
		if x == 0 {
			k.tx = 0
		}
		tl := byHistory[k]
		if tl == nil {
			tl = &tally{}
			byHistory[k] = tl
		}
		tl.n++
		if alive && next-T <= 4 {
			tl.in4++
		}
		if alive && next-T <= 13 {
			tl.in13++
		}
	}
	checked := 0
	for k, tl := range byHistory {
		if tl.n < 3000 {
			continue
		}
		// The history's t_x is known to the week; take the middle of it.
		s := Summary{X: float64(k.x), TX: float64(k.tx) + 0.5, T: T}
		if k.x == 0 {
			s.TX = 0
		}
		for _, c := range []struct {
			weeks float64
			hits  int
		}{{4, tl.in4}, {13, tl.in13}} {
			want := m.ProbPurchaseWithin(s, c.weeks)
			got := float64(c.hits) / float64(tl.n)
			se := math.Sqrt(want * (1 - want) / float64(tl.n))
			if math.Abs(got-want) > 4*se+0.01 {
				t.Errorf("x=%d t_x≈%v: %d of %d bought within %v weeks (%.4f), the formula says %.4f", k.x, s.TX, c.hits, tl.n, c.weeks, got, want)
			}
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("only %d histories with enough customers", checked)
	}
	if got := m.ProbPurchaseWithin(Summary{X: 2, TX: 10, T: 39}, 0); got != 0 {
		t.Errorf("within 0 weeks: %v", got)
	}
	if a, b := m.ProbPurchaseWithin(Summary{X: 2, TX: 10, T: 39}, 1e9), m.PAlive(Summary{X: 2, TX: 10, T: 39}); math.Abs(a-b) > 1e-6 {
		t.Errorf("within forever %v, P(alive) %v", a, b)
	}
}
