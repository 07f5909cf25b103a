package btyd

import "math"

// CLV is the customer lifetime value over horizon time units: the expected
// purchases in each unit step (from the BG/NBD model) times the expected
// spend per purchase (from the Gamma-Gamma model), discounted at rate
// discount per time unit (0 for no discounting). A fractional horizon is
// covered by a final partial step.
func CLV(bg BGNBD, gg GammaGamma, s Summary, horizon, discount float64) float64 {
	if horizon <= 0 {
		return 0
	}
	spend := gg.ExpectedSpend(s)
	var clv, prev float64
	for step := 1.0; ; step++ {
		t := math.Min(step, horizon)
		cur := bg.ExpectedPurchases(s, t)
		clv += (cur - prev) / math.Pow(1+discount, t)
		prev = cur
		if t >= horizon {
			break
		}
	}
	return clv * spend
}

// PerUnitRate converts an annual discount rate into the equivalent rate per
// time unit, given how many units make a year (52.1775 weeks, 365.25 days).
func PerUnitRate(annual, unitsPerYear float64) float64 {
	return math.Pow(1+annual, 1/unitsPerYear) - 1
}
