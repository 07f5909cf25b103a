package loyaltyctl

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// TestCustomerExplainsTheChurnLevelWithItsReasons: support reads `loyaltyctl customer` to
// see why a customer is at risk; a regular buyer who went silent shows HIGH risk with the
// purchase gap among the reasons, as of the last evaluated day.
func TestCustomerExplainsTheChurnLevelWithItsReasons(t *testing.T) {
	keys, rdb := commandRedis(t)
	// The namespace has fitted its churn model (here: the CDNOW parameters) at a boundary;
	// the command explains the customer with it.
	fit := &scoring.FittedModel{Version: "bgnbd-v1@2025-01-02", Boundary: scoring.DayOf(time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)),
		BGNBD: scoring.DefaultPolicy().Churn.BGNBD, Customers: 1000, RepeatCustomers: 300}
	if _, err := namespace.SealCutpoints(context.Background(), rdb, keys, namespace.SealedCutpoints{Boundary: fit.Boundary, Date: "2025-01-02",
		Model: fit, ModelFitted: true}); err != nil {
		t.Fatal(err)
	}
	p, err := scoring.DefaultPolicy().WithFittedModel(fit)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)
	var st scoring.State
	for i := range 12 { // a purchase every two weeks, then silence
		at := start.AddDate(0, 0, 14*i)
		var err error
		st, _, err = scoring.Apply(st, scoring.Event{Kind: scoring.KindPurchase, EventID: fmt.Sprintf("p%d", i), CustomerID: "c-7",
			OccurredAt: at, AmountMinor: 8000, Currency: "USD", OrderID: fmt.Sprintf("o%d", i)}, p)
		if err != nil {
			t.Fatal(err)
		}
	}
	st, _, _ = scoring.Sweep(st, start.AddDate(0, 0, 14*11+150), p)
	if st.Churn != scoring.LevelHigh {
		t.Fatalf("the silent buyer is %s after 150 days, want HIGH (the test history is wrong)", st.Churn)
	}
	if err := rdb.HSet(context.Background(), keys.Customer("c-7"), st.MarshalFields()).Err(); err != nil {
		t.Fatal(err)
	}

	code, out, errs := run(t, "customer", "c-7", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var view CustomerView
	if err := json.Unmarshal([]byte(out), &view); err != nil {
		t.Fatalf("output is not the JSON view: %v\n%s", err, out)
	}
	if view.ChurnModel != fit.Version {
		t.Errorf("churn model %q, want the namespace's fit %s", view.ChurnModel, fit.Version)
	}
	if view.ChurnLevel != "HIGH" || view.EvaluatedThrough != st.EvalDay.Start().Format(time.DateOnly) {
		t.Errorf("churn %s evaluated through %s, want HIGH through %s", view.ChurnLevel, view.EvaluatedThrough, st.EvalDay.Start().Format(time.DateOnly))
	}
	score, want := scoring.ChurnAt(st, st.EvalDay, p)
	if view.ChurnScore != score {
		t.Errorf("churn score %v, want the stored %v", view.ChurnScore, score)
	}
	gap := false
	for _, r := range view.ChurnReasons {
		gap = gap || (r.Code == scoring.ReasonPurchaseGap && r.Message != "" && r.Value > 1)
	}
	if !gap || len(view.ChurnReasons) != len(want) {
		t.Errorf("reasons %+v: want the %d reasons of the assessment, the purchase gap among them", view.ChurnReasons, len(want))
	}
	if code, _, _ := run(t, "customer", "nobody"); code != 1 {
		t.Errorf("an unknown customer: exit %d, want 1", code)
	}
}
