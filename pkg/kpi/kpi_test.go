package kpi

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

var start = scoring.DayOf(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))

const (
	simCustomers = 160
	simDays      = 500
)

// history is a generated population: each customer's events, ascending by time within each
// topic (a topic holds a customer's records in order).
func history(seed uint64) map[string][]scoring.Event {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := map[string][]scoring.Event{}
	n := 0
	topics := map[scoring.Kind]string{scoring.KindPurchase: "p", scoring.KindRefund: "p", scoring.KindLogin: "l", scoring.KindFeedback: "f"}
	for c := range simCustomers {
		id := fmt.Sprintf("c%03d", c)
		first := rng.IntN(simDays / 2)
		rate := 0.005 + rng.Float64()*0.08  // purchase days per day
		quitAt := first + rng.IntN(simDays) // some customers stop buying
		var evs []scoring.Event
		var orders []string
		add := func(kind scoring.Kind, day int, mut func(*scoring.Event)) {
			n++
			at := (start + scoring.Day(day)).Start().Add(time.Duration(rng.IntN(86400)) * time.Second)
			e := scoring.Event{Kind: kind, EventID: fmt.Sprintf("e%d", n), CustomerID: id, OccurredAt: at, Currency: "USD",
				Source: scoring.Source{Topic: topics[kind], Offset: int64(n)}}
			mut(&e)
			evs = append(evs, e)
		}
		for d := first; d < simDays; d++ {
			if d < quitAt && (d == first || rng.Float64() < rate) {
				for range 1 + rng.IntN(2) { // sometimes two orders on one day
					order := fmt.Sprintf("o%d", n)
					orders = append(orders, order)
					add(scoring.KindPurchase, d, func(e *scoring.Event) { e.AmountMinor, e.OrderID = int64(500+rng.IntN(90000)), order })
				}
			}
			if len(orders) > 0 && rng.Float64() < 0.004 {
				order := orders[rng.IntN(len(orders))]
				add(scoring.KindRefund, d, func(e *scoring.Event) { e.AmountMinor, e.RefundOfOrderID = int64(100+rng.IntN(5000)), order })
			}
			if rng.Float64() < rate*3 {
				add(scoring.KindLogin, d, func(*scoring.Event) {})
			}
			if rng.Float64() < 0.01 {
				kinds := []scoring.FeedbackKind{scoring.FeedbackNPS, scoring.FeedbackCSAT, scoring.FeedbackComplaintOpened, scoring.FeedbackComplaintClosed}
				k := kinds[rng.IntN(len(kinds))]
				add(scoring.KindFeedback, d, func(e *scoring.Event) {
					e.FeedbackKind = k
					switch k {
					case scoring.FeedbackNPS:
						e.Score = rng.IntN(11)
					case scoring.FeedbackCSAT:
						e.Score = 1 + rng.IntN(5)
					case scoring.FeedbackComplaintOpened, scoring.FeedbackComplaintClosed:
						e.CaseID = fmt.Sprintf("case-%d", n)
					}
				})
			}
		}
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].OccurredAt.Before(evs[j].OccurredAt) })
		for i := range evs { // offsets in each topic's order
			n++
			evs[i].Source.Offset = int64(n)
		}
		out[id] = evs
	}
	return out
}

// mix is a customer's categories as of a day.
type mix struct{ tier, churn, segment, layer string }

// run feeds the history to the scoring core the way the pipeline does: every `every` days it
// applies the records of those days, each customer's topics interleaved at random (per topic
// in order), then sweeps every customer whose deadline the watermark reached. It returns the
// summed increments and, when every == 1, each customer's mix at the end of each day.
func run(t *testing.T, h map[string][]scoring.Event, p *scoring.Policy, every int, seed uint64) (Deltas, map[scoring.Day]map[string]mix) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	states := map[string]scoring.State{}
	due := map[string]time.Time{}
	next := map[string]int{} // per customer, index of the next event to apply
	total := Deltas{}
	mixes := map[scoring.Day]map[string]mix{}
	ids := make([]string, 0, len(h))
	for id := range h {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for d := 0; d < simDays+13; d += every { // 513 days: whole batches of 1 and of 9
		last := start + scoring.Day(d+every-1)
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		for _, id := range ids {
			// The customer's pending events up to last, split by topic and interleaved.
			var byTopic [3][]scoring.Event
			i := next[id]
			for ; i < len(h[id]) && scoring.DayOf(h[id][i].OccurredAt) <= last; i++ {
				e := h[id][i]
				k := map[string]int{"p": 0, "l": 1, "f": 2}[e.Source.Topic]
				byTopic[k] = append(byTopic[k], e)
			}
			next[id] = i
			for len(byTopic[0])+len(byTopic[1])+len(byTopic[2]) > 0 {
				k := rng.IntN(3)
				if len(byTopic[k]) == 0 {
					continue
				}
				e := byTopic[k][0]
				byTopic[k] = byTopic[k][1:]
				before := states[id]
				after, changes, err := scoring.Apply(before, e, p)
				if err != nil {
					t.Fatalf("apply %+v: %v", e, err)
				}
				OfEvent(before, after, e, p, total)
				OfChanges(changes, total)
				states[id] = after
				due[id] = scoring.NextDeadline(after, p)
			}
		}
		wm := scoring.DayCloses(last, p)
		for _, id := range ids {
			if st, ok := states[id]; ok && !due[id].After(wm) {
				after, changes, nextDue := scoring.Sweep(st, wm, p)
				OfChanges(changes, total)
				states[id], due[id] = after, nextDue
			}
		}
		if every == 1 {
			m := map[string]mix{}
			for id, st := range states {
				m[id] = mix{p.TierName(int(st.Tier)), st.Churn.String(), orNone(st.Segment.String()), orNone(st.ValueLayer.String())}
			}
			mixes[last] = m
		}
	}
	return total.Compact(), mixes
}

// TestCountersDoNotDependOnReadOrderOrBatching is live equals replay for the KPIs: the same
// history read day by day with the topics interleaved one way, and in 9-day batches
// interleaved another way (a lagging consumer, a replay), sums to the same counters.
func TestCountersDoNotDependOnReadOrderOrBatching(t *testing.T) {
	p := scoring.DefaultPolicy()
	h := history(1)
	daily, _ := run(t, h, p, 1, 1)
	batched, _ := run(t, h, p, 9, 2)
	if len(daily) < 1000 {
		t.Fatalf("only %d counters: the history is too thin to test anything", len(daily))
	}
	if !maps.Equal(daily, batched) {
		n := 0
		for f, v := range daily {
			if batched[f] != v && n < 10 {
				t.Errorf("%s: %d day by day, %d in batches", f, v, batched[f])
				n++
			}
		}
		for f, v := range batched {
			if _, ok := daily[f]; !ok && n < 10 {
				t.Errorf("%s: only in batches (%d)", f, v)
				n++
			}
		}
		t.Fatal("the counters depend on how the history was read")
	}
}

// oracle computes, straight from the events, the KPIs the counters must give.
type oracle struct {
	days map[string][]scoring.Day // distinct purchase days per customer
	seen map[string]scoring.Day
	h    map[string][]scoring.Event
	p    *scoring.Policy
}

func newOracle(h map[string][]scoring.Event, p *scoring.Policy) oracle {
	o := oracle{days: map[string][]scoring.Day{}, seen: map[string]scoring.Day{}, h: h, p: p}
	for id, evs := range h {
		set := map[scoring.Day]bool{}
		o.seen[id] = math.MaxInt32
		for _, e := range evs {
			d := scoring.DayOf(e.OccurredAt)
			o.seen[id] = min(o.seen[id], d)
			if e.Kind == scoring.KindPurchase {
				set[d] = true
			}
		}
		for d := range set {
			o.days[id] = append(o.days[id], d)
		}
		sort.Slice(o.days[id], func(i, j int) bool { return o.days[id][i] < o.days[id][j] })
	}
	return o
}

func countIn(days []scoring.Day, from, to scoring.Day) int {
	n := 0
	for _, d := range days {
		if d >= from && d <= to {
			n++
		}
	}
	return n
}

func (o oracle) report(d scoring.Day, w int) Report {
	wd := scoring.Day(w)
	var r Report
	var npsSum, csatSum int64
	for id, evs := range o.h {
		days := o.days[id]
		in, prior := countIn(days, d-wd+1, d), countIn(days, d-2*wd+1, d-wd)
		if in > 0 {
			r.ActiveCustomers++
		}
		if in > 1 {
			r.RepeatCustomers++
		}
		if in > 0 && prior > 0 {
			r.Retained++
		}
		if prior > 0 {
			r.PriorActive++
		}
		if s := o.seen[id]; s > d-wd && s <= d {
			r.NewCustomers++
		}
		// Lapses: after each purchase day, at the customer's horizon, when no purchase came.
		for i, a := range days {
			repeats := i
			usual := o.p.Churn.FallbackGapDays
			if repeats >= o.p.Churn.MinRepeatPurchases {
				usual = math.Max(float64(a-days[0])/float64(repeats), 1)
			}
			at := a + scoring.Day(math.Ceil(o.p.Churn.GapRatioFullRisk*usual-1e-9))
			if (i+1 == len(days) || at < days[i+1]) && at > d-wd && at <= d {
				r.Lapsed++
			}
		}
		for _, e := range evs {
			if ed := scoring.DayOf(e.OccurredAt); ed <= d-wd || ed > d {
				continue
			}
			switch e.Kind {
			case scoring.KindPurchase:
				r.Orders++
				r.GrossMinor += e.AmountMinor
			case scoring.KindRefund:
				r.Refunds++
				r.RefundMinor += e.AmountMinor
			case scoring.KindLogin:
				r.Logins++
			case scoring.KindFeedback:
				switch e.FeedbackKind {
				case scoring.FeedbackNPS:
					npsSum++
					if e.Score >= 9 {
						r.Promoters++
					} else if e.Score <= 6 {
						r.Detractors++
					}
				case scoring.FeedbackCSAT:
					r.CSATAnswers++
					csatSum += int64(e.Score)
				case scoring.FeedbackComplaintOpened:
					r.ComplaintsOpened++
				}
			}
		}
	}
	r.Passives = npsSum - r.Promoters - r.Detractors
	r.NetRevenueMinor = r.GrossMinor - r.RefundMinor
	return r
}

// TestReportsEqualADirectComputation checks every day's and window's KPIs from the counters
// against a computation straight from the events, and the mix as of each day against the
// customers' own states at the end of that day.
func TestReportsEqualADirectComputation(t *testing.T) {
	p := scoring.DefaultPolicy()
	h := history(3)
	total, mixes := run(t, h, p, 1, 3)
	c := NewCounters()
	c.AddAll(total)
	o := newOracle(h, p)
	checked := map[string]int{}
	for d := start + 20; d < start+simDays; d += 13 {
		for _, w := range Windows {
			got, want := c.Report(d, w), o.report(d, w)
			type pair struct {
				name      string
				got, want int64
			}
			for _, x := range []pair{
				{"active", got.ActiveCustomers, want.ActiveCustomers},
				{"repeat", got.RepeatCustomers, want.RepeatCustomers},
				{"retained", got.Retained, want.Retained},
				{"prior active", got.PriorActive, want.PriorActive},
				{"new", got.NewCustomers, want.NewCustomers},
				{"lapsed", got.Lapsed, want.Lapsed},
				{"orders", got.Orders, want.Orders},
				{"gross", got.GrossMinor, want.GrossMinor},
				{"refunds", got.Refunds, want.Refunds},
				{"refunded", got.RefundMinor, want.RefundMinor},
				{"net", got.NetRevenueMinor, want.NetRevenueMinor},
				{"logins", got.Logins, want.Logins},
				{"promoters", got.Promoters, want.Promoters},
				{"passives", got.Passives, want.Passives},
				{"detractors", got.Detractors, want.Detractors},
				{"csat answers", got.CSATAnswers, want.CSATAnswers},
				{"complaints", got.ComplaintsOpened, want.ComplaintsOpened},
			} {
				if w == 1 && x.name == "repeat" {
					continue
				}
				if x.got != x.want {
					t.Errorf("day %s, %d days: %s %d, directly %d", d.Start().Format(time.DateOnly), w, x.name, x.got, x.want)
				}
				if x.want != 0 {
					checked[x.name]++
				}
			}
		}
		want := map[string]map[string]int64{"tier": {}, "churn": {}, "segment": {}, "layer": {}}
		for _, m := range mixes[d] {
			want["tier"][m.tier]++
			want["churn"][m.churn]++
			want["segment"][m.segment]++
			want["layer"][m.layer]++
		}
		got := c.Report(d, 1)
		for name, g := range map[string]map[string]int64{"tier": got.Tiers, "churn": got.Churn, "segment": got.Segments, "layer": got.Layers} {
			if !maps.Equal(g, want[name]) {
				t.Errorf("day %s: %s mix %v, the customers' states say %v", d.Start().Format(time.DateOnly), name, g, want[name])
			}
			if len(want[name]) > 1 {
				checked[name+" mix"]++
			}
		}
	}
	// Every quantity must have been seen non-zero, or the comparison proves nothing.
	for _, name := range []string{"active", "repeat", "retained", "new", "lapsed", "orders", "refunds", "logins", "promoters",
		"detractors", "csat answers", "complaints", "tier mix", "churn mix", "segment mix", "layer mix"} {
		if checked[name] == 0 {
			t.Errorf("%s was never non-zero in the generated history", name)
		}
	}
	last := c.Report(start+simDays-1, 365)
	t.Logf("last year: %d customers, %d active, repurchase %.3f, retention %.3f, %d lapsed, %d entered HIGH, tiers %v",
		last.Customers, last.ActiveCustomers, *last.RepurchaseRate, *last.RetentionRate, last.Lapsed, last.EnteredHighRisk, last.Tiers)
}

func TestCompleteThroughWaitsForTheWatermarkAndTheEarliestDeadline(t *testing.T) {
	p := scoring.DefaultPolicy() // allowed lateness 1h
	d := scoring.DayOf(time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC))
	at := func(s string) time.Time { t, _ := time.Parse(time.DateTime, s); return t }
	if _, ok := CompleteThrough(time.Time{}, time.Time{}, p); ok {
		t.Error("no watermark: no day can be complete")
	}
	for _, c := range []struct {
		wm, due string
		want    scoring.Day
	}{
		{"2025-03-11 01:00:00", "", d},                        // day 10 closes at 11th 01:00
		{"2025-03-11 00:59:59", "", d - 1},                    // not yet
		{"2025-03-11 05:00:00", "2025-03-11 01:00:00", d - 1}, // a customer's day-10 evaluation is due
		{"2025-03-11 05:00:00", "2025-03-11 01:00:01", d},
		{"2025-03-13 05:00:00", "2025-03-12 01:00:00", d},
	} {
		var due time.Time
		if c.due != "" {
			due = at(c.due)
		}
		got, ok := CompleteThrough(at(c.wm), due, p)
		if !ok || got != c.want {
			t.Errorf("watermark %s, first deadline %q: complete through %s (ok %v), want %s", c.wm, c.due,
				got.Start().Format(time.DateOnly), ok, c.want.Start().Format(time.DateOnly))
		}
	}
}
