package scoring

import (
	"fmt"
	"math"
	"sort"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
)

// Level is a churn-risk level.
type Level uint8

// Churn-risk levels.
const (
	LevelLow Level = iota
	LevelMedium
	LevelHigh
)

func (l Level) String() string {
	switch l {
	case LevelLow:
		return "LOW"
	case LevelMedium:
		return "MEDIUM"
	case LevelHigh:
		return "HIGH"
	}
	return fmt.Sprintf("Level(%d)", uint8(l))
}

// riskFacts are the numbers behind a churn-risk score; messages are only
// formatted (reasons) when a change is emitted, which keeps the daily
// evaluation cheap.
type riskFacts struct {
	score, pAlive, gapRatio, usualGap, gapDays, loginTrend float64
	model, purchases, logins                               bool
	ownGap                                                 bool   // usualGap is the customer's own
	version                                                string // the model's, when model
	repeat, tenure, recentLogins, longLogins               int
	feedback                                               feedbackFacts
	// risk and weight of each component: p_alive, gap, login, feedback.
	risk, weight [4]float64
	wsum         float64
}

// assessRisk computes the churn-risk score at the end of day d from what is
// known up to that day:
//
//	score = Σ w_i·risk_i / Σ w_i over the components that apply
//
// with risk_pAlive = 1 − P(alive) (model only), risk_gap = clamp((g − 1) /
// (gap_ratio_full_risk − 1)) for g = days since last purchase / usual gap (its
// weight is gap + p_alive when the model does not apply),
// risk_login = clamp(1 − recent login rate / long login rate) and
// risk_feedback = the largest active feedback signal.
func assessRisk(s *State, d Day, p *Policy) riskFacts {
	c := &p.Churn
	f := riskFacts{pAlive: -1}
	pf := s.purchasesAsOf(d, p.Segments.WindowDays)
	if pf.any {
		f.purchases = true
		f.repeat, f.tenure = int(pf.days-1), int(d-pf.first)
		f.gapDays = float64(d - pf.last)
		model, version, fitted := p.ChurnModel()
		f.ownGap = f.repeat >= c.MinRepeatPurchases && f.tenure >= c.MinTenureDays
		f.model = fitted && f.ownGap
		f.usualGap = c.FallbackGapDays
		if f.ownGap {
			f.usualGap = math.Max(float64(pf.last-pf.first)/float64(f.repeat), 1)
		}
		gapWeight := c.Weights.Gap
		if f.model {
			f.version = version
			u := c.TimeUnitDays
			f.pAlive = model.PAlive(btyd.Summary{X: float64(f.repeat), TX: float64(pf.last-pf.first) / u, T: float64(d-pf.first) / u})
			f.risk[0], f.weight[0] = 1-f.pAlive, c.Weights.PAlive
		} else {
			// Without P(alive) the gap is the only measure of lapse: it carries both weights,
			// so a lapsed customer reaches HIGH under the rules too.
			gapWeight += c.Weights.PAlive
		}
		f.gapRatio = f.gapDays / f.usualGap
		f.risk[1], f.weight[1] = clamp01((f.gapRatio-1)/(c.GapRatioFullRisk-1)), gapWeight
	}
	if long := s.loginDays(d, c.LoginLongDays); long > 0 {
		f.logins = true
		f.longLogins, f.recentLogins = long, s.loginDays(d, c.LoginRecentDays)
		f.loginTrend = (float64(f.recentLogins) / float64(c.LoginRecentDays)) / (float64(long) / float64(c.LoginLongDays))
		f.risk[2], f.weight[2] = clamp01(1-f.loginTrend), c.Weights.Login
	}
	f.feedback = s.feedbackAsOf(d, p)
	ff := &f.feedback
	if ff.hasNPS && ff.nps <= 6 {
		f.risk[3] = math.Max(f.risk[3], c.Feedback.NPSDetractor)
	}
	if ff.hasCSAT && ff.csat <= 2 {
		f.risk[3] = math.Max(f.risk[3], c.Feedback.CSATLow)
	}
	if ff.openComplaints > 0 {
		f.risk[3] = math.Max(f.risk[3], c.Feedback.OpenComplaint)
	}
	f.weight[3] = c.Weights.Feedback
	var total float64
	for i := range f.risk {
		f.wsum += f.weight[i]
		total += f.weight[i] * f.risk[i]
	}
	if f.wsum > 0 {
		f.score = clamp01(total / f.wsum)
	}
	return f
}

// reasons lists up to three risk factors, largest contribution first, plus
// the rules-fallback label when the model was not used.
func (f *riskFacts) reasons(p *Policy) []Reason {
	c := &p.Churn
	type contrib struct {
		v float64
		r Reason
	}
	var cs []contrib
	add := func(i int, r Reason) {
		if f.risk[i] > 0 && f.weight[i] > 0 {
			cs = append(cs, contrib{f.weight[i] * f.risk[i] / f.wsum, r})
		}
	}
	if f.model {
		add(0, Reason{Code: ReasonPAlive, Value: round3(f.pAlive),
			Message: fmt.Sprintf("P(alive) %.2f after %d repeat purchases over %d days", f.pAlive, f.repeat, f.tenure)})
	}
	if f.purchases {
		msg := fmt.Sprintf("no purchase in %.0f days, %.1fx their usual gap", f.gapDays, f.gapRatio)
		if !f.ownGap {
			msg = fmt.Sprintf("no purchase in %.0f days, %.1fx the %.0f-day norm", f.gapDays, f.gapRatio, f.usualGap)
		}
		add(1, Reason{Code: ReasonPurchaseGap, Message: msg, Value: round3(f.gapRatio)})
	}
	if f.logins {
		add(2, Reason{Code: ReasonLoginDecline, Value: round3(f.loginTrend),
			Message: fmt.Sprintf("logged in on %d of the last %d days vs %d of the last %d",
				f.recentLogins, c.LoginRecentDays, f.longLogins, c.LoginLongDays)})
	}
	ff := &f.feedback
	// Each active feedback signal is listed with its own severity.
	sev := func(v float64) float64 { return f.weight[3] * v / f.wsum }
	if ff.hasNPS && ff.nps <= 6 && f.weight[3] > 0 {
		cs = append(cs, contrib{sev(c.Feedback.NPSDetractor), Reason{Code: ReasonNPSDetractor, Value: float64(ff.nps),
			Message: fmt.Sprintf("NPS %d (detractor) on %s", ff.nps, ff.npsDay.Start().Format("2006-01-02"))}})
	}
	if ff.hasCSAT && ff.csat <= 2 && f.weight[3] > 0 {
		cs = append(cs, contrib{sev(c.Feedback.CSATLow), Reason{Code: ReasonLowCSAT, Value: float64(ff.csat),
			Message: fmt.Sprintf("CSAT %d of 5 on %s", ff.csat, ff.csatDay.Start().Format("2006-01-02"))}})
	}
	if ff.openComplaints > 0 && f.weight[3] > 0 {
		cs = append(cs, contrib{sev(c.Feedback.OpenComplaint), Reason{Code: ReasonOpenComplaint, Value: float64(ff.openComplaints),
			Message: fmt.Sprintf("%d open complaint(s)", ff.openComplaints)}})
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].v > cs[j].v })
	var out []Reason
	for i := 0; i < len(cs) && i < 3; i++ {
		out = append(out, cs[i].r)
	}
	if !f.model {
		msg := fmt.Sprintf("%d repeat purchase(s) over %d days is too little history for the model; rule-based score", max(f.repeat, 0), f.tenure)
		switch _, _, fitted := p.ChurnModel(); {
		case !f.purchases:
			msg = "no purchase yet; rule-based score"
		case !fitted:
			msg = "no churn model fitted on this population yet; rule-based score"
		}
		out = append(out, Reason{Code: ReasonRulesFallback, Message: msg, Value: float64(max(f.repeat, 0))})
	}
	return out
}

// nextLevel applies the hysteresis thresholds: a level is entered when the
// score reaches its enter threshold and left when it falls below its leave
// threshold.
func nextLevel(cur Level, score float64, c *ChurnPolicy) Level {
	switch cur {
	case LevelHigh:
		if score >= c.High.Leave {
			return LevelHigh
		}
	case LevelMedium:
		if score >= c.High.Enter {
			return LevelHigh
		}
		if score >= c.Medium.Leave {
			return LevelMedium
		}
		return LevelLow
	}
	switch {
	case score >= c.High.Enter:
		return LevelHigh
	case score >= c.Medium.Enter:
		return LevelMedium
	case cur == LevelHigh && score >= c.Medium.Leave:
		return LevelMedium
	}
	return LevelLow
}

func clamp01(v float64) float64 {
	if !(v > 0) {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// ChurnAt is the churn-risk assessment as of the end of day d: the score in [0, 1] and the
// top reasons, as a change on that day would carry them. It is what inspection tools show to
// explain a customer's current level.
func ChurnAt(s State, d Day, p *Policy) (score float64, reasons []Reason) {
	f := assessRisk(&s, d, p)
	return round3(f.score), f.reasons(p)
}

// PAliveAt is the BG/NBD probability that the customer is still active at the end of day d,
// and false when the churn rules fall back (too few repeat purchases or too short a tenure).
func PAliveAt(s State, d Day, p *Policy) (float64, bool) {
	f := assessRisk(&s, d, p)
	return f.pAlive, f.model
}
