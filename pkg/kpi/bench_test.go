package kpi

import (
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// BenchmarkOfEvent is the cost of a purchase's KPI increments on a customer with a year of
// history, beside the cost of applying it (BenchmarkApply in pkg/scoring).
func BenchmarkOfEvent(b *testing.B) {
	p := scoring.DefaultPolicy()
	h := history(5)
	var before, after scoring.State
	var last scoring.Event
	for _, evs := range h {
		if len(evs) < 60 {
			continue
		}
		st := scoring.State{}
		for _, e := range evs[:len(evs)-1] {
			st, _, _ = scoring.Apply(st, e, p)
		}
		last = evs[len(evs)-1]
		before = st
		break
	}
	last.Kind, last.AmountMinor, last.OrderID = scoring.KindPurchase, 1000, "bench"
	last.Source.Offset++
	after, _, _ = scoring.Apply(before, last, p)
	b.ReportAllocs()
	for b.Loop() {
		OfEvent(before, after, last, p, Deltas{})
	}
}
