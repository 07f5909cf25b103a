package notifier_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// TestUpliftRecoversTheEffectBuiltIntoTheHistory: lapsing customers rise to HIGH churn risk and
// the notifier decides a win-back for each, holding out 30%. The history is built so that after
// the trigger a treated customer buys within 30 days with probability 0.5 and a held-out one
// with 0.2 (and either, otherwise, within 30 to 89 days with 0.2). Once the watermark has
// passed 90 days, the uplift counters equal the outcomes the test built, exposure by exposure,
// and each horizon's uplift interval holds the built-in effect (0.30 and 0.24) and not zero.
func TestUpliftRecoversTheEffectBuiltIntoTheHistory(t *testing.T) {
	in := newInfra(t)
	rules := notifier.DefaultRules()
	rules.HoldoutPercent = 30
	rules.CLV.ThresholdMinor = 1 << 50 // nobody's CLV is top: every rise to HIGH is a win-back
	e := newEnv(t, in, rules, nil)
	e.cfg.UpliftEvery = 100 * time.Millisecond
	const n = 600
	ids := make([]string, n)
	states := make([]scoring.State, n)
	var triggers []event.Event
	for i := range ids {
		ids[i] = fmt.Sprintf("u-%d", i)
		states[i] = e.seed(ids[i], customer{purchases: 6, amountMinor: 2000})
		triggers = append(triggers, churn(ids[i], "rise-"+ids[i], event.ChurnMedium, event.ChurnHigh, t0))
	}
	e.start(e.rt, e.cfg)
	e.produce(triggers...)
	waitFor(t, 2*time.Minute, "a decision for every trigger", func() bool { return len(e.actions.actions()) >= n })
	for _, a := range e.actions.actions() {
		if a.Kind != event.ActionWinBack || (a.Outcome != event.OutcomeHeldOut && a.Outcome != event.OutcomeSent) {
			t.Fatalf("decision %+v: want a win-back, sent or held out", a)
		}
	}

	// The outcomes, built by arm.
	rng := rand.New(rand.NewPCG(7, 8))
	want := kpi.UpliftCounts{}
	store, err := state.New(context.Background(), e.rt.Redis, e.rt.Keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := e.rt.Policy
	for i, id := range ids {
		arm, rate := kpi.ArmTreated, 0.5
		if notifier.HeldOut(rules.HoldoutSalt, id, rules.HoldoutPercent) {
			arm, rate = kpi.ArmHoldout, 0.2
		}
		day := -1
		switch {
		case rng.Float64() < rate:
			day = rng.IntN(30)
		case rng.Float64() < 0.2:
			day = 30 + rng.IntN(60)
		}
		for _, h := range kpi.UpliftHorizons {
			prefix := fmt.Sprintf("WIN_BACK|%s|%d|", arm, h)
			want[prefix+"n"]++
			if day >= 0 && day < h {
				want[prefix+"y"]++
			}
		}
		if day < 0 {
			continue
		}
		// The trigger is stamped at t0 (noon); its day counts, so a purchase that evening
		// is within the horizon.
		ev := scoring.Event{Kind: scoring.KindPurchase, EventID: id + "-back", CustomerID: id, OccurredAt: t0.AddDate(0, 0, day).Add(6 * time.Hour),
			AmountMinor: 2500, Currency: p.Currency, OrderID: "back", Source: scoring.Source{Topic: "seed", Offset: 100}}
		next, _, err := scoring.Apply(states[i], ev, p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Apply(context.Background(), []string{id}, func(string, state.Current) (state.Update, error) {
			value, err := next.AppendBinary(nil)
			return state.Update{Value: value}, err
		}); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing is settled before the watermark has passed a horizon.
	ctx := context.Background()
	counts, err := notifier.ReadUplift(ctx, e.rt.Redis, e.rt.Deployment, e.rt.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if counts[kpi.UpliftPendingField] != 2*n || counts["WIN_BACK|treated|30|n"]+counts["WIN_BACK|holdout|30|n"] != 0 {
		t.Fatalf("before the watermark: %v, want %d exposures pending and none settled", counts, 2*n)
	}
	marks, err := watermark.NewTracker(ctx, e.rt.Redis, e.rt.Keys.Watermarks(), p.AllowedLateness)
	if err != nil {
		t.Fatal(err)
	}
	wm := t0.AddDate(0, 0, 95)
	if err := marks.Report(ctx, []watermark.Position{{Topic: e.rt.Topic(event.TopicPurchases), Partition: 0, MaxEventTime: wm}}, wm); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "every exposure settled", func() bool {
		counts, err = notifier.ReadUplift(ctx, e.rt.Redis, e.rt.Deployment, e.rt.Keys)
		return err == nil && counts[kpi.UpliftPendingField] == 0
	})
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("counter %s: %d, the history has %d", k, counts[k], v)
		}
	}
	month := t0.Format("2006-01") + "|"
	if counts[month+"WIN_BACK|holdout|90|n"] != want["WIN_BACK|holdout|90|n"] {
		t.Errorf("the month's counter %d, the history's %d", counts[month+"WIN_BACK|holdout|90|n"], want["WIN_BACK|holdout|90|n"])
	}
	report := kpi.Uplift(counts, notifier.UpliftKinds())
	built := map[int]float64{30: 0.5 - 0.2, 90: (0.5 + 0.5*0.2) - (0.2 + 0.8*0.2)}
	for _, u := range report.Total {
		if u.Kind != string(event.ActionWinBack) {
			continue
		}
		if u.Uplift == nil {
			t.Fatalf("%d days: no uplift: %+v", u.Days, u)
		}
		t.Logf("win-back, %d days: treated %d/%d (%.3f), hold-out %d/%d (%.3f); uplift %.3f, 95%% interval [%.3f, %.3f]; built in %.2f",
			u.Days, u.Treated.Bought, u.Treated.Customers, *u.Treated.Rate, u.Holdout.Bought, u.Holdout.Customers, *u.Holdout.Rate,
			*u.Uplift, *u.Low, *u.High, built[u.Days])
		if *u.Low > built[u.Days] || *u.High < built[u.Days] || *u.Low <= 0 {
			t.Errorf("%d days: uplift interval [%.3f, %.3f] misses the built-in %.2f or holds 0", u.Days, *u.Low, *u.High, built[u.Days])
		}
		if u.Holdout.Customers < 100 || u.Treated.Customers < 300 {
			t.Errorf("%d days: %d treated and %d held out of %d", u.Days, u.Treated.Customers, u.Holdout.Customers, n)
		}
	}
}
