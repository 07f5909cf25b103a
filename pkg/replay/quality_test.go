package replay_test

import (
	"context"
	"reflect"
	"strconv"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// checkRetailQuality checks the churn model's quality counters on the retail history: on every
// observation day whose outcomes are final, the customers observed and those who bought again
// within 30 and 90 days equal a computation from the raw purchases, and the replay's quality
// reports equal live's.
func checkRetailQuality(t *testing.T, events []event.Input, live, replayed *wiring.Runtime) {
	t.Helper()
	ctx := context.Background()
	liveKPIs, err := live.KPIs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replayKPIs, err := replayed.KPIs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	complete := min(liveKPIs.Complete, replayKPIs.Complete)
	purchaseDays := map[string][]scoring.Day{}
	for _, e := range events {
		if p := e.(event.Purchase); p.Kind == event.KindPurchase {
			purchaseDays[p.CustomerID] = append(purchaseDays[p.CustomerID], scoring.DayOf(p.OccurredAt))
		}
	}
	direct := func(d scoring.Day) (observed int64, bought [2]int64) {
		for _, days := range purchaseDays {
			first, next := false, scoring.Day(-1)
			for _, x := range days {
				if x <= d {
					first = true
				} else if next < 0 || x < next {
					next = x
				}
			}
			if !first {
				continue
			}
			observed++
			for i, h := range scoring.QualityHorizons {
				if next >= 0 && next-d <= scoring.Day(h) {
					bought[i]++
				}
			}
		}
		return observed, bought
	}
	checked := 0
	for _, d := range liveKPIs.Counters.QualityDays() {
		lr, rr := liveKPIs.Counters.Quality(d, complete, live.Policy), replayKPIs.Counters.Quality(d, complete, replayed.Policy)
		if !reflect.DeepEqual(lr, rr) {
			t.Fatalf("model quality of %s: live %+v, replay %+v", lr.Day, lr, rr)
		}
		var observed int64
		var bought [2]int64
		for _, g := range lr.Levels {
			observed += g.Customers
			bought[0] += g.Bought30
			bought[1] += g.Bought90
		}
		wantObserved, wantBought := direct(d)
		if observed != wantObserved {
			t.Errorf("quality day %s: %d customers observed, the data set has %d with a purchase by then", lr.Day, observed, wantObserved)
		}
		for i, h := range lr.Horizons {
			if h.Final && bought[i] != wantBought[i] {
				t.Errorf("quality day %s: %d bought within %d days, the data set says %d", lr.Day, bought[i], h.Days, wantBought[i])
			}
		}
		if lr.Horizons[1].Final {
			checked++
			t.Logf("model quality of %s: %d observed (%d scored by the model), %d bought within 30 days, %d within 90; by level 90d %s; Brier 30d %s (base %s), 90d %s (base %s)",
				lr.Day, observed, lr.Horizons[0].Customers, bought[0], bought[1], levelRates(lr.Levels), f4(lr.Horizons[0].Brier), f4(lr.Horizons[0].BrierBase),
				f4(lr.Horizons[1].Brier), f4(lr.Horizons[1].BrierBase))
		}
	}
	if checked == 0 {
		t.Fatalf("no observation day with final 90-day outcomes among %d (complete through %d)", len(liveKPIs.Counters.QualityDays()), complete)
	}
}

func levelRates(gs []kpi.QualityGroup) string {
	var out string
	for _, g := range gs {
		out += g.Group[2:] + " " + pct(g.Rate90) + " of " + itoa(g.Customers) + "; "
	}
	return out
}

func pct(r *float64) string {
	if r == nil {
		return "-"
	}
	return strconv.FormatFloat(100**r, 'f', 1, 64) + "%"
}

func f4(r *float64) string {
	if r == nil {
		return "-"
	}
	return strconv.FormatFloat(*r, 'f', 4, 64)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
