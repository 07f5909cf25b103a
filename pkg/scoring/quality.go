package scoring

import (
	"math"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
)

// QualityHorizons are the outcome horizons of a churn prediction, in days: did the customer
// buy again within 30, and within 90, days of the observation day?
var QualityHorizons = [2]int{30, 90}

// MaxObservations bounds the observations a customer keeps open: one per quality day over the
// longest horizon, and never more than this.
const MaxObservations = 8

// Observation is a customer's churn prediction at the end of a quality day (ChurnPolicy.
// QualityAt), kept in the state until its outcome is known.
type Observation struct {
	Day   Day
	Level Level
	// Decile is the P(alive) decile, 0 (below 0.1) to 9; -1 when the rules scored the
	// customer (too little history, or no model fitted yet).
	Decile int8
	// Within is the model's probability of a purchase within each of QualityHorizons, in
	// 1/10000; -1 under the rules.
	Within [2]int16
}

// Modelled reports whether the model scored the observation.
func (o Observation) Modelled() bool { return o.Decile >= 0 }

// Outcome is an observation whose outcome is known: Bought[i] says whether the customer
// bought again within QualityHorizons[i] days of the observation day. An outcome is reported
// once, when the first purchase after the day is known, or when the longest horizon has
// passed without one.
type Outcome struct {
	Observation
	Bought [2]bool
}

// Quality is what one boundary sample adds to the model-quality counters: the outcomes that
// became known, and the customer's new observation when the boundary is a quality day.
type Quality struct {
	Outcomes []Outcome
	Observed *Observation
}

// observeQuality settles the customer's open observations against the purchases known at
// the end of boundary b and, on a quality day, records a new one. It depends only on the
// data up to b: b is closed, so every purchase on or before it has been applied, and
// purchases after it are not looked at.
func (s *State) observeQuality(b Day, p *Policy) Quality {
	var q Quality
	if len(s.Observations) > 0 {
		days := s.KnownPurchaseDays().Days
		// A new slice: the state's may be shared with the caller's copy of the state before.
		keep := make([]Observation, 0, len(s.Observations)+1)
		longest := Day(QualityHorizons[len(QualityHorizons)-1])
		for _, o := range s.Observations {
			first := Day(-1)
			for _, d := range days {
				if d > o.Day && d <= b {
					first = d
					break
				}
			}
			switch {
			case first >= 0:
				out := Outcome{Observation: o}
				for i, h := range QualityHorizons {
					out.Bought[i] = first-o.Day <= Day(h)
				}
				q.Outcomes = append(q.Outcomes, out)
			case b-o.Day >= longest:
				q.Outcomes = append(q.Outcomes, Outcome{Observation: o})
			default:
				keep = append(keep, o)
			}
		}
		s.Observations = keep
	}
	if !p.Churn.QualityAt(b) {
		return q
	}
	f := assessRisk(s, b, p)
	if !f.purchases {
		return q
	}
	o := Observation{Day: b, Level: s.Churn, Decile: -1, Within: [2]int16{-1, -1}}
	if f.model {
		model, _, _ := p.ChurnModel()
		pf := s.purchasesAsOf(b, p.Segments.WindowDays)
		u := p.Churn.TimeUnitDays
		sum := btyd.Summary{X: float64(f.repeat), TX: float64(pf.last-pf.first) / u, T: float64(b-pf.first) / u}
		o.Decile = int8(min(int(f.pAlive*10), 9))
		for i, h := range QualityHorizons {
			o.Within[i] = int16(math.Round(model.ProbPurchaseWithin(sum, float64(h)/u) * 10000))
		}
	}
	open := make([]Observation, 0, len(s.Observations)+1)
	if len(s.Observations) == MaxObservations {
		// Not reached: a quality day every 14 days or more keeps at most 7 open.
		open = append(open, s.Observations[1:]...)
	} else {
		open = append(open, s.Observations...)
	}
	s.Observations = append(open, o)
	q.Observed = &o
	return q
}
