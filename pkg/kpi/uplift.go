package kpi

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// Uplift arms: customers an action was decided for (treated) and the hold-out group's
// would-be actions (holdout).
const (
	ArmTreated = "treated"
	ArmHoldout = "holdout"
)

// UpliftHorizons are the outcome horizons of an exposure, in days.
var UpliftHorizons = [2]int{30, 90}

// UpliftPendingField is the UpliftCounts entry of the exposures still waiting for an outcome.
const UpliftPendingField = "pending"

// UpliftCounts are the notifier's settled exposure counters summed over its shards:
// "<kind>|<arm>|<h>|n" and "…|y" (bought within h days), and per month of the trigger day
// "<YYYY-MM>|<kind>|<arm>|<h>|n" and "…|y" (see pkg/notifier, uplift.go).
type UpliftCounts map[string]int64

// ArmRate is one arm's repurchase rate with its 95% Wilson score interval.
type ArmRate struct {
	Customers int64    `json:"customers"`
	Bought    int64    `json:"bought"`
	Rate      *float64 `json:"rate"`
	Low       *float64 `json:"low"`
	High      *float64 `json:"high"`
}

// UpliftResult compares the treated arm with the hold-out group for one kind and horizon:
// Uplift is the difference of their rates, with its 95% interval (Newcombe's hybrid score
// interval, from the two Wilson intervals); nil while an arm is empty.
type UpliftResult struct {
	Kind    string   `json:"kind"`
	Days    int      `json:"days"`
	Month   string   `json:"month,omitempty"` // YYYY-MM of the trigger day; empty for all time
	Treated ArmRate  `json:"treated"`
	Holdout ArmRate  `json:"holdout"`
	Uplift  *float64 `json:"uplift"`
	Low     *float64 `json:"low"`
	High    *float64 `json:"high"`
}

// UpliftReport is the uplift of each measured kind and horizon, over all time and per month,
// and the exposures still waiting for their outcome.
type UpliftReport struct {
	Pending int64          `json:"pending"`
	Total   []UpliftResult `json:"total"`
	Monthly []UpliftResult `json:"monthly"`
}

// z95 is the normal quantile of a two-sided 95% interval.
const z95 = 1.959963984540054

// wilson is the Wilson score interval of y successes in n trials.
func wilson(y, n int64) (p, lo, hi float64) {
	fn := float64(n)
	p = float64(y) / fn
	z2 := z95 * z95
	centre := (p + z2/(2*fn)) / (1 + z2/fn)
	half := z95 / (1 + z2/fn) * math.Sqrt(p*(1-p)/fn+z2/(4*fn*fn))
	return p, math.Max(0, centre-half), math.Min(1, centre+half)
}

func armRate(y, n int64) ArmRate {
	a := ArmRate{Customers: n, Bought: y}
	if n > 0 {
		p, lo, hi := wilson(y, n)
		a.Rate, a.Low, a.High = &p, &lo, &hi
	}
	return a
}

// upliftOf compares the arms of one kind, horizon and month prefix.
func upliftOf(c UpliftCounts, prefix, kind string, h int) UpliftResult {
	hs := strconv.Itoa(h)
	get := func(arm, f string) int64 { return c[prefix+kind+"|"+arm+"|"+hs+"|"+f] }
	r := UpliftResult{Kind: kind, Days: h, Month: strings.TrimSuffix(prefix, "|"),
		Treated: armRate(get(ArmTreated, "y"), get(ArmTreated, "n")), Holdout: armRate(get(ArmHoldout, "y"), get(ArmHoldout, "n"))}
	if r.Treated.Rate != nil && r.Holdout.Rate != nil {
		t, h := r.Treated, r.Holdout
		d := *t.Rate - *h.Rate
		lo := d - math.Sqrt(sq(*t.Rate-*t.Low)+sq(*h.High-*h.Rate))
		hi := d + math.Sqrt(sq(*t.High-*t.Rate)+sq(*h.Rate-*h.Low))
		r.Uplift, r.Low, r.High = &d, &lo, &hi
	}
	return r
}

func sq(x float64) float64 { return x * x }

// Uplift is the report of the counters, for kinds (in order) and both horizons.
func Uplift(c UpliftCounts, kinds []string) UpliftReport {
	r := UpliftReport{Pending: c[UpliftPendingField], Total: []UpliftResult{}, Monthly: []UpliftResult{}}
	months := map[string]bool{}
	for f := range c {
		if m, _, ok := strings.Cut(f, "|"); ok && len(m) == 7 && m[4] == '-' {
			months[m] = true
		}
	}
	sorted := make([]string, 0, len(months))
	for m := range months {
		sorted = append(sorted, m)
	}
	sort.Strings(sorted)
	for _, kind := range kinds {
		for _, h := range UpliftHorizons {
			r.Total = append(r.Total, upliftOf(c, "", kind, h))
			for _, m := range sorted {
				if res := upliftOf(c, m+"|", kind, h); res.Treated.Customers+res.Holdout.Customers > 0 {
					r.Monthly = append(r.Monthly, res)
				}
			}
		}
	}
	return r
}
