package e2e

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

// HistoryConfig describes a generated input history.
type HistoryConfig struct {
	// Customers is the number of customers.
	Customers int
	// Days is the length of the history, ending at End.
	Days int
	// End bounds the history: every event occurs before it (use about now: validators reject
	// events from the future).
	End time.Time
	// Seed makes the history reproducible: the same config gives the same events and ids.
	Seed uint64
	// Prefix starts every customer, order and event id, so histories of different runs never
	// share a customer on a shared Redis.
	Prefix string
	// Span, when set, squeezes the history linearly into the last Span before End: the same
	// events in the same order, as if a year of behaviour happened within the hour. With Span
	// under the policy's allowed lateness, every arrival order across the three input topics
	// scores the same (docs/scoring.md, "Out-of-order and late events"), which is what a test
	// comparing a crashed run with a clean one needs; see the package doc.
	Span time.Duration
}

// EventsPerCustomer is about how many events one customer of History produces per 30 days,
// averaged over the mix; use it to size Customers for a target event count.
const EventsPerCustomer = 6.1

// CustomersFor returns the customer count that gives about n events over days.
func CustomersFor(n, days int) int {
	return max(1, int(math.Round(float64(n)/(EventsPerCustomer*float64(days)/30))))
}

// History generates a realistic mix of purchases, refunds, logins and feedback, in event-time
// order (ties by customer, then event id), the order a live system would have seen it. The
// population: 40% steady buyers, 20% lapsers who stop buying part-way, 10% big spenders who
// climb the tiers, 10% detractors (bad survey answers, complaints, more refunds, slower
// buying afterwards) and 20% occasional buyers who often join late.
func History(cfg HistoryConfig) []event.Input {
	start := cfg.End.Add(-time.Duration(cfg.Days) * 24 * time.Hour)
	var out []event.Input
	for i := range cfg.Customers {
		out = append(out, customerHistory(cfg, i, start)...)
	}
	if cfg.Span > 0 {
		for i, in := range out {
			out[i] = squeeze(in, start, cfg.End, cfg.Span)
		}
	}
	slices.SortStableFunc(out, func(a, b event.Input) int {
		return cmp.Or(a.Time().Compare(b.Time()), cmp.Compare(a.Customer(), b.Customer()))
	})
	return out
}

// squeeze maps the event's time from [start, end) linearly onto [end-span, end).
func squeeze(in event.Input, start, end time.Time, span time.Duration) event.Input {
	f := float64(in.Time().Sub(start)) / float64(end.Sub(start))
	return WithTime(in, end.Add(-span).Add(time.Duration(f*float64(span))).Truncate(time.Millisecond))
}

// WithTime returns an input event happening at t.
func WithTime(in event.Input, t time.Time) event.Input {
	switch v := in.(type) {
	case event.Purchase:
		v.OccurredAt = t
		return v
	case event.Login:
		v.OccurredAt = t
		return v
	case event.Feedback:
		v.OccurredAt = t
		return v
	}
	return in
}

type archetype int

const (
	steady archetype = iota
	lapser
	bigSpender
	detractor
	occasional
)

func pick(r *rand.Rand) archetype {
	switch x := r.Float64(); {
	case x < 0.40:
		return steady
	case x < 0.60:
		return lapser
	case x < 0.70:
		return bigSpender
	case x < 0.80:
		return detractor
	default:
		return occasional
	}
}

func customerHistory(cfg HistoryConfig, i int, start time.Time) []event.Input {
	r := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
	id := fmt.Sprintf("%sc%06d", cfg.Prefix, i)
	end := cfg.End
	kind := pick(r)
	var out []event.Input
	n := 0
	next := func(letter string) string { n++; return fmt.Sprintf("%s-%s%d", id, letter, n) }
	// at is a time of day with shopping-hours weight.
	at := func(day time.Time) time.Time {
		return day.Truncate(24 * time.Hour).Add(time.Duration(8+r.IntN(14))*time.Hour + time.Duration(r.IntN(3600))*time.Second)
	}
	expGap := func(meanDays float64) time.Duration {
		return time.Duration(r.ExpFloat64() * meanDays * float64(24*time.Hour))
	}

	// Buying process: mean gap, basket size (lognormal, minor units) and when it stops.
	joined := start.Add(expGap(10))
	gap, basket, stop := 21.0, 6000.0, end
	refundRate := 0.05
	switch kind {
	case steady:
		gap = 14 + r.Float64()*14
	case lapser:
		gap = 10 + r.Float64()*10
		stop = joined.Add(time.Duration((0.3 + 0.4*r.Float64()) * float64(end.Sub(joined))))
	case bigSpender:
		gap, basket = 20+r.Float64()*20, 30000+r.Float64()*60000
	case detractor:
		gap, refundRate = 15+r.Float64()*10, 0.15
	case occasional:
		gap, basket = 60+r.Float64()*60, 4000
		joined = start.Add(time.Duration(r.Float64() * float64(end.Sub(start))))
	}
	// A detractor's bad experience, part-way through.
	incident := joined.Add(time.Duration((0.4 + 0.4*r.Float64()) * float64(end.Sub(joined))))

	for t := joined; t.Before(stop) && t.Before(end); {
		when := at(t)
		if when.After(end) || when.Before(start) {
			break
		}
		order := next("o")
		amount := int64(basket * math.Exp(r.NormFloat64()*0.5))
		out = append(out, event.Purchase{EventID: next("p"), CustomerID: id, OccurredAt: when, OrderID: order,
			Kind: event.KindPurchase, AmountMinor: max(amount, 100), Currency: "USD"})
		if r.Float64() < refundRate {
			rt := when.Add(time.Duration(1+r.IntN(20)) * 24 * time.Hour)
			if rt.Before(end) {
				part := amount
				if r.IntN(3) == 0 {
					part = amount / 2
				}
				out = append(out, event.Purchase{EventID: next("r"), CustomerID: id, OccurredAt: rt, OrderID: next("o"),
					Kind: event.KindRefund, AmountMinor: max(part, 1), Currency: "USD", RefundOfOrderID: order})
			}
		}
		g := gap
		if kind == detractor && t.After(incident) {
			g *= 2
		}
		t = t.Add(time.Duration(float64(24*time.Hour) * g * (0.5 + r.Float64())))
	}

	// Logins: a few a week while engaged, fading out after a lapser stops buying.
	loginStop := end
	if kind == lapser {
		loginStop = stop.Add(time.Duration(r.IntN(20)) * 24 * time.Hour)
	}
	perWeek := 0.5 + r.Float64()*2
	if kind == occasional {
		perWeek = 0.3
	}
	channels := []event.LoginChannel{event.ChannelApp, event.ChannelWeb, event.ChannelStore}
	for t := joined.Add(expGap(2)); t.Before(loginStop) && t.Before(end); t = t.Add(expGap(7 / perWeek)) {
		out = append(out, event.Login{EventID: next("l"), CustomerID: id, OccurredAt: at(t), Channel: channels[r.IntN(3)]})
	}

	// Feedback: an NPS answer now and then; detractors answer badly after the incident and
	// open complaints, most of which get closed.
	score := func(lo, hi int) *int32 { s := int32(lo + r.IntN(hi-lo+1)); return &s }
	for t := joined.Add(expGap(90)); t.Before(end); t = t.Add(expGap(120)) {
		if kind == detractor && t.After(incident) {
			break
		}
		out = append(out, event.Feedback{EventID: next("f"), CustomerID: id, OccurredAt: at(t), Kind: event.FeedbackNPS, Score: score(6, 10)})
	}
	if kind == detractor && incident.Before(end) {
		out = append(out,
			event.Feedback{EventID: next("f"), CustomerID: id, OccurredAt: at(incident), Kind: event.FeedbackNPS, Score: score(0, 4)},
			event.Feedback{EventID: next("f"), CustomerID: id, OccurredAt: at(incident).Add(time.Minute), Kind: event.FeedbackCSAT, Score: score(1, 2)})
		caseID := next("case")
		opened := at(incident).Add(2 * time.Minute)
		out = append(out, event.Feedback{EventID: next("f"), CustomerID: id, OccurredAt: opened, Kind: event.FeedbackComplaintOpened, CaseID: caseID})
		if closed := opened.Add(time.Duration(3+r.IntN(25)) * 24 * time.Hour); r.IntN(4) > 0 && closed.Before(end) {
			out = append(out, event.Feedback{EventID: next("f"), CustomerID: id, OccurredAt: closed, Kind: event.FeedbackComplaintClosed, CaseID: caseID})
		}
	}
	return out
}
