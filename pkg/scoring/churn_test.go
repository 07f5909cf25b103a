package scoring

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestChurnHysteresis(t *testing.T) {
	c := &DefaultPolicy().Churn // MEDIUM enter 0.45 leave 0.35; HIGH enter 0.70 leave 0.60
	for _, tc := range []struct {
		name  string
		from  Level
		score float64
		want  Level
	}{
		{"a LOW customer stays LOW below the MEDIUM enter threshold", LevelLow, 0.44, LevelLow},
		{"a LOW customer enters MEDIUM at its enter threshold", LevelLow, 0.45, LevelMedium},
		{"a LOW customer jumps straight to HIGH at the HIGH enter threshold", LevelLow, 0.70, LevelHigh},
		{"a MEDIUM customer stays MEDIUM between the leave and enter thresholds", LevelMedium, 0.40, LevelMedium},
		{"a MEDIUM customer stays MEDIUM exactly at the leave threshold", LevelMedium, 0.35, LevelMedium},
		{"a MEDIUM customer returns to LOW below the leave threshold", LevelMedium, 0.34, LevelLow},
		{"a MEDIUM customer escalates to HIGH at the HIGH enter threshold", LevelMedium, 0.70, LevelHigh},
		{"a HIGH customer stays HIGH between the HIGH leave and enter thresholds", LevelHigh, 0.65, LevelHigh},
		{"a HIGH customer drops to MEDIUM below the HIGH leave threshold", LevelHigh, 0.59, LevelMedium},
		{"a HIGH customer drops to MEDIUM even below MEDIUM's enter threshold while above its leave", LevelHigh, 0.40, LevelMedium},
		{"a HIGH customer drops straight to LOW below MEDIUM's leave threshold", LevelHigh, 0.20, LevelLow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextLevel(tc.from, tc.score, c); got != tc.want {
				t.Fatalf("nextLevel(%s, %.2f) = %s, want %s", tc.from, tc.score, got, tc.want)
			}
		})
	}
}

func churnOnly(c Change) bool { _, ok := c.(*ChurnRiskChange); return ok }

func TestChurnDwellAndLevelChanges(t *testing.T) {
	p := DefaultPolicy() // min_dwell_days 7
	var g evGen
	ev := func(e Event) *Event { return &e }
	complaint := g.feedback(day(0), FeedbackComplaintOpened, 0)
	closed := g.feedback(day(2), FeedbackComplaintClosed, 0)
	since := DayOf(day(1)).Start() // HIGH from the end of day 0
	for _, tc := range []struct {
		name  string
		steps []step
		level Level
	}{
		{
			name: "an open complaint raises a feedback-only customer to HIGH at the end of the day",
			steps: []step{
				{event: ev(complaint)},
				{evaluate: since, want: []string{"churn LOW->HIGH @" + since.Format("2006-01-02")}},
			},
			level: LevelHigh,
		},
		{
			name: "a closed complaint does not lower the level before the minimum dwell time",
			steps: []step{
				{event: ev(complaint)},
				{evaluate: since, want: []string{"churn LOW->HIGH"}},
				{event: ev(closed)},
				{evaluate: since.Add(7*24*time.Hour - time.Second)},
			},
			level: LevelHigh,
		},
		{
			name: "the level drops once the minimum dwell time has passed",
			steps: []step{
				{event: ev(complaint)},
				{evaluate: since, want: []string{"churn LOW->HIGH"}},
				{event: ev(closed)},
				{evaluate: since.Add(7 * 24 * time.Hour), want: []string{"churn HIGH->LOW @" + since.Add(7*24*time.Hour).Format("2006-01-02")}},
			},
			level: LevelLow,
		},
		{
			name: "an unchanged level emits nothing day after day",
			steps: []step{
				{event: ev(complaint)},
				{evaluate: since, want: []string{"churn LOW->HIGH"}},
				{evaluate: since.Add(30 * 24 * time.Hour)},
			},
			level: LevelHigh,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := runScenario(t, p, tc.steps, churnOnly)
			if s.Churn != tc.level {
				t.Fatalf("final level %s, want %s", s.Churn, tc.level)
			}
		})
	}
}

func TestChurnRulesFallbackIsLabelled(t *testing.T) {
	p := DefaultPolicy()
	var g evGen
	s, _ := mustApply(t, State{}, g.purchase(day(0), 5000, "a"), p)
	s, ch := Close(s, day(200), p)
	cs := only[*ChurnRiskChange](ch)
	if len(cs) == 0 {
		t.Fatalf("a one-purchase customer silent for 200 days raised no churn change: %s", describe(ch))
	}
	c := cs[len(cs)-1]
	if c.ModelVersion != p.Churn.RulesVersion || c.PAlive != -1 {
		t.Fatalf("fallback change %+v not labelled %s with PAlive -1", c, p.Churn.RulesVersion)
	}
	if !hasReason(c.Reasons, ReasonRulesFallback) || !hasReason(c.Reasons, ReasonPurchaseGap) {
		t.Fatalf("fallback change reasons %+v lack %s and %s", c.Reasons, ReasonRulesFallback, ReasonPurchaseGap)
	}
	if s.Churn != c.ToLevel {
		t.Fatalf("state level %s differs from the last change %s", s.Churn, c.ToLevel)
	}
}

// withFit puts a policy under a fitted churn model: the CDNOW parameters, as if the pipeline
// had fitted them at a boundary.
func withFit(t *testing.T, p *Policy) *Policy {
	t.Helper()
	q, err := p.WithFittedModel(&FittedModel{Version: "bgnbd-v1@1970-01-29", Boundary: 28, BGNBD: p.Churn.BGNBD, Customers: 1000, RepeatCustomers: 400})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestChurnBeforeTheFirstFitIsTheLabelledRulesFallback(t *testing.T) {
	p := DefaultPolicy()
	if !p.Churn.Refit.Enabled() {
		t.Fatal("the default policy does not refit its churn model")
	}
	var g evGen
	var s State
	for i := 0; i < 10; i++ { // a regular buyer, whom a fitted model would score
		s, _ = mustApply(t, s, g.purchase(day(10*i), 4000, "o"), p)
	}
	_, ch := Close(s, day(400), p)
	cs := only[*ChurnRiskChange](ch)
	if len(cs) == 0 {
		t.Fatalf("a regular buyer silent for 310 days raised no churn change: %s", describe(ch))
	}
	for _, c := range cs {
		if c.ModelVersion != p.Churn.RulesVersion || c.PAlive != -1 || !hasReason(c.Reasons, ReasonRulesFallback) {
			t.Fatalf("before any fit, change %+v is not the labelled rules fallback", c)
		}
		if r := c.Reasons[len(c.Reasons)-1]; !strings.Contains(r.Message, "no churn model fitted") {
			t.Fatalf("the fallback reason %q does not say that no model is fitted yet", r.Message)
		}
	}
	// The rules still see the lapse: against the buyer's own 10-day gap, with the gap
	// carrying P(alive)'s weight, the lapse is HIGH within weeks.
	last := cs[len(cs)-1]
	if last.ToLevel != LevelHigh || !slices.ContainsFunc(last.Reasons, func(r Reason) bool {
		return r.Code == ReasonPurchaseGap && strings.Contains(r.Message, "their usual gap") && r.Value > 3
	}) {
		t.Fatalf("a regular buyer silent for 310 days ends at %+v, want HIGH against their own 10-day gap", last)
	}
	if _, _, ok := p.ChurnModel(); ok {
		t.Fatal("a refitting policy without a fit reports a model")
	}
	fixed := *p
	fixed.Churn.Refit = RefitPolicy{}
	if m, v, ok := fixed.ChurnModel(); !ok || v != p.Churn.ModelVersion || m != p.Churn.BGNBD {
		t.Fatalf("refit off: model %+v %q %v, want the policy's parameters", m, v, ok)
	}
	if _, err := fixed.WithFittedModel(&FittedModel{Version: "x", BGNBD: p.Churn.BGNBD}); err == nil {
		t.Fatal("a fitted model was accepted under a policy that does not refit")
	}
}

func TestChurnModelExplainsTheGap(t *testing.T) {
	p := withFit(t, DefaultPolicy())
	var g evGen
	var s State
	for i := 0; i < 10; i++ { // a purchase every 10 days for 90 days
		s, _ = mustApply(t, s, g.purchase(day(10*i), 4000, "o"), p)
	}
	_, ch := Close(s, day(200), p)
	cs := only[*ChurnRiskChange](ch)
	if len(cs) == 0 {
		t.Fatalf("a regular buyer silent for 110 days raised no churn change: %s", describe(ch))
	}
	c := cs[0]
	if c.ModelVersion != p.Fitted.Version || !(c.PAlive >= 0 && c.PAlive < 1) || c.ToLevel == LevelLow {
		t.Fatalf("model change %+v: want %s, a P(alive) in [0,1) and a raised level", c, p.Fitted.Version)
	}
	gap := regexp.MustCompile(`^no purchase in \d+ days, \d+\.\dx their usual gap$`)
	var found bool
	for _, r := range c.Reasons {
		if r.Code == ReasonPurchaseGap {
			found = gap.MatchString(r.Message) && r.Value > 1
		}
	}
	if !found {
		t.Fatalf("reasons %+v lack a readable purchase-gap reason", c.Reasons)
	}
	if len(c.Reasons) > 3 {
		t.Fatalf("%d reasons, want at most 3 for a model score", len(c.Reasons))
	}
}

func TestChurnFeedbackSignals(t *testing.T) {
	p := DefaultPolicy()
	for _, tc := range []struct {
		name   string
		kind   FeedbackKind
		score  int
		reason string
	}{
		{"an NPS of 6 is a detractor", FeedbackNPS, 6, ReasonNPSDetractor},
		{"a CSAT of 2 is low", FeedbackCSAT, 2, ReasonLowCSAT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g evGen
			s, _ := mustApply(t, State{}, g.feedback(day(0), tc.kind, tc.score), p)
			_, ch := Close(s, day(1), p)
			cs := only[*ChurnRiskChange](ch)
			if len(cs) != 1 || !hasReason(cs[0].Reasons, tc.reason) {
				t.Fatalf("got %s %+v, want one change with reason %s", describe(ch), cs, tc.reason)
			}
		})
	}
	t.Run("an NPS of 7 is not a detractor", func(t *testing.T) {
		var g evGen
		s, _ := mustApply(t, State{}, g.feedback(day(0), FeedbackNPS, 7), p)
		if _, ch := Close(s, day(1), p); len(ch) != 0 {
			t.Fatalf("a passive NPS emitted %s", describe(ch))
		}
	})
}

func hasReason(rs []Reason, code string) bool {
	for _, r := range rs {
		if r.Code == code && strings.TrimSpace(r.Message) != "" {
			return true
		}
	}
	return false
}
