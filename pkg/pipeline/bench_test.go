package pipeline_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// sweptCustomer is a customer of a year: a purchase every three weeks until day 300, a login
// every third day until day 330, an NPS score, with its days closed as the watermark went.
// Its evaluation 35 days after its last login closes five weeks of days and derives segment
// and churn changes, like most of a backlog's sweeps.
func sweptCustomer(b *testing.B, p *scoring.Policy) (scoring.State, time.Time) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var s scoring.State
	n := 0
	apply := func(e scoring.Event) {
		n++
		e.EventID, e.CustomerID, e.Currency = fmt.Sprintf("e-%d", n), "c-bench", p.Currency
		var err error
		if s, _, err = scoring.Apply(s, e, p); err != nil {
			b.Fatal(err)
		}
	}
	for d := 0; d <= 330; d++ {
		at := start.AddDate(0, 0, d)
		s, _, _ = scoring.Sweep(s, at.Add(time.Minute), p)
		if d%21 == 0 && d <= 300 {
			apply(scoring.Event{Kind: scoring.KindPurchase, OccurredAt: at.Add(10 * time.Hour), AmountMinor: 4500 + int64(d), OrderID: fmt.Sprintf("o-%d", d)})
		}
		if d%3 == 0 {
			apply(scoring.Event{Kind: scoring.KindLogin, OccurredAt: at.Add(11 * time.Hour), LoginChannel: "web"})
		}
		if d == 200 {
			apply(scoring.Event{Kind: scoring.KindFeedback, OccurredAt: at.Add(12 * time.Hour), FeedbackKind: scoring.FeedbackNPS, Score: 8})
		}
	}
	return s, start.AddDate(0, 0, 365)
}

// BenchmarkEvaluateCompute is the sweeper's computation of one customer as the store runs it:
// decoding the stored state, the sweep, the derived events' encoding, the transition entries
// and the update's encoding. Pair it with `go test ./pkg/state -bench Apply -benchmem`, the
// write of the update.
func BenchmarkEvaluateCompute(b *testing.B) {
	p := scoring.DefaultPolicy()
	reg, err := codec.NewEmbeddedRegistry()
	if err != nil {
		b.Fatal(err)
	}
	enc, err := codec.New(context.Background(), reg)
	if err != nil {
		b.Fatal(err)
	}
	s, at := sweptCustomer(b, p)
	value, err := s.AppendBinary(nil)
	if err != nil {
		b.Fatal(err)
	}
	cur := state.Current{Value: value}
	compute := pipeline.NewScorer(p, enc, false).EvaluateCompute(at)
	u, err := compute(s.CustomerID, cur)
	if err != nil {
		b.Fatal(err)
	}
	if len(u.Outbox) == 0 || len(u.Transitions) == 0 {
		b.Fatalf("the benchmark's sweep derives nothing (%d outbox entries, %d transitions): it would not measure their cost",
			len(u.Outbox), len(u.Transitions))
	}
	b.ReportMetric(float64(len(u.Outbox)), "changes/op")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := compute(s.CustomerID, cur); err != nil {
			b.Fatal(err)
		}
	}
}
