package kpi

import (
	"math"
	"testing"
)

// TestUpliftIntervalsAreNewcombesPublishedExamples checks the intervals against the worked
// examples of Newcombe (1998): the Wilson interval of 81/263 is 0.2553–0.3662 (Statistics in
// Medicine 17, 857–872, table I), and the hybrid score interval of 56/70 − 48/80 is
// 0.0524–0.3339 (Statistics in Medicine 17, 873–890, table II, method 10).
func TestUpliftIntervalsAreNewcombesPublishedExamples(t *testing.T) {
	near := func(a, b float64) bool { return math.Abs(a-b) < 0.00005 }
	if _, lo, hi := wilson(81, 263); !near(lo, 0.2553) || !near(hi, 0.3662) {
		t.Errorf("Wilson 81/263: %.4f–%.4f, published 0.2553–0.3662", lo, hi)
	}
	c := UpliftCounts{"CARE|treated|30|n": 70, "CARE|treated|30|y": 56, "CARE|holdout|30|n": 80, "CARE|holdout|30|y": 48,
		"2026-03|CARE|treated|30|n": 70, "2026-03|CARE|treated|30|y": 56, UpliftPendingField: 7}
	r := Uplift(c, []string{"CARE"})
	u := r.Total[0]
	if u.Days != 30 || u.Uplift == nil || !near(*u.Uplift, 0.2) || !near(*u.Low, 0.0524) || !near(*u.High, 0.3339) {
		t.Errorf("56/70 − 48/80: %+v, published 0.2000 (0.0524–0.3339)", u)
	}
	if r.Pending != 7 || len(r.Total) != 2 || r.Total[1].Days != 90 || r.Total[1].Uplift != nil {
		t.Errorf("report %+v: want 7 pending, both horizons, no 90-day uplift without counts", r)
	}
	if len(r.Monthly) != 1 || r.Monthly[0].Month != "2026-03" || r.Monthly[0].Treated.Customers != 70 || r.Monthly[0].Uplift != nil {
		t.Errorf("monthly %+v: want March's treated arm alone, without an uplift", r.Monthly)
	}
}
