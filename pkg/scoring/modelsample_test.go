package scoring

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// modelSampleOf is an independent computation of a customer's model summary at the end of day
// b from its raw purchases and refunds, with txnsummary's conventions: one purchase per day,
// refunds before the first purchase ignored, refunds on their own day.
func modelSampleOf(evs []Event, b Day) (ModelSample, bool) {
	type agg struct {
		net      int64
		purchase bool
	}
	days := map[Day]*agg{}
	for _, e := range evs {
		d := DayOf(e.OccurredAt)
		if d > b {
			continue
		}
		a := days[d]
		if a == nil {
			a = &agg{}
			days[d] = a
		}
		if e.Kind == KindRefund {
			a.net -= e.AmountMinor
		} else {
			a.net += e.AmountMinor
			a.purchase = true
		}
	}
	first, last := Day(-1), Day(-1)
	for d, a := range days {
		if a.purchase && (first < 0 || d < first) {
			first = d
		}
		if a.purchase && d > last {
			last = d
		}
	}
	if first < 0 {
		return ModelSample{}, false
	}
	m := ModelSample{TDays: int32(b - first)}
	for d, a := range days {
		if d > first {
			m.RepeatNetMinor += a.net
			if a.purchase {
				m.X++
			}
		}
	}
	if m.X > 0 {
		m.TXDays = int32(last - first)
	}
	return m, true
}

// TestModelSamplesAreTheCustomersSummaryWhenEverTheDaysClose: a customer's model summary at a
// refit boundary is the independent computation from its events, whether its days close as
// the events arrive (live, with the watermark just behind) or all at the end (a backlog), over
// two years of purchases and refunds (so the window ages entries out, and a frequent buyer's
// outgrows its entries).
func TestModelSamplesAreTheCustomersSummaryWhenEverTheDaysClose(t *testing.T) {
	p := DefaultPolicy()
	rng := rand.New(rand.NewPCG(7, 11))
	for trial := range 60 {
		var g evGen
		var evs []Event
		start := rng.IntN(40)
		if trial%3 == 0 { // a refund before the first purchase
			evs = append(evs, g.refund(day(start).Add(-48*time.Hour), 700, ""))
		}
		gap := 60
		if trial%4 == 1 { // a wholesaler: more purchase days than the window keeps entries
			gap = 4
		}
		for d := start; d < 760; d += 1 + rng.IntN(gap) {
			at := day(d).Add(time.Duration(rng.IntN(20)) * time.Hour)
			order := fmt.Sprintf("o%d", d)
			if rng.IntN(5) == 0 && len(evs) > 0 && evs[len(evs)-1].Kind == KindPurchase {
				// a refund: of a recent order (linked, within the returns window) or unlinked
				ref := ""
				if rng.IntN(2) == 0 {
					ref = evs[len(evs)-1].OrderID
				}
				evs = append(evs, g.refund(at, int64(100+rng.IntN(3000)), ref))
				continue
			}
			evs = append(evs, g.purchase(at, int64(500+rng.IntN(20000)), order))
		}
		end := day(800)
		// Live: the customer's days close as the watermark passes them; lagging: the
		// watermark trails the events by up to GateLead (a backlog) and closes in jumps.
		run := func(lag time.Duration, every int) []Sample {
			var s State
			var samples []Sample
			for i, e := range evs {
				if i%every == 0 {
					var sm []Sample
					s, _, _, sm = SweepSampled(s, e.OccurredAt.Add(-lag), p)
					samples = append(samples, sm...)
				}
				var err error
				if s, _, err = Apply(s, e, p); err != nil {
					t.Fatalf("trial %d: %v", trial, err)
				}
			}
			_, _, _, sm := SweepSampled(s, end, p)
			return append(samples, sm...)
		}
		liveSamples := run(2*time.Hour, 1)
		backlogSamples := run(GateLead(p), 3)
		for name, samples := range map[string][]Sample{"live": liveSamples, "backlog": backlogSamples} {
			refits := 0
			for _, s := range samples {
				want, ok := modelSampleOf(evs, s.Boundary)
				switch {
				case !p.Churn.Refit.At(s.Boundary):
					if s.Model != nil {
						t.Fatalf("trial %d %s: a model sample at %d, not a refit boundary", trial, name, s.Boundary)
					}
				case !ok || s.Model == nil || *s.Model != want:
					t.Fatalf("trial %d %s: boundary %d: model sample %+v, the events say %+v (%v)", trial, name, s.Boundary, s.Model, want, ok)
				default:
					refits++
				}
			}
			if refits < 20 {
				t.Fatalf("trial %d %s: %d refit samples over two years", trial, name, refits)
			}
		}
	}
}
