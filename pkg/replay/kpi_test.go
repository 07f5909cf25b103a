package replay_test

import (
	"context"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// monthKPIs are the KPIs of a window computed straight from the input events, without the
// pipeline: an independent check of the KPI counters.
type monthKPIs struct {
	orders, gross, refunds, refunded               int64
	active, repeat, priorActive, retained          int64
	aov, refundRate, repurchaseRate, retentionRate float64
}

// directKPIs computes the KPIs of the w days ending on day d from the events: orders and
// amounts summed over the window; a customer is active with a purchase day in the window,
// repeat with two or more distinct purchase days in it, retained when also active in the w
// days before (docs/metrics.md).
func directKPIs(events []event.Input, d scoring.Day, w int) monthKPIs {
	var k monthKPIs
	lo, priorLo := d-scoring.Day(w)+1, d-scoring.Day(2*w)+1
	inWindow := map[string]map[scoring.Day]bool{}
	inPrior := map[string]bool{}
	for _, e := range events {
		p := e.(event.Purchase)
		day := scoring.DayOf(p.OccurredAt)
		if day >= lo && day <= d {
			if p.Kind == event.KindRefund {
				k.refunds++
				k.refunded += p.AmountMinor
				continue
			}
			k.orders++
			k.gross += p.AmountMinor
			if inWindow[p.CustomerID] == nil {
				inWindow[p.CustomerID] = map[scoring.Day]bool{}
			}
			inWindow[p.CustomerID][day] = true
		}
		if p.Kind == event.KindPurchase && day >= priorLo && day < lo {
			inPrior[p.CustomerID] = true
		}
	}
	for c, days := range inWindow {
		k.active++
		if len(days) >= 2 {
			k.repeat++
		}
		if inPrior[c] {
			k.retained++
		}
	}
	k.priorActive = int64(len(inPrior))
	k.aov = float64(k.gross) / float64(k.orders)
	k.refundRate = float64(k.refunded) / float64(k.gross)
	k.repurchaseRate = float64(k.repeat) / float64(k.active)
	k.retentionRate = float64(k.retained) / float64(k.priorActive)
	return k
}

// checkRetailKPIs compares the live namespace's KPIs of November 2011 (moved by shift, as the
// events were) with directKPIs, and the replay's whole KPI series with live's.
func checkRetailKPIs(t *testing.T, events []event.Input, live, replayed *wiring.Runtime, shift time.Duration) {
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
	novemberEnd := scoring.DayOf(time.Date(2011, 11, 30, 12, 0, 0, 0, time.UTC).Add(shift))
	if !liveKPIs.HasComplete || liveKPIs.Complete < novemberEnd {
		t.Fatalf("live KPIs complete through %s (known %v; watermark %s, first deadline %s): November 2011 (to %s) is not final",
			liveKPIs.Complete.Start().Format(time.DateOnly), liveKPIs.HasComplete, liveKPIs.Watermark, liveKPIs.FirstDue,
			novemberEnd.Start().Format(time.DateOnly))
	}

	got, want := liveKPIs.Counters.Report(novemberEnd, 30), directKPIs(events, novemberEnd, 30)
	t.Logf("November 2011 (30 days to %s), from %d stored counters: net revenue %d, %d orders, AOV %.2f, refund rate %.4f, "+
		"%d active, %d repeat (repurchase rate %.4f), %d of %d retained (%.4f)", got.Day, liveKPIs.Fields, got.NetRevenueMinor,
		got.Orders, *got.AvgOrderMinor, *got.RefundRate, got.ActiveCustomers, got.RepeatCustomers, *got.RepurchaseRate,
		got.Retained, got.PriorActive, *got.RetentionRate)
	if want.active < 100 || want.retained == 0 || want.refunds == 0 || want.repeat == 0 {
		t.Fatalf("the month is too thin to test anything: %+v", want)
	}
	counts := []struct {
		name      string
		got, want int64
	}{
		{"orders", got.Orders, want.orders},
		{"gross revenue", got.GrossMinor, want.gross},
		{"refunds", got.Refunds, want.refunds},
		{"refunded", got.RefundMinor, want.refunded},
		{"net revenue", got.NetRevenueMinor, want.gross - want.refunded},
		{"active customers", got.ActiveCustomers, want.active},
		{"repeat customers", got.RepeatCustomers, want.repeat},
		{"prior active customers", got.PriorActive, want.priorActive},
		{"retained customers", got.Retained, want.retained},
	}
	for _, c := range counts {
		if c.got != c.want {
			t.Errorf("November 2011: %s %d, computed from the data set %d", c.name, c.got, c.want)
		}
	}
	rates := []struct {
		name string
		got  *float64
		want float64
	}{
		{"average order value", got.AvgOrderMinor, want.aov},
		{"refund rate", got.RefundRate, want.refundRate},
		{"repurchase rate", got.RepurchaseRate, want.repurchaseRate},
		{"retention rate", got.RetentionRate, want.retentionRate},
	}
	for _, r := range rates {
		if r.got == nil || math.Abs(*r.got-r.want) > 1e-9*math.Max(1, math.Abs(r.want)) {
			t.Errorf("November 2011: %s %v, computed from the data set %v", r.name, r.got, r.want)
		}
	}

	// The replay's series, every day and window both have final, equals live's.
	last := min(liveKPIs.Complete, replayKPIs.Complete)
	first, _, ok := liveKPIs.Counters.Days()
	if !ok || !replayKPIs.HasComplete || last < novemberEnd {
		t.Fatalf("replay KPIs complete through %s (known %v): nothing to compare", replayKPIs.Complete.Start().Format(time.DateOnly), replayKPIs.HasComplete)
	}
	for _, w := range kpi.Windows {
		ls, rs := liveKPIs.Counters.Series(first, last, w), replayKPIs.Counters.Series(first, last, w)
		for i := range ls {
			if !reflect.DeepEqual(ls[i], rs[i]) {
				t.Fatalf("KPIs of %d days to %s: live %+v, replay %+v", w, ls[i].Day, ls[i], rs[i])
			}
		}
	}
	t.Logf("replay: the KPI series of %d days × %d windows equals live's", last-first+1, len(kpi.Windows))
}
