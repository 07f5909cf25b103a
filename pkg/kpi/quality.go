package kpi

import (
	"slices"
	"strconv"
	"strings"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// Model-quality counters, all on the observation day (a quality day, scoring.ChurnPolicy.
// QualityAt). With h one of scoring.QualityHorizons (30, 90):
//
//	q.n.<group>, q.r<h>.<group>   observed customers, and those who bought within h days, per
//	                              group: l.<LEVEL> (churn level) and a.<decile> (P(alive)
//	                              decile 0–9, or a.rules when the rules scored the customer)
//	q.c<h>.n.<bin>, .p.<bin>, .y.<bin>
//	                              calibration: model-scored customers whose predicted chance of
//	                              buying within h days falls in decile bin 0–9, its sum (in
//	                              1/10000), and those who bought
//	q.b<h>.pp, q.b<h>.py          Brier sums: Σ p² (1/10^8) and Σ p·y (1/10000)
const prefixQuality = "q."

func qualityGroups(o scoring.Observation) [2]string {
	decile := "rules"
	if o.Modelled() {
		decile = strconv.Itoa(int(o.Decile))
	}
	return [2]string{"l." + o.Level.String(), "a." + decile}
}

func calibrationBin(within int16) string { return strconv.Itoa(min(int(within)/1000, 9)) }

// OfSamples adds to out the model-quality increments of a customer's boundary samples: each
// new observation counts on its day, and each settled outcome adds its purchases to the same
// day's counters.
func OfSamples(samples []scoring.Sample, out Deltas) {
	for _, sm := range samples {
		if o := sm.Quality.Observed; o != nil {
			for _, g := range qualityGroups(*o) {
				out.add(o.Day, prefixQuality+"n."+g, 1)
			}
			if o.Modelled() {
				for i, h := range scoring.QualityHorizons {
					c := prefixQuality + "c" + strconv.Itoa(h) + "."
					p := int64(o.Within[i])
					out.add(o.Day, c+"n."+calibrationBin(o.Within[i]), 1)
					out.add(o.Day, c+"p."+calibrationBin(o.Within[i]), p)
					out.add(o.Day, prefixQuality+"b"+strconv.Itoa(h)+".pp", p*p)
				}
			}
		}
		for _, oc := range sm.Quality.Outcomes {
			o := oc.Observation
			for i, h := range scoring.QualityHorizons {
				if !oc.Bought[i] {
					continue
				}
				hs := strconv.Itoa(h)
				for _, g := range qualityGroups(o) {
					out.add(o.Day, prefixQuality+"r"+hs+"."+g, 1)
				}
				if o.Modelled() {
					out.add(o.Day, prefixQuality+"c"+hs+".y."+calibrationBin(o.Within[i]), 1)
					out.add(o.Day, prefixQuality+"b"+hs+".py", int64(o.Within[i]))
				}
			}
		}
	}
}

// QualityGroup is the share of a group of observed customers who bought again within each
// horizon.
type QualityGroup struct {
	Group     string `json:"group"`
	Customers int64  `json:"customers"`
	// Bought30 and Bought90 count those who bought within 30 and 90 days; Rate30 and Rate90
	// are the shares (nil for an empty group or a horizon not yet final).
	Bought30 int64    `json:"bought_30d"`
	Bought90 int64    `json:"bought_90d"`
	Rate30   *float64 `json:"rate_30d"`
	Rate90   *float64 `json:"rate_90d"`
}

// CalibrationBin is one decile of the model's predicted chance of a purchase within a horizon:
// its customers, their mean prediction, and the share who bought.
type CalibrationBin struct {
	Bin       int      `json:"bin"` // predictions in [bin/10, (bin+1)/10)
	Customers int64    `json:"customers"`
	Predicted *float64 `json:"predicted"`
	Observed  *float64 `json:"observed"`
}

// HorizonQuality is the model's calibration and Brier score for one horizon.
type HorizonQuality struct {
	Days int `json:"days"`
	// Final reports whether every observed customer's outcome over the horizon is counted.
	Final       bool             `json:"final"`
	Customers   int64            `json:"customers"` // scored by the model
	Calibration []CalibrationBin `json:"calibration"`
	// Brier is the mean squared difference between prediction and outcome; BrierBase that
	// of always predicting the observed rate (the outcome's variance): a useful model is
	// below it. Nil before final or with no model-scored customer.
	Brier     *float64 `json:"brier"`
	BrierBase *float64 `json:"brier_base"`
}

// QualityReport is the model quality of one observation day.
type QualityReport struct {
	Day      string           `json:"day"`
	Levels   []QualityGroup   `json:"levels"`
	Deciles  []QualityGroup   `json:"palive_deciles"`
	Horizons []HorizonQuality `json:"horizons"`
}

// QualityDays are the observation days that have counters, ascending.
func (c *Counters) QualityDays() []scoring.Day {
	var days []scoring.Day
	seen := map[scoring.Day]bool{}
	for code, s := range c.byCode {
		if !strings.HasPrefix(code, prefixQuality+"n.") {
			continue
		}
		for d, n := range s.raw {
			if n != 0 && !seen[d] {
				seen[d] = true
				days = append(days, d)
			}
		}
	}
	slices.Sort(days)
	return days
}

// Quality is the model-quality report of observation day d; complete is the last day whose
// counters are final (CompleteThrough): a horizon's outcomes are final once every customer was
// sampled at a boundary on or after the day plus the horizon.
func (c *Counters) Quality(d scoring.Day, complete scoring.Day, p *scoring.Policy) QualityReport {
	r := QualityReport{Day: d.Start().Format("2006-01-02")}
	final := [2]bool{}
	for i, h := range scoring.QualityHorizons {
		final[i] = complete >= scoring.NextBoundary(d+scoring.Day(h)-1, p)
	}
	at := func(code string) int64 { return c.window(code, d, 1) }
	group := func(g string) QualityGroup {
		q := QualityGroup{Group: g, Customers: at(prefixQuality + "n." + g),
			Bought30: at(prefixQuality + "r30." + g), Bought90: at(prefixQuality + "r90." + g)}
		if final[0] {
			q.Rate30 = ratio(float64(q.Bought30), float64(q.Customers))
		}
		if final[1] {
			q.Rate90 = ratio(float64(q.Bought90), float64(q.Customers))
		}
		return q
	}
	for _, l := range []scoring.Level{scoring.LevelLow, scoring.LevelMedium, scoring.LevelHigh} {
		r.Levels = append(r.Levels, group("l."+l.String()))
	}
	for dec := range 10 {
		r.Deciles = append(r.Deciles, group("a."+strconv.Itoa(dec)))
	}
	r.Deciles = append(r.Deciles, group("a.rules"))
	for i, h := range scoring.QualityHorizons {
		hs := strconv.Itoa(h)
		hq := HorizonQuality{Days: h, Final: final[i]}
		var bought float64
		for bin := range 10 {
			b := strconv.Itoa(bin)
			n := at(prefixQuality + "c" + hs + ".n." + b)
			p := float64(at(prefixQuality+"c"+hs+".p."+b)) / 10000
			y := float64(at(prefixQuality + "c" + hs + ".y." + b))
			cb := CalibrationBin{Bin: bin, Customers: n, Predicted: ratio(p, float64(n))}
			if final[i] {
				cb.Observed = ratio(y, float64(n))
			}
			hq.Calibration = append(hq.Calibration, cb)
			hq.Customers += n
			bought += y
		}
		if n := float64(hq.Customers); final[i] && n > 0 {
			pp := float64(at(prefixQuality+"b"+hs+".pp")) / 1e8
			py := float64(at(prefixQuality+"b"+hs+".py")) / 10000
			brier := (pp - 2*py + bought) / n
			rate := bought / n
			base := rate * (1 - rate)
			hq.Brier, hq.BrierBase = &brier, &base
		}
		r.Horizons = append(r.Horizons, hq)
	}
	return r
}
