package synth_test

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/synth"
)

var end = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func generate(t *testing.T, cfg synth.Config) (*synth.Generator, []event.Input) {
	t.Helper()
	g, err := synth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Input
	for e, ok := g.Next(); ok; e, ok = g.Next() {
		out = append(out, e)
	}
	return g, out
}

// population is a 12-month history of 2,000 customers, generated once for the tests that only
// read it.
var population = func() func(t *testing.T) (*synth.Generator, []event.Input) {
	var g *synth.Generator
	var evs []event.Input
	return func(t *testing.T) (*synth.Generator, []event.Input) {
		if g == nil {
			g, evs = generate(t, synth.Config{Customers: 2000, Months: 12, End: end, Seed: 7})
		}
		return g, evs
	}
}()

func TestTheSameSeedGivesTheSameEventsAndAnotherSeedDifferentOnes(t *testing.T) {
	cfg := synth.Config{Customers: 300, Months: 6, End: end, Seed: 42}
	_, a := generate(t, cfg)
	_, b := generate(t, cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two generators with the same config produced different events")
	}
	cfg.Seed = 43
	_, c := generate(t, cfg)
	if reflect.DeepEqual(a, c) {
		t.Fatal("a different seed produced the same events")
	}
}

func TestACustomersHistoryDoesNotDependOnThePopulationSize(t *testing.T) {
	only := func(evs []event.Input, id string) []event.Input {
		var out []event.Input
		for _, e := range evs {
			if e.Customer() == id {
				out = append(out, e)
			}
		}
		return out
	}
	mix := synth.Mix{synth.Steady: 1}
	_, small := generate(t, synth.Config{Customers: 5, Months: 6, End: end, Seed: 1, Mix: mix})
	_, large := generate(t, synth.Config{Customers: 50, Months: 6, End: end, Seed: 1, Mix: mix})
	id := "cust-000003"
	if a, b := only(small, id), only(large, id); len(a) == 0 || !reflect.DeepEqual(a, b) {
		t.Fatalf("customer %s: %d events among 5 customers, %d among 50, or they differ", id, len(a), len(b))
	}
}

func TestEveryEventIsValidUniqueAndInTimeOrder(t *testing.T) {
	_, evs := population(t)
	v, err := event.NewValidator(event.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	ids := make(map[string]bool, len(evs))
	start := end.AddDate(0, -12, 0)
	var last time.Time
	for i, e := range evs {
		if err := v.Validate(e, end); err != nil {
			t.Fatalf("event %d: %v: %+v", i, err, e)
		}
		if ids[e.ID()] {
			t.Fatalf("event id %s repeats", e.ID())
		}
		ids[e.ID()] = true
		if e.Time().Before(last) {
			t.Fatalf("event %d at %s comes after one at %s", i, e.Time(), last)
		}
		last = e.Time()
		if e.Time().Before(start) || !e.Time().Before(end) {
			t.Fatalf("event %d at %s is outside the history [%s, %s)", i, e.Time(), start, end)
		}
		if e.Time() != e.Time().Truncate(time.Millisecond) {
			t.Fatalf("event %d time %s has sub-millisecond precision, which Avro drops", i, e.Time())
		}
	}
	t.Logf("%d events for 2,000 customers over 12 months", len(evs))
}

func TestTheArchetypeMixIsExact(t *testing.T) {
	g, _ := generate(t, synth.Config{Customers: 1003, Months: 2, End: end, Seed: 9})
	counts := map[synth.Archetype]int{}
	for _, p := range g.Profiles() {
		counts[p.Archetype]++
	}
	total := 0.0
	for _, s := range synth.DefaultMix {
		total += s
	}
	for _, a := range synth.Archetypes() {
		want := 1003 * synth.DefaultMix[a] / total
		if math.Abs(float64(counts[a])-want) >= 1 {
			t.Errorf("%s: %d customers, want %.1f", a, counts[a], want)
		}
	}
}

func TestEachArchetypeBehavesAsAdvertised(t *testing.T) {
	g, evs := population(t)
	kind := map[string]synth.Archetype{}
	for _, p := range g.Profiles() {
		kind[p.ID] = p.Archetype
	}
	type stats struct {
		purchases, refunds, logins, complaints, lowNPS int
		lastPurchase                                   time.Time
		days                                           map[time.Time]int64 // net spend per day
	}
	per := map[string]*stats{}
	orders := map[string]string{} // order -> customer
	for _, e := range evs {
		s := per[e.Customer()]
		if s == nil {
			s = &stats{days: map[time.Time]int64{}}
			per[e.Customer()] = s
		}
		switch v := e.(type) {
		case event.Purchase:
			d := v.OccurredAt.Truncate(24 * time.Hour)
			if v.Kind == event.KindPurchase {
				s.purchases++
				s.lastPurchase = v.OccurredAt
				s.days[d] += v.AmountMinor
				orders[v.OrderID] = v.CustomerID
			} else {
				s.refunds++
				s.days[d] -= v.AmountMinor
				if orders[v.RefundOfOrderID] != v.CustomerID {
					t.Errorf("refund %s is of order %q, not an earlier order of %s", v.EventID, v.RefundOfOrderID, v.CustomerID)
				}
			}
		case event.Login:
			s.logins++
		case event.Feedback:
			switch {
			case v.Kind == event.FeedbackComplaintOpened:
				s.complaints++
			case v.Kind == event.FeedbackNPS && *v.Score <= 6:
				s.lowNPS++
			}
		}
	}
	// bestYear is the largest net spend over any 365 days: what decides the tier.
	bestYear := func(s *stats) int64 {
		var best int64
		for d := range s.days {
			var sum int64
			for d2, v := range s.days {
				if !d2.Before(d) && d2.Before(d.AddDate(0, 0, 365)) {
					sum += v
				}
			}
			best = max(best, sum)
		}
		return best
	}
	share := func(a synth.Archetype, pred func(s *stats) bool) float64 {
		n, yes := 0, 0
		for id, k := range kind {
			if k != a || per[id] == nil {
				continue
			}
			n++
			if pred(per[id]) {
				yes++
			}
		}
		return float64(yes) / float64(n)
	}
	for _, c := range []struct {
		name string
		a    synth.Archetype
		pred func(*stats) bool
		min  float64
	}{
		{"most steady buyers reach SILVER (500.00 in a year)", synth.Steady, func(s *stats) bool { return bestYear(s) >= 500_00 }, 0.6},
		{"steady buyers keep buying until the last two months", synth.Steady, func(s *stats) bool { return s.lastPurchase.After(end.AddDate(0, -2, 0)) }, 0.9},
		{"every lapser has been silent for the last 75 days", synth.Lapser, func(s *stats) bool { return s.lastPurchase.Before(end.AddDate(0, 0, -75)) }, 1},
		{"lapsers bought regularly before they stopped", synth.Lapser, func(s *stats) bool { return s.purchases >= 4 }, 0.9},
		{"most big spenders reach GOLD (2,000.00)", synth.BigSpender, func(s *stats) bool { return bestYear(s) >= 2000_00 }, 0.8},
		{"many big spenders reach PLATINUM (5,000.00)", synth.BigSpender, func(s *stats) bool { return bestYear(s) >= 5000_00 }, 0.3},
		{"every detractor gives a detractor NPS", synth.Detractor, func(s *stats) bool { return s.lowNPS > 0 }, 1},
		{"every detractor opens a complaint", synth.Detractor, func(s *stats) bool { return s.complaints > 0 }, 1},
		{"detractors ask for refunds more than steady buyers do", synth.Detractor, func(s *stats) bool { return s.refunds > 0 }, share(synth.Steady, func(s *stats) bool { return s.refunds > 0 }) + 0.1},
		{"occasional buyers buy at most a handful of times", synth.Occasional, func(s *stats) bool { return s.purchases <= 10 }, 0.95},
		{"a dormant minority logs in once and never again", synth.Steady, func(s *stats) bool { return s.logins <= 1 }, 0.2},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := share(c.a, c.pred); got < c.min {
				t.Errorf("%.2f of %s customers, want at least %.2f", got, c.a, c.min)
			}
		})
	}
	if got := share(synth.Steady, func(s *stats) bool { return s.logins <= 1 }); got > 0.45 {
		t.Errorf("%.2f of steady buyers are dormant, want about 0.30", got)
	}
}

func TestCSATAnswersFollowTheReviewRatingDistribution(t *testing.T) {
	_, evs := generate(t, synth.Config{Customers: 3000, Months: 12, End: end, Seed: 3, Mix: synth.Mix{synth.Steady: 1, synth.BigSpender: 1}})
	counts := [6]int{}
	n := 0
	for _, e := range evs {
		if f, ok := e.(event.Feedback); ok && f.Kind == event.FeedbackCSAT {
			counts[*f.Score]++
			n++
		}
	}
	want := map[int]float64{5: 0.726, 4: 0.144, 3: 0.048, 2: 0.030, 1: 0.051}
	for score, p := range want {
		got := float64(counts[score]) / float64(n)
		if se := math.Sqrt(p * (1 - p) / float64(n)); math.Abs(got-p) > 4*se {
			t.Errorf("CSAT %d: %.3f of %d answers, want %.3f", score, got, n, p)
		}
	}
}

func TestLoginsComeInRunsOfConsecutiveDays(t *testing.T) {
	_, evs := population(t)
	last := map[string]time.Time{}
	gaps, oneDay := 0, 0
	for _, e := range evs {
		l, ok := e.(event.Login)
		if !ok {
			continue
		}
		d := l.OccurredAt.Truncate(24 * time.Hour)
		if prev, ok := last[l.CustomerID]; ok && d.After(prev) {
			gaps++
			if d.Sub(prev) == 24*time.Hour {
				oneDay++
			}
		}
		last[l.CustomerID] = d
	}
	if got := float64(oneDay) / float64(gaps); got < 0.4 || got > 0.75 {
		t.Errorf("%.2f of the gaps between login days are one day, want about 0.59", got)
	}
}

func TestInvalidConfigsAreRejectedByFieldName(t *testing.T) {
	for _, c := range []struct {
		cfg  synth.Config
		want string
	}{
		{synth.Config{Customers: 0, Months: 1, End: end}, "Customers"},
		{synth.Config{Customers: 1, Months: 0, End: end}, "Months"},
		{synth.Config{Customers: 1, Months: 1}, "End"},
		{synth.Config{Customers: 1, Months: 12, End: time.Date(2000, 6, 1, 0, 0, 0, 0, time.UTC)}, "End"},
		{synth.Config{Customers: 1, Months: 1, End: end, Mix: synth.Mix{synth.Steady: -1}}, "Mix"},
	} {
		if _, err := synth.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
}

func ExampleGenerator() {
	g, err := synth.New(synth.Config{Customers: 3, Months: 1, End: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Seed: 1})
	if err != nil {
		panic(err)
	}
	e, _ := g.Next()
	fmt.Printf("%s %s %s\n", e.Schema(), e.Customer(), e.Time().Format(time.DateOnly))
	for _, p := range g.Profiles() {
		fmt.Println(p.ID, p.Archetype)
	}
	// Output:
	// Purchase cust-000001 2025-05-01
	// cust-000001 lapser
	// cust-000002 steady
	// cust-000003 occasional
}
