package scoring

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// interleaving is one customer's history as the three consumers might deliver it: each
// topic's events in their order, the topics interleaved in any way the consumers' alignment
// allows (one may run up to MaxAlignmentLeadDays of event time ahead of the watermark), with watermark
// evaluations at arbitrary points in between (the sweeper), besides the one the consumer runs
// before applying each event.
type interleaving struct {
	inOrder []Event // event-time order
	arrival []Event // the same events, each topic's in order, topics interleaved
	closeAt []bool  // whether the sweeper runs after the arrival of event i
	end     time.Time
}

// genInterleaving draws a history and an interleaving of its topics: bursts of one topic at
// a time, so a topic can run far ahead of the others.
var genInterleaving = rapid.Custom(func(t *rapid.T) interleaving {
	p := DefaultPolicy()
	inOrder := withOffsets(genHistory(t, p))
	byTopic := map[string][]Event{}
	var topics []string
	for _, e := range inOrder {
		if _, ok := byTopic[e.Source.Topic]; !ok {
			topics = append(topics, e.Source.Topic)
		}
		byTopic[e.Source.Topic] = append(byTopic[e.Source.Topic], e)
	}
	// The consumers' alignment: a topic's next event may arrive only while it is at most the
	// largest lead allowed ahead of the watermark (the earliest next event of any topic). The
	// topic holding the watermark always may, so the interleaving always completes.
	lead := time.Duration(MaxAlignmentLeadDays) * 24 * time.Hour
	watermark := func() time.Time {
		var wm time.Time
		for _, tp := range topics {
			if q := byTopic[tp]; len(q) > 0 && (wm.IsZero() || q[0].OccurredAt.Before(wm)) {
				wm = q[0].OccurredAt
			}
		}
		return wm
	}
	var arrival []Event
	for len(arrival) < len(inOrder) {
		wm := watermark()
		var open []string
		for _, tp := range topics {
			if q := byTopic[tp]; len(q) > 0 && !q[0].OccurredAt.After(wm.Add(lead)) {
				open = append(open, tp)
			}
		}
		tp := open[rapid.IntRange(0, len(open)-1).Draw(t, "topic")]
		burst := rapid.IntRange(1, len(byTopic[tp])).Draw(t, "burst")
		for n := 0; n < burst && len(byTopic[tp]) > 0 && !byTopic[tp][0].OccurredAt.After(watermark().Add(lead)); n++ {
			arrival = append(arrival, byTopic[tp][0])
			byTopic[tp] = byTopic[tp][1:]
		}
	}
	closeAt := make([]bool, len(arrival))
	for i := range closeAt {
		closeAt[i] = rapid.Bool().Draw(t, "close")
	}
	end := lastTime(inOrder).Add(time.Duration(rapid.IntRange(0, 120).Draw(t, "days")) * 24 * time.Hour)
	return interleaving{inOrder: inOrder, arrival: arrival, closeAt: closeAt, end: end}
})

// watermarkRule returns the pipeline watermark after the first i events of arrival have been
// applied, and false when it is not known yet.
type watermarkRule func(arrival []Event, i int) (time.Time, bool)

// minOverTopics is the pipeline's rule: the minimum over the topics of each one's position,
// the time of its next event still to arrive (everything before it has been applied). A
// topic with nothing left never holds the watermark back.
func minOverTopics(arrival []Event, i int) (time.Time, bool) {
	next := map[string]time.Time{}
	for _, e := range arrival[i:] {
		if _, ok := next[e.Source.Topic]; !ok {
			next[e.Source.Topic] = e.OccurredAt
		}
	}
	var wm time.Time
	for _, t := range next {
		if wm.IsZero() || t.Before(wm) {
			wm = t
		}
	}
	return wm, !wm.IsZero()
}

// newestApplied is a deliberately wrong rule: the newest event time applied so far, which is
// what each consumer closing days by its own events' times amounts to.
func newestApplied(arrival []Event, i int) (time.Time, bool) {
	return lastTime(arrival[:i]), i > 0
}

// outcome is what a run leaves: the final stored state, remembered event ids included (each
// topic's are kept by that topic's history alone, so they do not depend on how the topics
// interleaved), and the changes of each kind in the order they were made.
type outcome struct {
	Fields  map[string]string
	Tier    []Change
	Churn   []Change
	Segment []Change
}

func replayInterleaving(t tb, sc interleaving, rule watermarkRule, p *Policy) outcome {
	var s State
	var out outcome
	keep := func(chs []Change) {
		for _, c := range chs {
			switch c.(type) {
			case *TierChange:
				out.Tier = append(out.Tier, c)
			case *ChurnRiskChange:
				out.Churn = append(out.Churn, c)
			case *SegmentChange:
				out.Segment = append(out.Segment, c)
			}
		}
	}
	for i, e := range sc.arrival {
		var ch []Change
		// The consumer applying a customer's event first closes the days its watermark
		// makes closable, through their deadlines as the sweeper does, then applies the
		// event.
		if wm, ok := rule(sc.arrival, i); ok {
			s, ch, _ = Sweep(s, wm, p)
			keep(ch)
		}
		s, ch = mustApply(t, s, e, p)
		keep(ch)
		if sc.closeAt[i] {
			if wm, ok := rule(sc.arrival, i+1); ok {
				s, ch, _ = Sweep(s, wm, p)
				keep(ch)
			}
		}
	}
	s, ch, _ := Sweep(s, sc.end, p)
	keep(ch)
	out.Fields = s.MarshalFields()
	return out
}

// inOrderOutcome is the reference: the events in event-time order, the watermark closing
// days after every event.
func inOrderOutcome(t tb, sc interleaving, p *Policy) outcome {
	ref := sc
	ref.arrival = sc.inOrder
	ref.closeAt = make([]bool, len(sc.inOrder))
	for i := range ref.closeAt {
		ref.closeAt[i] = true
	}
	return replayInterleaving(t, ref, minOverTopics, p)
}

func sameOutcome(a, b outcome) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return reflect.DeepEqual(a.Fields, b.Fields) && string(ja) == string(jb)
}

// Any interleaving of the three topics that keeps each topic in order, with days closed only
// by a watermark consistent with it, ends in the same state with the same changes as the
// events in event-time order.
func TestPropertyAnyTopicInterleavingGivesTheSameStateAndChanges(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		sc := genInterleaving.Draw(t, "scenario")
		want, got := inOrderOutcome(t, sc, p), replayInterleaving(t, sc, minOverTopics, p)
		if !sameOutcome(want, got) {
			wj, _ := json.MarshalIndent(want, "", " ")
			gj, _ := json.MarshalIndent(got, "", " ")
			t.Fatalf("interleaving changed the outcome\nin order:%s\narrival:%s\n%s",
				listEvents(sc.inOrder), listEvents(sc.arrival), firstDifference(string(wj), string(gj)))
		}
	})
}

// The property above can fail: closing days at the newest event time applied (each consumer
// trusting its own events) gives a different outcome for some interleaving.
func TestTheInterleavingPropertyCatchesAWrongWatermarkRule(t *testing.T) {
	p := DefaultPolicy()
	for seed := 0; seed < 2000; seed++ {
		sc := genInterleaving.Example(seed)
		if !sameOutcome(inOrderOutcome(t, sc, p), replayInterleaving(t, sc, newestApplied, p)) {
			t.Logf("seed %d: the wrong rule changed the outcome", seed)
			return
		}
	}
	t.Fatal("2000 interleavings closed by the newest applied event time all matched the in-order run: the property cannot tell a wrong watermark rule")
}

// firstDifference shows the lines around the first line where two renderings differ.
func firstDifference(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		if i < len(w) && i < len(g) && w[i] == g[i] {
			continue
		}
		from := max(0, i-12)
		return fmt.Sprintf("first difference at line %d\nin order:\n%s\narrival:\n%s", i,
			strings.Join(w[from:min(len(w), i+6)], "\n"), strings.Join(g[from:min(len(g), i+6)], "\n"))
	}
	return "renderings are equal"
}

// MaxStoredBytes is the documented bound on one customer's stored state (field names plus
// values, docs/scoring.md), for the busiest customer the policy allows: a purchase, a refund,
// a login, an NPS and a CSAT answer and a complaint every day; about 1.2 KB of it are the ids
// of the last week's events, remembered to skip duplicates (dedupe.horizon_days).
const MaxStoredBytes = 2560

// The bounded-state test: a year of the busiest possible customer, one topic running the
// largest alignment lead ahead of the others the whole time. Nothing is dropped (the outcome
// equals the in-order run's) and the stored state never grows past MaxStoredBytes.
func TestOneTopicAheadByTheLargestLeadDropsNothingAndStateStaysBounded(t *testing.T) {
	p := DefaultPolicy()
	lead := time.Duration(MaxAlignmentLeadDays) * 24 * time.Hour
	for _, ahead := range []string{"loyalty.logins.v1", "loyalty.feedback.v1", "loyalty.purchases.v1"} {
		t.Run(ahead, func(t *testing.T) {
			var g evGen
			var inOrder []Event
			for d := 0; d < 365; d++ {
				at := day(d)
				order := fmt.Sprintf("o-%d", d)
				inOrder = append(inOrder,
					g.purchase(at, 1_000+int64(d%7)*500, order),
					g.login(at.Add(time.Minute)),
					g.feedback(at.Add(2*time.Minute), FeedbackNPS, d%11),
					g.feedback(at.Add(3*time.Minute), FeedbackCSAT, 1+d%5),
					g.feedback(at.Add(4*time.Minute), FeedbackComplaintOpened, 0),
					g.refund(at.Add(5*time.Minute), 100, fmt.Sprintf("o-%d", max(d-3, 0))),
				)
				if d%2 == 1 {
					inOrder = append(inOrder, g.feedback(at.Add(6*time.Minute), FeedbackComplaintClosed, 0))
				}
			}
			inOrder = withOffsets(inOrder)
			// The topic ahead delivers each event as soon as it is within the lead of the
			// others' next event; the others follow in event time.
			var fast, slow []Event
			for _, e := range inOrder {
				if e.Source.Topic == ahead {
					fast = append(fast, e)
				} else {
					slow = append(slow, e)
				}
			}
			var arrival []Event
			for len(fast)+len(slow) > 0 {
				if len(fast) > 0 && (len(slow) == 0 || !fast[0].OccurredAt.After(slow[0].OccurredAt.Add(lead))) {
					arrival, fast = append(arrival, fast[0]), fast[1:]
				} else {
					arrival, slow = append(arrival, slow[0]), slow[1:]
				}
			}
			sc := interleaving{inOrder: inOrder, arrival: arrival, closeAt: make([]bool, len(arrival)), end: lastTime(inOrder).Add(48 * time.Hour)}
			want, got := inOrderOutcome(t, sc, p), replayInterleaving(t, sc, minOverTopics, p)
			if !sameOutcome(want, got) {
				wj, _ := json.MarshalIndent(want, "", " ")
				gj, _ := json.MarshalIndent(got, "", " ")
				t.Fatalf("%s %s ahead changed the outcome\n%s", ahead, lead, firstDifference(string(wj), string(gj)))
			}
			// The largest state along the way.
			var s State
			largest := 0
			for i, e := range arrival {
				if wm, ok := minOverTopics(arrival, i); ok {
					s, _, _ = Sweep(s, wm, p)
				}
				s, _ = mustApply(t, s, e, p)
				n := 0
				for k, v := range s.MarshalFields() {
					n += len(k) + len(v)
				}
				largest = max(largest, n)
			}
			t.Logf("%s %s ahead: the stored state peaked at %d bytes (bound %d)", ahead, lead, largest, MaxStoredBytes)
			if largest > MaxStoredBytes {
				t.Fatalf("the stored state reached %d bytes, past the documented %d", largest, MaxStoredBytes)
			}
		})
	}
}
