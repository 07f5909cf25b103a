package btyd

import (
	"math"
	"testing"
)

// cdnow holds the published BG/NBD parameters for the CDNOW sample (weeks).
var cdnow = BGNBD{R: 0.2426, Alpha: 4.4137, A: 0.7930, B: 2.4262}

func TestPAlive(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Summary
		want float64
		tol  float64
	}{
		{"a customer with no repeat purchase is certainly alive", Summary{X: 0, TX: 0, T: 38.86}, 1, 0},
		{"a customer who bought 1000 times in 10 weeks and then vanished for 90 is dead, not NaN",
			Summary{X: 1000, TX: 10, T: 100}, 0, 1e-300},
		// BG/NBD lets a customer drop out right after a purchase, so even one who
		// just bought is alive with probability 1/(1 + a/(b+x-1)) only.
		{"a customer who just bought is as alive as the model allows", Summary{X: 2, TX: 38.86, T: 38.86},
			1 / (1 + 0.7930/(2.4262+1)), 1e-12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := cdnow.PAlive(tc.s)
			if math.IsNaN(got) || math.Abs(got-tc.want) > tc.tol {
				t.Fatalf("PAlive(%+v) = %v, want %v ± %v", tc.s, got, tc.want, tc.tol)
			}
		})
	}
}

func TestExpectedPurchasesMatchesFHL2005(t *testing.T) {
	// FHL 2005 section 4: a customer with x=2, t_x=30.43, T=38.86 is expected
	// to make 1.226 purchases in the next 39 weeks.
	got := cdnow.ExpectedPurchases(Summary{X: 2, TX: 30.43, T: 38.86}, 39)
	if math.Abs(got-1.226) > 0.0015 {
		t.Fatalf("E[Y(39)|2,30.43,38.86] = %.4f, want 1.226", got)
	}
}

func TestExpectedPurchasesTransformedSeriesEqualsDirectSeries(t *testing.T) {
	for _, s := range []Summary{{X: 0, T: 20}, {X: 3, TX: 10, T: 30}, {X: 7, TX: 30, T: 35}} {
		for _, tt := range []float64{1, 10, 52} {
			r, alpha, a, b, x := cdnow.R, cdnow.Alpha, cdnow.A, cdnow.B, s.X
			z := tt / (alpha + s.T + tt)
			direct := hyp2f1(r+x, b+x, a+b+x-1, z)
			inner := 1 - math.Pow((alpha+s.T)/(alpha+s.T+tt), r+x)*direct
			want := (a + b + x - 1) / (a - 1) * inner * cdnow.PAlive(s)
			got := cdnow.ExpectedPurchases(s, tt)
			if math.Abs(got-want) > 1e-9*math.Max(1, want) {
				t.Errorf("ExpectedPurchases(%+v, %v) = %.12g, direct series gives %.12g", s, tt, got, want)
			}
		}
	}
}

func TestExpectedPurchasesIsFiniteForExtremeInputs(t *testing.T) {
	for _, s := range []Summary{
		{X: 1000, TX: 10, T: 100}, {X: 1000, TX: 99.9, T: 100}, {X: 1e6, TX: 1e4, T: 1e4},
		{X: 0, T: 0}, {X: 0, T: 1e6}, {X: 1, TX: 1e-9, T: 1e6},
	} {
		for _, tt := range []float64{1e-6, 1, 52, 1e5} {
			got := cdnow.ExpectedPurchases(s, tt)
			if math.IsNaN(got) || math.IsInf(got, 0) || got < 0 {
				t.Errorf("ExpectedPurchases(%+v, %v) = %v, want a finite non-negative number", s, tt, got)
			}
		}
	}
	if got := cdnow.ExpectedPurchases(Summary{X: 1000, TX: 10, T: 100}, 52); got > 1e-100 {
		t.Errorf("a dead customer's expected purchases = %v, want ~0", got)
	}
}

func TestExpectedPurchasesNearAEqualsOneIsContinuous(t *testing.T) {
	m := cdnow
	s := Summary{X: 3, TX: 20, T: 30}
	m.A = 1
	at := m.ExpectedPurchases(s, 20)
	m.A = 1 + 1e-4
	near := m.ExpectedPurchases(s, 20)
	if math.IsNaN(at) || math.Abs(at-near) > 1e-3*near {
		t.Fatalf("a=1 gives %v, a=1.0001 gives %v", at, near)
	}
}

func TestUnconditionalExpectedPurchasesGrowsWithTime(t *testing.T) {
	prev := 0.0
	for _, tt := range []float64{1, 10, 39, 78} {
		got := cdnow.UnconditionalExpectedPurchases(tt)
		if !(got > prev) {
			t.Fatalf("E[X(%v)] = %v, not above E at the previous horizon %v", tt, got, prev)
		}
		prev = got
	}
}

func TestLogLikelihoodIsFiniteForExtremeInputs(t *testing.T) {
	for _, s := range []Summary{{X: 1000, TX: 10, T: 100}, {X: 0, T: 1e6}, {X: 1e6, TX: 1, T: 2}} {
		if ll := cdnow.LogLikelihood(s); math.IsNaN(ll) || math.IsInf(ll, 0) {
			t.Errorf("LogLikelihood(%+v) = %v", s, ll)
		}
	}
}

func TestGammaGammaExpectedSpendShrinksTowardsThePopulationMean(t *testing.T) {
	gg := GammaGamma{P: 6.25, Q: 3.74, Gamma: 15.44}
	pop := gg.P * gg.Gamma / (gg.Q - 1)
	if got := gg.ExpectedSpend(Summary{}); math.Abs(got-pop) > 1e-12 {
		t.Fatalf("spend for x=0 = %v, want population mean %v", got, pop)
	}
	one := gg.ExpectedSpend(Summary{X: 1, TX: 1, T: 2, Monetary: 100})
	many := gg.ExpectedSpend(Summary{X: 50, TX: 1, T: 2, Monetary: 100})
	if !(pop < one && one < many && many < 100) {
		t.Fatalf("want population %v < x=1 %v < x=50 %v < own mean 100", pop, one, many)
	}
	if got := (GammaGamma{P: 1, Q: 1, Gamma: 1}).ExpectedSpend(Summary{}); !math.IsNaN(got) {
		t.Fatalf("q<=1 should give NaN, got %v", got)
	}
}

func TestCLV(t *testing.T) {
	gg := GammaGamma{P: 6.25, Q: 3.74, Gamma: 15.44}
	s := Summary{X: 2, TX: 30.43, T: 38.86, Monetary: 22.35}
	undiscounted := CLV(cdnow, gg, s, 39, 0)
	want := cdnow.ExpectedPurchases(s, 39) * gg.ExpectedSpend(s)
	if math.Abs(undiscounted-want) > 1e-9*want {
		t.Fatalf("undiscounted CLV %v, want E[purchases]·E[spend] = %v", undiscounted, want)
	}
	disc := CLV(cdnow, gg, s, 39, PerUnitRate(0.10, 52.1775))
	if !(disc < undiscounted && disc > 0.9*undiscounted) {
		t.Fatalf("10%%/year discounted CLV %v should be a little below %v", disc, undiscounted)
	}
	if got := CLV(cdnow, gg, s, 38.5, 0); math.Abs(got-cdnow.ExpectedPurchases(s, 38.5)*gg.ExpectedSpend(s)) > 1e-9 {
		t.Fatalf("fractional horizon CLV %v", got)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	if err := (BGNBD{R: 1, Alpha: 1, A: -1, B: 1}).Validate(); err == nil || err.Error()[:7] != "bgnbd.a" {
		t.Fatalf("got %v, want an error naming bgnbd.a", err)
	}
	if err := (Summary{X: 0, TX: 1, T: 2}).Validate(); err == nil {
		t.Fatal("t_x > 0 with x = 0 accepted")
	}
}

func TestNelderMeadFindsTheRosenbrockMinimum(t *testing.T) {
	f := func(v []float64) float64 {
		return 100*(v[1]-v[0]*v[0])*(v[1]-v[0]*v[0]) + (1-v[0])*(1-v[0])
	}
	x, fx, _, err := minimize(f, []float64{-1.2, 1})
	if err != nil || math.Abs(x[0]-1) > 1e-4 || math.Abs(x[1]-1) > 1e-4 || fx > 1e-8 {
		t.Fatalf("minimum at %v (f=%v, err=%v), want (1,1)", x, fx, err)
	}
}
