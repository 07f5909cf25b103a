package scoring

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// genHistory draws one customer's events in event-time order: purchases,
// refunds of earlier orders, logins and feedback, often clustered within the
// allowed lateness so that permutations matter.
func genHistory(t *rapid.T, p *Policy) []Event {
	n := rapid.IntRange(1, 30).Draw(t, "n")
	var g evGen
	at := t0
	var events []Event
	var orders []Event
	for i := 0; i < n; i++ {
		if rapid.Bool().Draw(t, "cluster") {
			at = at.Add(time.Duration(rapid.IntRange(0, 50).Draw(t, "minutes")) * time.Minute)
		} else {
			at = at.Add(time.Duration(rapid.IntRange(1, 60*24*60).Draw(t, "minutes")) * time.Minute)
		}
		var e Event
		switch k := rapid.IntRange(0, 9).Draw(t, "kind"); {
		case k <= 3 && len(orders) < maxOrders:
			// The returns-window lookup remembers the newest 10 orders (see
			// docs/scoring.md); a history with more recent orders than that
			// is exact only up to which refunds find their order.
			e = g.purchase(at, rapid.Int64Range(0, 300000).Draw(t, "amount"), fmt.Sprintf("order-%d", i))
			orders = append(orders, e)
		case k == 4 && len(orders) > 0:
			o := orders[rapid.IntRange(0, len(orders)-1).Draw(t, "order")]
			// A refund comes after its purchase by more than the lateness, so
			// that it arrives after it (they share a partition).
			rt := at
			if min := o.OccurredAt.Add(p.AllowedLateness + time.Minute); rt.Before(min) {
				rt = min
				at = rt
			}
			e = g.refund(rt, rapid.Int64Range(1, max(o.AmountMinor, 1)).Draw(t, "refund"), o.OrderID)
		case k <= 6:
			e = g.login(at)
		default:
			switch f := FeedbackKind(rapid.IntRange(1, 4).Draw(t, "fb")); f {
			case FeedbackNPS:
				e = g.feedback(at, f, rapid.IntRange(0, 10).Draw(t, "nps"))
			case FeedbackCSAT:
				e = g.feedback(at, f, rapid.IntRange(1, 5).Draw(t, "csat"))
			default:
				e = g.feedback(at, f, 0)
			}
		}
		events = append(events, e)
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].OccurredAt.Before(events[j].OccurredAt) })
	return events
}

// arrivalOrder permutes events so that each arrives no later than the allowed
// lateness behind the newest event time before it: sort by time plus a random
// delay in [0, lateness]. Offsets are then assigned per topic in arrival
// order, as a broker would.
func arrivalOrder(t *rapid.T, events []Event, p *Policy) []Event {
	type keyed struct {
		e   Event
		key time.Time
	}
	ks := make([]keyed, len(events))
	for i, e := range events {
		delay := time.Duration(rapid.Int64Range(0, int64(p.AllowedLateness)).Draw(t, "delay"))
		ks[i] = keyed{e, e.OccurredAt.Add(delay)}
	}
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].key.Before(ks[j].key) })
	out := make([]Event, len(ks))
	for i, k := range ks {
		out[i] = k.e
	}
	return withOffsets(out)
}

func withOffsets(events []Event) []Event {
	out := append([]Event(nil), events...)
	next := map[string]int64{}
	for i := range out {
		out[i].Source.Offset = next[out[i].Source.Topic]
		next[out[i].Source.Topic]++
	}
	return out
}

func run(t tb, events []Event, p *Policy) (State, []Change) {
	var s State
	var all []Change
	for _, e := range events {
		var ch []Change
		s, ch = mustApply(t, s, e, p)
		all = append(all, ch...)
	}
	return s, all
}

// runClosing applies events in event-time order as the pipeline does when its topics keep
// pace: before each event, the watermark (that event's time: everything earlier has been
// applied) closes the days it has passed.
func runClosing(t tb, events []Event, p *Policy) (State, []Change) {
	var s State
	var all []Change
	for _, e := range events {
		var ch []Change
		s, ch = Close(s, e.OccurredAt, p)
		all = append(all, ch...)
		s, ch = mustApply(t, s, e, p)
		all = append(all, ch...)
	}
	return s, all
}

func lastTime(events []Event) time.Time {
	var m time.Time
	for _, e := range events {
		if e.OccurredAt.After(m) {
			m = e.OccurredAt
		}
	}
	return m
}

// scoringFields is the stored state minus the remembered event ids, which are each topic's
// ids in the order its events arrived by definition (the days they were remembered on are
// their topic's clock then).
func scoringFields(s State) map[string]string {
	m := s.MarshalFields()
	for k := range m {
		if isChunk(k, seenPrefix) {
			delete(m, k)
		}
	}
	return m
}

func TestPropertySameInputsGiveByteIdenticalOutputs(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		events := withOffsets(genHistory(t, p))
		end := lastTime(events).Add(time.Duration(rapid.IntRange(0, 400).Draw(t, "days")) * 24 * time.Hour)
		encode := func() []byte {
			s, chs := run(t, events, p)
			s, more := Close(s, end, p)
			b, err := json.Marshal(struct {
				F map[string]string
				C []Change
				D time.Time
			}{s.MarshalFields(), append(chs, more...), NextDeadline(s, p)})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		a, b := encode(), encode()
		if string(a) != string(b) {
			t.Fatalf("two runs differ:\n%s\n%s", a, b)
		}
	})
}

func TestPropertyApplyingAnEventTwiceChangesNothing(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		events := withOffsets(genHistory(t, p))
		k := rapid.IntRange(0, len(events)-1).Draw(t, "k")
		s, _ := run(t, events[:k+1], p)
		// Redelivery of any applied event (same offset): a no-op.
		e := events[rapid.IntRange(0, k).Draw(t, "redelivered")]
		s2, ch, err := Apply(s, e, p)
		if err != nil || len(ch) != 0 || !reflect.DeepEqual(s, s2) {
			t.Fatalf("redelivery of %s changed the state or emitted %s (err %v)", e.EventID, describe(ch), err)
		}
		// A producer's duplicate (same event id, new offset) of a recent event.
		dup := events[k]
		dup.Source.Offset = 1 << 40
		s3, ch, err := Apply(s, dup, p)
		if err != nil || len(ch) != 0 || !reflect.DeepEqual(s, s3) {
			t.Fatalf("duplicate event id %s changed the state or emitted %s (err %v)", dup.EventID, describe(ch), err)
		}
	})
}

func TestPropertyPermutationsWithinLatenessGiveTheSameFinalState(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		inOrder := withOffsets(genHistory(t, p))
		shuffled := arrivalOrder(t, inOrder, p)
		end := lastTime(inOrder).Add(time.Duration(rapid.IntRange(0, 100).Draw(t, "days")) * 24 * time.Hour)

		a, _ := runClosing(t, inOrder, p)
		a, _ = Close(a, end, p)

		// The shuffled run closes days as the pipeline does: before each event, through the
		// deadlines a watermark no later than any event still to come has passed (the
		// consumer), and at random points in between (the sweeper).
		var b State
		for i, e := range shuffled {
			wm := e.OccurredAt
			for _, f := range shuffled[i:] {
				if f.OccurredAt.Before(wm) {
					wm = f.OccurredAt
				}
			}
			b, _, _ = Sweep(b, wm, p)
			b, _ = mustApply(t, b, e, p)
			if i+1 < len(shuffled) && rapid.Bool().Draw(t, "evaluate") {
				wm := shuffled[i+1].OccurredAt
				for _, f := range shuffled[i+1:] {
					if f.OccurredAt.Before(wm) {
						wm = f.OccurredAt
					}
				}
				b, _ = Close(b, wm, p)
			}
		}
		b, _ = Close(b, end, p)
		if fa, fb := scoringFields(a), scoringFields(b); !reflect.DeepEqual(fa, fb) {
			t.Fatalf("final states differ:\nin order: %v\nshuffled: %v\nevents in order:%s\nshuffled:%s", fa, fb, listEvents(inOrder), listEvents(shuffled))
		}
	})
}

func TestPropertyEvaluateBeforeTheDeadlineEmitsNothing(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		events := withOffsets(genHistory(t, p))
		s, _ := run(t, events, p)
		dl := NextDeadline(s, p)
		if dl.IsZero() {
			t.Fatal("no deadline for a customer with events")
		}
		before := dl.Add(-time.Duration(rapid.Int64Range(1, int64(400*24*time.Hour)).Draw(t, "before")))
		s2, ch := Close(s, before, p)
		if len(ch) != 0 {
			t.Fatalf("Evaluate at %s, before the deadline %s, emitted %s", before, dl, describe(ch))
		}
		// And the deadline is a real one: evaluating there changes something,
		// unless it is the end of the look-ahead horizon (a re-check day).
		_, ch = Close(s2, dl, p)
		horizon := DayCloses(recheckDay(min(s.EvalDay, s.TierDay), p), p)
		if len(ch) == 0 && !dl.Equal(horizon) {
			t.Fatalf("Evaluate at the deadline %s emitted nothing", dl)
		}
	})
}

// TestPropertySweepsAtDifferentClocksConverge: whether the sweeper ran often (at many
// watermarks) or once, the customer ends in the same state with the same changes, so two
// pipelines whose sweepers ran at different moments hold identical states.
func TestPropertySweepsAtDifferentClocksConverge(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		events := withOffsets(genHistory(t, p))
		s, _ := run(t, events, p)
		end := msTime(s.ClockMs).Add(time.Duration(rapid.IntRange(1, 500).Draw(t, "days")) * 24 * time.Hour)
		once, onceChanges, onceNext := Sweep(s, end, p)

		often, oftenChanges := s, []Change(nil)
		at := msTime(s.ClockMs)
		for at.Before(end) {
			at = at.Add(time.Duration(rapid.Int64Range(1, int64(40*24*time.Hour)).Draw(t, "step")))
			if at.After(end) {
				at = end
			}
			var ch []Change
			often, ch, _ = Sweep(often, at, p)
			oftenChanges = append(oftenChanges, ch...)
		}
		if a, b := once.MarshalFields(), often.MarshalFields(); !reflect.DeepEqual(a, b) {
			t.Fatalf("one sweep and many sweeps to %s differ:\n once:  %v\n often: %v", end, a, b)
		}
		if describe(onceChanges) != describe(oftenChanges) {
			t.Fatalf("changes differ:\n once:  %s\n often: %s", describe(onceChanges), describe(oftenChanges))
		}
		if !onceNext.After(end) || !onceNext.Equal(NextDeadline(once, p)) {
			t.Fatalf("next deadline %s: want the state's own deadline, after %s", onceNext, end)
		}
		// And sweeping to end emits what evaluating every day to end emits.
		_, daily := Close(s, end, p)
		if describe(daily) != describe(onceChanges) {
			t.Fatalf("Sweep and Evaluate disagree:\n sweep:    %s\n evaluate: %s", describe(onceChanges), describe(daily))
		}
	})
}

// TestPropertySweepTakesTheLookAheadsStateAsCloseWouldMakeIt: Sweep keeps the days
// NextDeadline closed on a copy instead of closing them again with Close; the state, the
// changes and the next deadline are those of closing them again.
func TestPropertySweepTakesTheLookAheadsStateAsCloseWouldMakeIt(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		events := withOffsets(genHistory(t, p))
		s, _ := run(t, events, p)
		end := msTime(s.ClockMs).Add(time.Duration(rapid.IntRange(0, 500).Draw(t, "days")) * 24 * time.Hour)
		got, gotChanges, gotNext := Sweep(s, end, p)

		want, wantChanges := s, []Change(nil)
		wantNext := NextDeadline(want, p)
		for !wantNext.IsZero() && !wantNext.After(end) {
			var ch []Change
			want, ch = Close(want, wantNext, p)
			wantChanges = append(wantChanges, ch...)
			wantNext = NextDeadline(want, p)
		}
		if a, b := got.MarshalFields(), want.MarshalFields(); !reflect.DeepEqual(a, b) {
			t.Fatalf("Sweep to %s and closing at each deadline differ:\n sweep: %v\n close: %v", end, a, b)
		}
		if describe(gotChanges) != describe(wantChanges) || !gotNext.Equal(wantNext) {
			t.Fatalf("changes or next deadline differ:\n sweep: %s, next %s\n close: %s, next %s", describe(gotChanges), gotNext, describe(wantChanges), wantNext)
		}
	})
}

func TestPropertyStoredFieldsRoundTripAndStaySmall(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		events := withOffsets(genHistory(t, p))
		var s State
		for _, e := range events {
			s, _ = mustApply(t, s, e, p)
			if rapid.Bool().Draw(t, "evaluate") {
				s, _ = Close(s, e.OccurredAt.Add(time.Duration(rapid.IntRange(0, 90).Draw(t, "days"))*24*time.Hour), p)
			}
			m := s.MarshalFields()
			for k, v := range m {
				if len(v) > maxFieldLen || len(k) > 40 {
					t.Fatalf("field %s=%q is longer than %d bytes", k, v, maxFieldLen)
				}
			}
			got, err := UnmarshalFields(m)
			if err != nil {
				t.Fatalf("UnmarshalFields(%v): %v", m, err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(s)) {
				t.Fatalf("round trip lost data:\nwant %+v\ngot  %+v", s, got)
			}
		}
	})
}

func normalize(s State) State {
	if len(s.Window) == 0 {
		s.Window = nil
	}
	if len(s.Orders) == 0 {
		s.Orders = nil
	}
	if len(s.Offsets) == 0 {
		s.Offsets = nil
	}
	for t := range s.Seen {
		if len(s.Seen[t]) == 0 {
			s.Seen[t] = nil
		}
	}
	return s
}

func listEvents(es []Event) string {
	out := ""
	for _, e := range es {
		out += fmt.Sprintf("\n  %s %s %s amt=%d order=%q refund_of=%q fb=%s/%d", e.EventID, e.Kind, e.OccurredAt.Format(time.RFC3339), e.AmountMinor, e.OrderID, e.RefundOfOrderID, e.FeedbackKind, e.Score)
	}
	return out
}
