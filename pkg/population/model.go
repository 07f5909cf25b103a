package population

import (
	"errors"
	"fmt"
	"math"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// ErrTooLittleData is returned by FitModel for a population below the policy's minimum.
var ErrTooLittleData = errors.New("too little data for a churn model fit")

// FitModel fits the BG/NBD and Gamma-Gamma models on the population of boundary b, under the
// policy's churn.refit minimums; a population below them is ErrTooLittleData. The fit depends
// only on the counts (btyd sorts the distinct summaries), so every deriver, and a replay,
// fits the same model, on any number of workers (btyd.FitBGNBDPenalizedOn).
func (h Histograms) FitModel(b scoring.Day, p *scoring.Policy, workers int) (*scoring.FittedModel, error) {
	r := p.Churn.Refit
	var customers, repeat int64
	for k, c := range h.BG {
		customers += c
		if k[0] > 0 {
			repeat += c
		}
	}
	if customers < int64(r.MinCustomers) || repeat < int64(r.MinRepeatCustomers) {
		return nil, fmt.Errorf("%w: %d customers, %d who bought again; the policy needs %d and %d",
			ErrTooLittleData, customers, repeat, r.MinCustomers, r.MinRepeatCustomers)
	}
	u := p.Churn.TimeUnitDays
	bgs := make([]btyd.Summary, 0, customers)
	for k, c := range h.BG {
		s := btyd.Summary{X: float64(k[0]), T: float64(k[2]) / u}
		if k[0] > 0 {
			s.TX = float64(k[1]) / u
		}
		for range c {
			bgs = append(bgs, s)
		}
	}
	bg, err := btyd.FitBGNBDPenalizedOn(bgs, r.Penalizer, workers)
	if err != nil {
		return nil, err
	}
	m := &scoring.FittedModel{Version: p.Churn.ModelVersion + "@" + b.Start().Format("2006-01-02"), Boundary: b,
		BGNBD: bg.Params, Customers: customers, RepeatCustomers: repeat, LogLik: bg.LogLik, Penalizer: r.Penalizer}
	var ggs []btyd.Summary
	for k, c := range h.GG {
		s := btyd.Summary{X: float64(k.x), Monetary: math.Max(0, float64(k.net)/float64(k.x))}
		for range c {
			ggs = append(ggs, s)
		}
	}
	// A population whose repeat customers all spend alike does not identify Gamma-Gamma (q
	// runs off): the BG/NBD fit still stands, and CLV keeps the configured spend model.
	if gg, err := btyd.FitGammaGammaOn(ggs, workers); err == nil {
		m.GammaGamma = &gg.Params
	} else if !errors.Is(err, btyd.ErrNoData) && !errors.Is(err, btyd.ErrUnidentified) {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}
