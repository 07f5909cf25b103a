package scoring

import (
	"strings"
	"testing"
	"time"
)

// step is one thing that happens to a customer in a scenario: an event, or
// the sweeper evaluating at a watermark.
type step struct {
	event    *Event
	evaluate time.Time
	// want lists the changes this step must emit, as rendered by describe
	// (each a substring of the rendering, in order); nil means none.
	want []string
}

// runScenario plays the steps, checking the changes that keep reports true.
func runScenario(t *testing.T, p *Policy, steps []step, keep func(Change) bool) State {
	t.Helper()
	var s State
	for i, st := range steps {
		var ch []Change
		if st.event != nil {
			s, ch = mustApply(t, s, *st.event, p)
		} else {
			// evaluate is the end of the last day to close; the watermark closes it the
			// allowed lateness later.
			s, ch = Close(s, st.evaluate.Add(p.AllowedLateness), p)
		}
		var kept []Change
		for _, c := range ch {
			if keep(c) {
				kept = append(kept, c)
			}
		}
		got := describe(kept)
		if len(st.want) == 0 && got != "" {
			t.Fatalf("step %d emitted %q, want nothing", i, got)
		}
		rest := got
		for _, w := range st.want {
			j := strings.Index(rest, w)
			if j < 0 {
				t.Fatalf("step %d emitted %q, want it to include %q (in order)", i, got, w)
			}
			rest = rest[j+len(w):]
		}
	}
	return s
}

func TestTierRules(t *testing.T) {
	p := DefaultPolicy()
	var g evGen
	ev := func(e Event) *Event { return &e }
	review := func(reached time.Time) time.Time { return DayOf(reached).Start().Add(365 * 24 * time.Hour) }
	warn := func(reached time.Time) time.Time { return review(reached).Add(-30 * 24 * time.Hour) }

	tests := []struct {
		name  string
		steps []step
		tier  string
	}{
		{
			name: "a purchase that lifts 365-day net spend to 500.00 upgrades BRONZE to SILVER at once",
			steps: []step{
				{event: ev(g.purchase(day(0), 30000, "a"))},
				{event: ev(g.purchase(day(10), 20000, "b")), want: []string{"tier UP BRONZE->SILVER @" + day(10).Format("2006-01-02")}},
			},
			tier: "SILVER",
		},
		{
			name: "a purchase that passes two thresholds upgrades straight to GOLD",
			steps: []step{
				{event: ev(g.purchase(day(0), 10000, "a"))},
				{event: ev(g.purchase(day(3), 250000, "b")), want: []string{"tier UP BRONZE->GOLD"}},
			},
			tier: "GOLD",
		},
		{
			name: "spend older than 365 days does not count towards an upgrade",
			steps: []step{
				{event: ev(g.purchase(day(0), 40000, "a"))},
				{event: ev(g.purchase(day(366), 20000, "b"))},
			},
			tier: "BRONZE",
		},
		{
			name: "a PLATINUM customer with no spend at the review is warned 30 days before and then drops exactly one tier to GOLD",
			steps: []step{
				{event: ev(g.purchase(day(0), 600000, "a")), want: []string{"tier UP BRONZE->PLATINUM"}},
				{evaluate: warn(day(0)).Add(-time.Second)},
				{evaluate: warn(day(0)), want: []string{"tier WARNING PLATINUM->PLATINUM @" + warn(day(0)).Format("2006-01-02")}},
				{evaluate: review(day(0)).Add(-time.Second)},
				{evaluate: review(day(0)), want: []string{"tier DOWN PLATINUM->GOLD @" + review(day(0)).Format("2006-01-02")}},
			},
			tier: "GOLD",
		},
		{
			name: "a downgraded customer is reviewed again a year later and drops one more tier",
			steps: []step{
				{event: ev(g.purchase(day(0), 600000, "a")), want: []string{"tier UP BRONZE->PLATINUM"}},
				{evaluate: review(day(0)), want: []string{"WARNING PLATINUM", "tier DOWN PLATINUM->GOLD"}},
				{evaluate: review(review(day(0))), want: []string{"WARNING GOLD", "tier DOWN GOLD->SILVER"}},
			},
			tier: "SILVER",
		},
		{
			name: "a customer still qualifying at the review keeps the tier and is not warned",
			steps: []step{
				{event: ev(g.purchase(day(0), 60000, "a")), want: []string{"tier UP BRONZE->SILVER"}},
				{event: ev(g.purchase(day(300), 60000, "b"))},
				{evaluate: review(day(0)).Add(24 * time.Hour)},
			},
			tier: "SILVER",
		},
		{
			name: "a customer who spent enough but bought early in the year is warned when the spend is about to age out",
			steps: []step{
				{event: ev(g.purchase(day(0), 50000, "a")), want: []string{"tier UP BRONZE->SILVER"}},
				{event: ev(g.purchase(day(20), 10000, "b"))},
				{evaluate: warn(day(0)), want: []string{"tier WARNING SILVER->SILVER"}},
			},
			tier: "SILVER",
		},
		{
			name: "a refund inside the returns window reverses the spend and undoes the upgrade it caused",
			steps: []step{
				{event: ev(g.purchase(day(0), 30000, "a"))},
				{event: ev(g.purchase(day(5), 25000, "b")), want: []string{"tier UP BRONZE->SILVER"}},
				{event: ev(g.refund(day(12), 25000, "b")), want: []string{"tier DOWN SILVER->BRONZE @" + day(12).Format("2006-01-02")}},
			},
			tier: "BRONZE",
		},
		{
			name: "a partial refund that leaves spend above the threshold keeps the upgrade",
			steps: []step{
				{event: ev(g.purchase(day(0), 30000, "a"))},
				{event: ev(g.purchase(day(5), 25000, "b")), want: []string{"tier UP BRONZE->SILVER"}},
				{event: ev(g.refund(day(12), 5000, "b"))},
			},
			tier: "SILVER",
		},
		{
			name: "a refund after the returns window does not undo the upgrade",
			steps: []step{
				{event: ev(g.purchase(day(0), 30000, "a"))},
				{event: ev(g.purchase(day(5), 25000, "b")), want: []string{"tier UP BRONZE->SILVER"}},
				{event: ev(g.refund(day(40), 25000, "b"))},
				{evaluate: day(60)},
			},
			tier: "SILVER",
		},
		{
			name: "a refund of an order bought before the upgrade settled still undoes it within the window",
			steps: []step{
				{event: ev(g.purchase(day(0), 60000, "a")), want: []string{"tier UP BRONZE->SILVER"}},
				{evaluate: day(20)},
				{event: ev(g.refund(day(25), 60000, "a")), want: []string{"tier DOWN SILVER->BRONZE"}},
			},
			tier: "BRONZE",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := runScenario(t, p, tc.steps, func(c Change) bool { _, ok := c.(*TierChange); return ok })
			if got := p.TierName(int(s.Tier)); got != tc.tier {
				t.Fatalf("final tier %s, want %s", got, tc.tier)
			}
		})
	}
}

func TestTierChangesCarryReasonsAndPolicyVersion(t *testing.T) {
	p := DefaultPolicy()
	var g evGen
	s, _ := mustApply(t, State{}, g.purchase(day(0), 30000, "a"), p)
	_, ch := mustApply(t, s, g.purchase(day(1), 25000, "b"), p)
	up := only[*TierChange](ch)
	if len(up) != 1 {
		t.Fatalf("want one tier change, got %s", describe(ch))
	}
	c := up[0]
	if c.PolicyVersion != p.Version || len(c.Reasons) == 0 || c.Reasons[0].Code != ReasonSpendQualifies ||
		c.Reasons[0].Value != 55000 || !strings.Contains(c.Reasons[0].Message, "550.00 USD") {
		t.Fatalf("tier change %+v lacks its reason or policy version", c)
	}
	if c.Source.Topic != "loyalty.purchases.v1" || !c.OccurredAt.Equal(day(1)) || c.EventID != EventID(cust, "tier", "UP:SILVER", day(1)) {
		t.Fatalf("tier change %+v: wrong source, time or id", c)
	}
}

// Spend that ages out of the window after the last purchase, while the sweeper closes the
// days, must not flip an upgrade back and forth: only a refund within the returns window
// reverses one.
func TestAnUpgradeEarnedAsARefundAgesOutIsNotReversedWhenOldSpendAgesOutToo(t *testing.T) {
	p := DefaultPolicy()
	var g evGen
	var s State
	s, _ = mustApply(t, s, g.refund(day(0), 20000, ""), p)      // an old refund, ageing out on day 365
	s, _ = mustApply(t, s, g.purchase(day(1), 100000, "o1"), p) // ageing out on day 366
	s, _ = mustApply(t, s, g.purchase(day(300), 115000, "o2"), p)
	// Window on day 365: 100000 + 115000 = 215000 ≥ GOLD; on day 366: 115000.
	_, ch := Close(s, day(370), p)
	var dirs []string
	for _, c := range only[*TierChange](ch) {
		dirs = append(dirs, string(c.Direction)+":"+c.To)
	}
	if len(dirs) != 1 || dirs[0] != "UP:GOLD" {
		t.Fatalf("tier changes %v, want exactly [UP:GOLD]", dirs)
	}
}
