package pipeline_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// TestTheKPIGaugesReportTheLastFinalDay: the sweeper's exporter serves the last final day's
// KPIs per window and the mix, summed over the shards, and nothing before a day is final.
func TestTheKPIGaugesReportTheLastFinalDay(t *testing.T) {
	ctx := context.Background()
	rdb := testinfra.RedisClient(t)
	keys, _ := keyspace.New(testinfra.Namespace(t, "kpi"), 4)
	store, err := state.New(ctx, rdb, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := scoring.DefaultPolicy()
	marks, err := watermark.NewTracker(ctx, rdb, keys.Watermarks(), p.AllowedLateness)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	exp := pipeline.NewKPIExporter(&pipeline.KPIExporter{Store: store, Watermarks: marks, Policy: p, Log: zaptest.NewLogger(t)}, reg)
	if err := exp.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(exp); n != 0 {
		t.Fatalf("%d series before any day is final, want none", n)
	}

	// Five customers buying, one answering NPS; their counters written through the store.
	start := time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)
	want := kpi.NewCounters()
	for c := range 5 {
		id := fmt.Sprintf("k-%d", c)
		var events []scoring.Event
		for i := range 4 {
			events = append(events, scoring.Event{Kind: scoring.KindPurchase, EventID: fmt.Sprintf("%s-%d", id, i), CustomerID: id,
				OccurredAt: start.AddDate(0, 0, 5*i+c), AmountMinor: int64(2500 * (i + 1)), Currency: "USD", OrderID: fmt.Sprintf("%s-o%d", id, i)})
		}
		if c == 0 {
			events = append(events, scoring.Event{Kind: scoring.KindFeedback, EventID: "nps", CustomerID: id, OccurredAt: start.AddDate(0, 0, 17),
				FeedbackKind: scoring.FeedbackNPS, Score: 10})
		}
		var st scoring.State
		deltas := kpi.Deltas{}
		for _, e := range events {
			next, changes, err := scoring.Apply(st, e, p)
			if err != nil {
				t.Fatal(err)
			}
			kpi.OfEvent(st, next, e, p, deltas)
			kpi.OfChanges(changes, deltas)
			st = next
		}
		deltas.Compact()
		want.AddAll(deltas)
		if _, err := store.Apply(ctx, []string{id}, func(string, state.Current) (state.Update, error) {
			value, err := st.AppendBinary(nil)
			return state.Update{Value: value, KPI: deltas, Deadline: start.AddDate(0, 2, 0)}, err
		}); err != nil {
			t.Fatal(err)
		}
	}
	wm := time.Date(2025, 6, 30, 2, 0, 0, 0, time.UTC) // 2025-06-29 is final
	if err := marks.Report(ctx, []watermark.Position{{Topic: "loyalty.purchases.v1", MaxEventTime: wm}}, wm); err != nil {
		t.Fatal(err)
	}
	if err := exp.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	final := scoring.DayOf(wm) - 1
	r30 := want.Report(final, 30)
	if r30.ActiveCustomers != 5 || r30.Orders != 20 {
		t.Fatalf("the test history is wrong: %d active, %d orders in 30 days", r30.ActiveCustomers, r30.Orders)
	}
	gauge := func(name string, labels ...string) float64 {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
		metrics:
			for _, m := range f.GetMetric() {
				for i, l := range m.GetLabel() {
					if i*2+1 >= len(labels) || l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
						continue metrics
					}
				}
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no series %s%v", name, labels)
		return 0
	}
	if got := gauge("loyalty_kpi_final_day_timestamp_seconds"); got != float64(final.Start().Unix()) {
		t.Errorf("final day %v, want %v", got, final.Start().Unix())
	}
	if got := gauge("loyalty_kpi_orders", "window", "30d"); got != float64(r30.Orders) {
		t.Errorf("orders over 30d %v, want %d", got, r30.Orders)
	}
	if got := gauge("loyalty_kpi_net_revenue_minor", "window", "30d"); got != float64(r30.NetRevenueMinor) {
		t.Errorf("net revenue over 30d %v, want %d", got, r30.NetRevenueMinor)
	}
	if got := gauge("loyalty_kpi_repurchase_rate", "window", "30d"); got != *r30.RepurchaseRate {
		t.Errorf("repurchase rate over 30d %v, want %v", got, *r30.RepurchaseRate)
	}
	if got := gauge("loyalty_kpi_nps", "window", "30d"); got != 100 {
		t.Errorf("NPS over 30d %v, want 100 (one promoter)", got)
	}
	if got := gauge("loyalty_kpi_population"); got != 5 {
		t.Errorf("population %v, want 5", got)
	}
	for tier, n := range r30.Tiers {
		if got := gauge("loyalty_kpi_customers", "dimension", "tier", "value", tier); got != float64(n) {
			t.Errorf("tier %s: %v customers, want %d", tier, got, n)
		}
	}
	// The one NPS answer is 10 days before the final day: the 1- and 7-day NPS have no value
	// and no series.
	for _, f := range must(reg.Gather()) {
		if f.GetName() == "loyalty_kpi_nps" && len(f.GetMetric()) != 3 {
			t.Errorf("loyalty_kpi_nps has %d series, want the 3 windows with an answer (30d, 90d, 365d)", len(f.GetMetric()))
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
