package loyaltyctl

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// TestKPIPrintsTheLastFinalDaysKPIsFromTheShardsCounters: marketing reads `loyaltyctl kpi`;
// it sums the counters of every shard and reports the last day the watermark has closed.
func TestKPIPrintsTheLastFinalDaysKPIsFromTheShardsCounters(t *testing.T) {
	keys, rdb := commandRedis(t)
	ctx := context.Background()
	p := scoring.DefaultPolicy()
	start := time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC)
	// Three customers buying every few days for six weeks; their counters are spread over
	// the shards the store would put them in.
	want := kpi.NewCounters()
	for c := range 3 {
		id := fmt.Sprintf("c-%d", c)
		var st scoring.State
		deltas := kpi.Deltas{}
		for i := range 10 + c {
			e := scoring.Event{Kind: scoring.KindPurchase, EventID: fmt.Sprintf("%s-p%d", id, i), CustomerID: id,
				OccurredAt: start.AddDate(0, 0, (3+c)*i), AmountMinor: int64(1000 * (c + 1)), Currency: "USD", OrderID: fmt.Sprintf("%s-o%d", id, i)}
			next, changes, err := scoring.Apply(st, e, p)
			if err != nil {
				t.Fatal(err)
			}
			kpi.OfEvent(st, next, e, p, deltas)
			kpi.OfChanges(changes, deltas)
			st = next
		}
		// The days closed to the watermark below, with their model-quality observations.
		_, changes, _, samples := scoring.SweepSampled(st, time.Date(2025, 4, 10, 5, 0, 0, 0, time.UTC), p)
		kpi.OfChanges(changes, deltas)
		kpi.OfSamples(samples, deltas)
		for f, n := range deltas.Compact() {
			if err := rdb.HIncrBy(ctx, keys.KPI(keys.Shard(id)), f, n).Err(); err != nil {
				t.Fatal(err)
			}
		}
		want.AddAll(deltas)
	}
	marks, err := watermark.NewTracker(ctx, rdb, keys.Watermarks(), p.AllowedLateness)
	if err != nil {
		t.Fatal(err)
	}
	wm := time.Date(2025, 4, 10, 5, 0, 0, 0, time.UTC) // closes 2025-04-09
	if err := marks.Report(ctx, []watermark.Position{{Topic: "loyalty.purchases.v1", Partition: 0, MaxEventTime: wm}}, wm); err != nil {
		t.Fatal(err)
	}

	code, out, errs := run(t, "kpi", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var view KPIView
	if err := json.Unmarshal([]byte(out), &view); err != nil {
		t.Fatalf("not the JSON view: %v\n%s", err, out)
	}
	last := scoring.DayOf(time.Date(2025, 4, 9, 0, 0, 0, 0, time.UTC))
	if view.Day != "2025-04-09" || view.CompleteThrough != "2025-04-09" || !view.Final || len(view.Reports) != len(kpi.Windows) {
		t.Fatalf("day %s, final through %s (final %v), %d reports; want 2025-04-09, final, %d windows", view.Day, view.CompleteThrough, view.Final,
			len(view.Reports), len(kpi.Windows))
	}
	for i, w := range kpi.Windows {
		got, exp := view.Reports[i], want.Report(last, w)
		gj, _ := json.Marshal(got)
		ej, _ := json.Marshal(exp)
		if string(gj) != string(ej) {
			t.Errorf("window %d: printed %s, the counters say %s", w, gj, ej)
		}
	}
	if r := view.Reports[3]; r.ActiveCustomers != 3 || r.Orders == 0 || r.Customers != 3 { // 90 days
		t.Errorf("90 days: %d active, %d orders, %d customers; want 3 active of 3", r.ActiveCustomers, r.Orders, r.Customers)
	}

	code, text, errs := run(t, "kpi", "--day", "2025-03-31")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	r30 := want.Report(scoring.DayOf(time.Date(2025, 3, 31, 0, 0, 0, 0, time.UTC)), 30)
	for _, s := range []string{"KPIs of 2025-03-31 (final)", "active customers", fmt.Sprintf("%.2f", float64(r30.NetRevenueMinor)/100), "tiers:"} {
		if !strings.Contains(text, s) {
			t.Errorf("the text report lacks %q:\n%s", s, text)
		}
	}
	code, out, errs = run(t, "kpi", "--quality", "--output", "json")
	view = KPIView{}
	if err := json.Unmarshal([]byte(out), &view); code != 0 || err != nil {
		t.Fatalf("--quality: exit %d, %v: %s%s", code, err, out, errs)
	}
	quality := want.QualityDays()
	if len(quality) != 1 || len(view.Quality) != 1 {
		t.Fatalf("--quality: %d observation days printed, the counters have %v", len(view.Quality), quality)
	}
	gq, _ := json.Marshal(view.Quality[0])
	eq, _ := json.Marshal(want.Quality(quality[0], last, p))
	if string(gq) != string(eq) || view.Quality[0].Levels[0].Customers != 3 {
		t.Errorf("--quality printed %s, the counters say %s (three customers observed LOW)", gq, eq)
	}
	if view.Uplift == nil || len(view.Uplift.Total) != 4 || view.Uplift.Total[0].Uplift != nil {
		t.Errorf("--quality uplift %+v: want CARE and WIN_BACK over 30 and 90 days, nothing exposed yet", view.Uplift)
	}
	if _, text, _ := run(t, "kpi", "--quality"); !strings.Contains(text, "churn model quality") || !strings.Contains(text, view.Quality[0].Day) ||
		!strings.Contains(text, "uplift: bought within") {
		t.Errorf("the text report lacks the model quality of %s:\n%s", view.Quality[0].Day, text)
	}

	code, series, _ := run(t, "kpi", "--days", "5", "--window", "7")
	rows := 0
	for _, line := range strings.Split(series, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "2025-04-0") {
			rows++
		}
	}
	if code != 0 || rows != 5 {
		t.Errorf("--days 5: exit %d, want five days of 2025-04-05..09:\n%s", code, series)
	}
}
