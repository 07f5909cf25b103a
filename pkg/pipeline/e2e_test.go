package pipeline_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

// history is a scripted history of a handful of customers, in the past relative to now.
func history(now time.Time) []event.Input {
	base := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -200).Add(10 * time.Hour)
	var in []event.Input
	n := 0
	buy := func(c string, day int, amount int64) string {
		n++
		order := fmt.Sprintf("%s-o%d", c, n)
		in = append(in, event.Purchase{EventID: fmt.Sprintf("p%d", n), CustomerID: c, OccurredAt: base.AddDate(0, 0, day),
			OrderID: order, Kind: event.KindPurchase, AmountMinor: amount, Currency: "USD"})
		return order
	}
	refund := func(c string, day int, amount int64, order string) {
		n++
		in = append(in, event.Purchase{EventID: fmt.Sprintf("r%d", n), CustomerID: c, OccurredAt: base.AddDate(0, 0, day),
			OrderID: fmt.Sprintf("%s-r%d", c, n), Kind: event.KindRefund, AmountMinor: amount, Currency: "USD", RefundOfOrderID: order})
	}
	login := func(c string, day int) {
		n++
		in = append(in, event.Login{EventID: fmt.Sprintf("l%d", n), CustomerID: c, OccurredAt: base.AddDate(0, 0, day).Add(time.Hour), Channel: event.ChannelApp})
	}
	feedback := func(c string, day int, kind event.FeedbackKind, score int32, caseID string) {
		n++
		f := event.Feedback{EventID: fmt.Sprintf("f%d", n), CustomerID: c, OccurredAt: base.AddDate(0, 0, day).Add(2 * time.Hour), Kind: kind, CaseID: caseID}
		if kind == event.FeedbackNPS || kind == event.FeedbackCSAT {
			f.Score = &score
		}
		in = append(in, f)
	}
	// A steady buyer: 60.00 every two weeks, logging in weekly, to a week ago.
	for d := 0; d <= 190; d += 14 {
		buy("steady", d, 6000)
		login("steady", d+3)
		login("steady", d+10)
	}
	// A big spender who crosses SILVER, then GOLD.
	buy("big", 1, 60000)
	buy("big", 10, 150000)
	for d := 12; d <= 190; d += 20 {
		buy("big", d, 5000)
	}
	// A regular who goes silent after two months.
	for d := 0; d <= 60; d += 10 {
		buy("silent", d, 4000)
		login("silent", d+2)
	}
	// A detractor who complains.
	for d := 0; d <= 150; d += 15 {
		buy("detractor", d, 3000)
	}
	feedback("detractor", 160, event.FeedbackNPS, 2, "")
	feedback("detractor", 160, event.FeedbackComplaintOpened, 0, "case-1")
	// A refund that undoes an upgrade.
	buy("refunder", 100, 45000)
	order := buy("refunder", 105, 10000)
	refund("refunder", 110, 10000, order)
	return in
}

// TestAScriptedHistoryProducesTheExpectedDerivedEventsExactlyOnce runs the whole pipeline
// in-process against Kafka and Redis (real ones in CI) and checks the derived events.
func TestAScriptedHistoryProducesTheExpectedDerivedEventsExactlyOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rt := e.runtime(ctx, e.ns, false)
	out := e.collect(rt, rt.Topic(event.TopicTierChanges), rt.Topic(event.TopicChurnRisk), rt.Topic(event.TopicSegmentChanges))
	svc := e.start(rt, true)
	defer svc.stop()
	e.produce(rt, history(time.Now()))

	tiers := func(evs []event.Event, c string) []event.TierChanged {
		var out []event.TierChanged
		for _, ev := range evs {
			if tc, ok := ev.(event.TierChanged); ok && tc.CustomerID == c {
				out = append(out, tc)
			}
		}
		return out
	}
	churn := func(evs []event.Event, c string) []event.ChurnRiskChanged {
		var out []event.ChurnRiskChanged
		for _, ev := range evs {
			if cc, ok := ev.(event.ChurnRiskChanged); ok && cc.CustomerID == c {
				out = append(out, cc)
			}
		}
		return out
	}
	evs := out.waitQuiet(t, 3*time.Minute, 3*time.Second, func(evs []event.Event) bool {
		return len(tiers(evs, "big")) >= 2 && len(tiers(evs, "refunder")) >= 2 && slices.ContainsFunc(churn(evs, "silent"), func(c event.ChurnRiskChanged) bool { return c.ToLevel == event.ChurnHigh })
	})

	seen := map[string]int{}
	for _, ev := range evs {
		id, _ := idOf(ev)
		seen[id]++
		if seen[id] > 1 {
			t.Errorf("event %s published %d times: %+v", id, seen[id], ev)
		}
	}
	big := tiers(evs, "big")
	if len(big) != 2 || big[0].ToTier != event.TierSilver || big[1].ToTier != event.TierGold || big[1].Direction != event.DirectionUp {
		t.Errorf("big spender tier changes: %+v", big)
	}
	for _, tc := range big {
		if len(tc.Reasons) == 0 || tc.Source.Topic != rt.Topic(event.TopicPurchases) || tc.PolicyVersion == "" {
			t.Errorf("tier change lacks reasons, source or policy version: %+v", tc)
		}
	}
	ref := tiers(evs, "refunder")
	if len(ref) != 2 || ref[0].Direction != event.DirectionUp || ref[1].Direction != event.DirectionDown || ref[1].ToTier != event.TierBronze ||
		!slices.ContainsFunc(ref[1].Reasons, func(r event.Reason) bool { return r.Code == "REFUND_REVERSED_QUALIFYING_SPEND" }) {
		t.Errorf("refund reversal: %+v", ref)
	}
	if st := tiers(evs, "steady"); len(st) != 1 || st[0].ToTier != event.TierSilver {
		t.Errorf("steady buyer tier changes: %+v", st)
	}
	silent := churn(evs, "silent")
	high := slices.IndexFunc(silent, func(c event.ChurnRiskChanged) bool { return c.ToLevel == event.ChurnHigh })
	if high < 0 || silent[high].Source.Topic != "sweeper" || len(silent[high].Reasons) == 0 {
		t.Errorf("silent customer churn changes: %+v", silent)
	}
	det := churn(evs, "detractor")
	if !slices.ContainsFunc(det, func(c event.ChurnRiskChanged) bool {
		return c.ToLevel != event.ChurnLow && slices.ContainsFunc(c.Reasons, func(r event.Reason) bool { return r.Code == "OPEN_COMPLAINT" || r.Code == "NPS_DETRACTOR" })
	}) {
		t.Errorf("detractor churn changes lack a feedback reason: %+v", det)
	}
	if c := churn(evs, "steady"); slices.ContainsFunc(c, func(c event.ChurnRiskChanged) bool { return c.ToLevel == event.ChurnHigh }) {
		t.Errorf("the steady buyer was flagged HIGH: %+v", c)
	}
	segments := 0
	for _, ev := range evs {
		if sc, ok := ev.(event.SegmentChanged); ok {
			segments++
			if sc.CutpointsVersion == "" || sc.ToSegment == "" {
				t.Errorf("segment change without cut points or segment: %+v", sc)
			}
		}
	}
	if segments == 0 {
		t.Error("no segment changes")
	}
	t.Logf("%d derived events", len(evs))
}
