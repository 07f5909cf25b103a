package pipeline_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/population"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// lapsingPopulation is a history of n customers over the 130 days before now: each starts
// buying on some day, many stop after a few weeks (lapsed), the others buy to the end; they
// log in while active and refund some orders.
func lapsingPopulation(n int, now time.Time) []event.Input {
	rng := rand.New(rand.NewPCG(7, 11))
	base := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -130)
	var in []event.Input
	id := 0
	next := func(prefix string) string { id++; return fmt.Sprintf("%s%d", prefix, id) }
	for c := range n {
		cust := fmt.Sprintf("pop-%04d", c)
		start := rng.IntN(100)
		end := 127
		if rng.Float64() < 0.55 {
			end = min(start+5+rng.IntN(35), 127)
		}
		every := 3 + rng.IntN(18)
		for d := start; d <= end; d += every {
			at := base.AddDate(0, 0, d).Add(time.Duration(rng.IntN(20*60)) * time.Minute)
			order := next("o")
			amount := int64(500 + rng.ExpFloat64()*8000)
			in = append(in, event.Purchase{EventID: next("p"), CustomerID: cust, OccurredAt: at, OrderID: order,
				Kind: event.KindPurchase, AmountMinor: amount, Currency: "USD"})
			if rng.Float64() < 0.08 {
				in = append(in, event.Purchase{EventID: next("r"), CustomerID: cust, OccurredAt: at.Add(50 * time.Hour),
					OrderID: next("o"), Kind: event.KindRefund, AmountMinor: amount / 2, Currency: "USD", RefundOfOrderID: order})
			}
			in = append(in, event.Login{EventID: next("l"), CustomerID: cust, OccurredAt: at.Add(time.Duration(1+rng.IntN(40)) * time.Hour),
				Channel: event.ChannelWeb})
		}
	}
	sort.SliceStable(in, func(i, j int) bool { return in[i].Time().Before(in[j].Time()) })
	return in
}

// exactSamples computes, with the scoring core alone and one customer at a time, every
// customer's RFM measures at the end of each boundary day in boundaries: its events applied in
// order, each day closed once its end has passed, then closed to the boundary.
func exactSamples(t *testing.T, in []event.Input, boundaries []scoring.Day, p *scoring.Policy) map[scoring.Day][]scoring.RFMValues {
	t.Helper()
	byCustomer := map[string][]event.Input{}
	var order []string
	for _, e := range in {
		if byCustomer[e.Customer()] == nil {
			order = append(order, e.Customer())
		}
		byCustomer[e.Customer()] = append(byCustomer[e.Customer()], e)
	}
	out := map[scoring.Day][]scoring.RFMValues{}
	for _, c := range order {
		var s scoring.State
		bi := 0
		sample := func(upTo time.Time) {
			for ; bi < len(boundaries) && !scoring.DayCloses(boundaries[bi], p).After(upTo); bi++ {
				s, _ = scoring.Close(s, scoring.DayCloses(boundaries[bi], p), p)
				if v, ok := s.RFMValuesAt(boundaries[bi], p); ok {
					out[boundaries[bi]] = append(out[boundaries[bi]], v)
				}
			}
		}
		for i, e := range byCustomer[c] {
			sample(e.Time())
			s, _ = scoring.Close(s, e.Time(), p)
			rec := ingest.Record{Event: e, Message: stream.Message{Topic: "in", Offset: int64(i)}}
			var err error
			if s, _, err = scoring.Apply(s, pipeline.ScoringEvent(rec), p); err != nil {
				t.Fatal(err)
			}
		}
		sample(time.Unix(1<<40, 0))
	}
	return out
}

// TestCutpointsAtABoundaryAreTheQuantilesOfEveryCustomersMeasuresAsOfIt runs the pipeline on
// 2,400 customers, more than half of them lapsed, against real Kafka and Redis, and compares
// every boundary's sealed cut points with the quantiles computed by brute force.
func TestCutpointsAtABoundaryAreTheQuantilesOfEveryCustomersMeasuresAsOfIt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rt := e.runtime(ctx, e.ns, false)
	now := time.Now()
	in := lapsingPopulation(2400, now)
	e.produce(rt, in)
	svc := e.start(rt, true)
	defer svc.stop()

	p := rt.Policy
	// Every boundary the watermark (now less the lateness, once caught up) closes.
	last := scoring.NextBoundary(scoring.DayOf(now.Add(-p.AllowedLateness))-2, p) - scoring.Day(p.Segments.CutpointsEveryDays)
	deadline := time.Now().Add(4 * time.Minute)
	for {
		s, ok, err := namespace.LoadSealedCutpoints(ctx, rt.Redis, rt.Keys)
		if err != nil {
			t.Fatal(err)
		}
		if ok && s.Boundary >= last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("boundary %s not sealed after 4 minutes (sealed: %+v)", last.Start().Format(time.DateOnly), s)
		}
		time.Sleep(200 * time.Millisecond)
	}
	history, err := namespace.CutpointHistory(ctx, rt.Redis, rt.Keys)
	if err != nil {
		t.Fatal(err)
	}
	var boundaries []scoring.Day
	for _, s := range history {
		boundaries = append(boundaries, s.Boundary)
	}
	exact := exactSamples(t, in, boundaries, p)

	derived := 0
	for _, s := range history {
		want := exact[s.Boundary]
		if s.Population != int64(len(want)) {
			t.Errorf("%s: population %d, brute force %d", s.Date, s.Population, len(want))
		}
		if len(want) < population.MinCustomers {
			if s.Derived {
				t.Errorf("%s: derived from %d customers", s.Date, len(want))
			}
			continue
		}
		derived++
		cp, err := scoring.ComputeCutpoints("exact", want)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Derived || s.Cutpoints == nil || s.Cutpoints.Version != "rfm-"+s.Date {
			t.Fatalf("%s: %d customers but cut points %+v", s.Date, len(want), s.Cutpoints)
		}
		for _, m := range []struct {
			name      string
			got, want [4]float64
		}{{"r", s.Cutpoints.Recency, cp.Recency}, {"f", s.Cutpoints.Frequency, cp.Frequency}, {"m", s.Cutpoints.Monetary, cp.Monetary}} {
			for i := range m.got {
				if !population.SameBucket(m.name, m.got[i], m.want[i]) {
					t.Errorf("%s: %s quantile %d%% is %v, brute force %v: not within one bucket", s.Date, m.name, 20*(i+1), m.got[i], m.want[i])
				}
			}
		}
		t.Logf("%s: %4d customers  recency %v (exact %v)  frequency %v  monetary %.0f (exact %.0f)", s.Date, len(want),
			s.Cutpoints.Recency, cp.Recency, s.Cutpoints.Frequency, s.Cutpoints.Monetary, cp.Monetary)
	}
	if derived < 8 {
		t.Fatalf("only %d boundaries had cut points derived", derived)
	}
	// Lapsed customers count: at the last boundary the slowest fifth has not bought for weeks.
	lastSet := history[len(history)-1].Cutpoints
	if lastSet.Recency[3] < 28 {
		t.Errorf("recency cut points %v at the last boundary ignore the lapsed customers", lastSet.Recency)
	}
}
