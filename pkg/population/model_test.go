package population

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// simulated draws n customers from a BG/NBD process with parameters truth (in days): each
// has a purchase rate λ ~ Gamma(r, α) and a dropout probability p ~ Beta(a, b) after each
// purchase, first buys on a uniform day of the year before boundary b, and spends a
// Gamma-Gamma amount (p 6, q 4, γ 1500 minor units) per repeat purchase day.
func simulated(rng *rand.Rand, n int, truth btyd.BGNBD) []scoring.ModelSample {
	gamma := func(shape float64) float64 { // Marsaglia–Tsang, shape ≥ 1 after boosting
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
	out := make([]scoring.ModelSample, n)
	for i := range out {
		lambda := gamma(truth.R) / truth.Alpha
		ga, gb := gamma(truth.A), gamma(truth.B)
		p := ga / (ga + gb)
		nu := gamma(4) / 1500 // per-customer spend scale ν ~ Gamma(q 4, γ 1500 minor)
		tDays := int32(1 + rng.IntN(365))
		s := scoring.ModelSample{TDays: tDays}
		day := 0.0
		for {
			day += rng.ExpFloat64() / lambda
			if int32(day) >= tDays {
				break
			}
			if int32(day) > s.TXDays { // purchases on one day are one purchase day
				s.X++
				s.TXDays = int32(day)
				s.RepeatNetMinor += int64(1 + gamma(6)/nu) // z ~ Gamma(p 6, ν)
			}
			if rng.Float64() < p {
				break
			}
		}
		out[i] = s
	}
	return out
}

func TestTheFitOnTheHistogramsIsTheFitOnTheCustomers(t *testing.T) {
	p := scoring.DefaultPolicy()
	rng := rand.New(rand.NewPCG(7, 11))
	truth := btyd.BGNBD{R: 0.8, Alpha: 30, A: 0.6, B: 2.5} // days
	sample := simulated(rng, 4000, truth)
	b := scoring.Day(20440)
	h := NewHistograms()
	var direct, spend []btyd.Summary
	u := p.Churn.TimeUnitDays
	for _, m := range sample {
		for _, f := range Fields(scoring.Sample{Boundary: b, Values: scoring.RFMValues{Frequency: 1}, Model: &m}) {
			h.Add(b, f, 1)
		}
		s := btyd.Summary{X: float64(m.X), TX: float64(m.TXDays) / u, T: float64(m.TDays) / u}
		if m.X == 0 {
			s.TX = 0
		}
		direct = append(direct, s)
		if m.X > 0 && m.RepeatNetMinor > 0 {
			spend = append(spend, btyd.Summary{X: float64(m.X), Monetary: float64(m.RepeatNetMinor) / float64(m.X)})
		}
	}
	got, err := h.FitModel(b, p, 1)
	if err != nil {
		t.Fatal(err)
	}
	bg, err := btyd.FitBGNBDPenalized(direct, p.Churn.Refit.Penalizer)
	if err != nil {
		t.Fatal(err)
	}
	gg, err := btyd.FitGammaGamma(spend)
	if err != nil {
		t.Fatal(err)
	}
	if got.BGNBD != bg.Params || got.GammaGamma == nil || *got.GammaGamma != gg.Params {
		t.Fatalf("fit on histograms %+v / %+v, on the customers %+v / %+v", got.BGNBD, got.GammaGamma, bg.Params, gg.Params)
	}
	if got.Customers != int64(len(sample)) || got.Version != p.Churn.ModelVersion+"@"+b.Start().Format("2006-01-02") {
		t.Fatalf("fit counts %d customers as %q, want %d", got.Customers, got.Version, len(sample))
	}
	t.Logf("fit on %d customers: %+v, Gamma-Gamma %+v", got.Customers, got.BGNBD, *got.GammaGamma)
	// The simulated process is recovered: r and α (per week) within 25%, the mean dropout
	// probability a/(a+b) within 0.1.
	want := btyd.BGNBD{R: truth.R, Alpha: truth.Alpha / u}
	if math.Abs(got.BGNBD.R/want.R-1) > 0.25 || math.Abs(got.BGNBD.Alpha/want.Alpha-1) > 0.25 ||
		math.Abs(got.BGNBD.A/(got.BGNBD.A+got.BGNBD.B)-truth.A/(truth.A+truth.B)) > 0.1 {
		t.Fatalf("fit %+v does not recover the simulated r %.3f, α %.3f/week, a/(a+b) %.3f", got.BGNBD, want.R, want.Alpha, truth.A/(truth.A+truth.B))
	}
}

func TestAPopulationBelowTheRefitMinimumsIsNotFitted(t *testing.T) {
	p := scoring.DefaultPolicy()
	r := p.Churn.Refit
	rng := rand.New(rand.NewPCG(3, 5))
	b := scoring.Day(20440)
	add := func(h Histograms, ms []scoring.ModelSample) {
		for _, m := range ms {
			for _, f := range Fields(scoring.Sample{Boundary: b, Values: scoring.RFMValues{Frequency: 1}, Model: &m}) {
				h.Add(b, f, 1)
			}
		}
	}
	// Too few customers.
	h := NewHistograms()
	add(h, simulated(rng, r.MinCustomers-1, btyd.BGNBD{R: 0.8, Alpha: 30, A: 0.6, B: 2.5}))
	if _, err := h.FitModel(b, p, 1); !errors.Is(err, ErrTooLittleData) {
		t.Fatalf("%d customers: %v, want ErrTooLittleData", r.MinCustomers-1, err)
	}
	// Enough customers, too few of whom bought again.
	h = NewHistograms()
	var ms []scoring.ModelSample
	for i := range r.MinCustomers * 2 {
		m := scoring.ModelSample{TDays: int32(1 + i%300)}
		if i < r.MinRepeatCustomers-1 {
			m.X, m.TXDays, m.RepeatNetMinor = 1, m.TDays/2, 1000
		}
		ms = append(ms, m)
	}
	add(h, ms)
	if _, err := h.FitModel(b, p, 1); !errors.Is(err, ErrTooLittleData) {
		t.Fatalf("%d repeat customers: %v, want ErrTooLittleData", r.MinRepeatCustomers-1, err)
	}
	// Another boundary's counters never count.
	distinct := len(h.BG)
	h.Add(b, Fields(scoring.Sample{Boundary: b + 28, Values: scoring.RFMValues{Frequency: 1}, Model: &scoring.ModelSample{X: 9, TXDays: 99, TDays: 9999}})[3], 1e6)
	if len(h.BG) != distinct || h.BG[[3]int32{9, 99, 9999}] != 0 {
		t.Fatalf("another boundary's summary was counted: %d distinct, was %d", len(h.BG), distinct)
	}
}
