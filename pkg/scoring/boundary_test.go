package scoring

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

// history is a customer who buys for a few weeks, logs in, and then lapses.
func boundaryHistory() []Event {
	var g evGen
	var evs []Event
	for i := 0; i < 30; i += 4 {
		evs = append(evs, g.purchase(day(i), int64(1000+100*i), ""), g.login(day(i+1)))
	}
	return append(evs, g.refund(day(31), 500, ""))
}

func TestSweepSampledGivesSweepsStateAndChangesAndTheMeasuresAtEachBoundary(t *testing.T) {
	p := DefaultPolicy()
	var s State
	for _, e := range boundaryHistory() {
		s, _ = mustApply(t, s, e, p)
	}
	wm := day(120)
	want, wantChanges, wantDue := Sweep(s, wm, p)
	got, changes, due, samples := SweepSampled(s, wm, p)
	if len(got.Observations) == 0 && !slices.ContainsFunc(samples, func(sm Sample) bool { return sm.Quality.Observed != nil }) {
		t.Fatal("no model-quality observation over four months")
	}
	got.Observations = nil // recorded by SweepSampled only
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(changes, wantChanges) || !due.Equal(wantDue) {
		t.Fatalf("SweepSampled differs from Sweep:\n got %+v %v\nwant %+v %v", changes, due, wantChanges, wantDue)
	}
	var boundaries []Day
	for d := DayOf(day(0)); d <= lastClosedDay(wm, p); d++ {
		if IsBoundary(d, p) {
			boundaries = append(boundaries, d)
		}
	}
	if len(samples) != len(boundaries) || len(boundaries) < 15 {
		t.Fatalf("%d samples for %d boundary days", len(samples), len(boundaries))
	}
	for i, sm := range samples {
		// The measures as of the boundary: the state closed exactly to it.
		at, _ := Close(s, DayCloses(sm.Boundary, p), p)
		exact, ok := at.RFMValuesAt(sm.Boundary, p)
		if sm.Boundary != boundaries[i] || !ok || sm.Values != exact {
			t.Fatalf("sample %d: %+v, want boundary %d with %+v", i, sm, boundaries[i], exact)
		}
	}
	if last := samples[len(samples)-1].Values; last.RecencyDays < 80 {
		t.Fatalf("a lapsed customer keeps recency %v at the last boundary", last.RecencyDays)
	}
}

func TestUnderSealedCutpointsDaysCloseOnlyUpToTheNextBoundary(t *testing.T) {
	p := DefaultPolicy()
	var s State
	for _, e := range boundaryHistory() {
		s, _ = mustApply(t, s, e, p)
	}
	wm := day(120)
	none, err := p.WithSealedCutpoints(NotSealed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, changes, _ := Sweep(s, wm, none); got.EvalDay != s.EvalDay || len(changes) != 0 {
		t.Fatalf("with nothing sealed a sweep closed days up to %d with %d changes", got.EvalDay, len(changes))
	}
	sealed := NextBoundary(DayOf(day(20)), p)
	gated, err := p.WithSealedCutpoints(sealed, nil)
	if err != nil {
		t.Fatal(err)
	}
	next := NextBoundary(sealed, p)
	if got, _, due := Sweep(s, wm, gated); got.EvalDay != next || !due.After(DayCloses(next, p)) {
		t.Fatalf("sealed through %d: evaluated to %d (due %v), want the next boundary %d", sealed, got.EvalDay, due, next)
	}
	if b := CloseBound(wm, gated); !b.Equal(DayCloses(next, p)) {
		t.Fatalf("CloseBound = %v, want %v", b, DayCloses(next, p))
	}
	if b := CloseBound(day(25), gated); !b.Equal(day(25)) {
		t.Fatalf("below the gate CloseBound = %v, want the watermark", b)
	}
}

func TestSegmentsAfterABoundaryUseItsSealedCutpoints(t *testing.T) {
	p := DefaultPolicy()
	var s State
	for _, e := range boundaryHistory() {
		s, _ = mustApply(t, s, e, p)
	}
	b := NextBoundary(DayOf(day(60)), p)
	cp := Cutpoints{Version: "rfm-test", Recency: [4]float64{1, 2, 3, 4}, Frequency: [4]float64{1, 1, 1, 1}, Monetary: [4]float64{1, 1, 1, 1}}
	gated, err := p.WithSealedCutpoints(b, &cp)
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	upTo, _ := Close(s, DayCloses(b, p), p)
	_, changes, _ := Sweep(upTo, time.Unix(1<<40, 0), gated)
	for _, c := range changes {
		if sc, ok := c.(*SegmentChange); ok {
			versions = append(versions, sc.CutpointsVersion)
		}
	}
	if len(versions) == 0 {
		t.Fatal("no segment change after the boundary")
	}
	for _, v := range versions {
		if v != "rfm-test" {
			t.Fatalf("segment change after the sealed boundary used %q", v)
		}
	}
}

func TestACustomerAtTheGateIsDueAsSoonAsTheNextBoundaryIsSealed(t *testing.T) {
	p := DefaultPolicy()
	var s State
	for _, e := range boundaryHistory() {
		s, _ = mustApply(t, s, e, p)
	}
	sealed := NextBoundary(DayOf(day(20)), p)
	gated, err := p.WithSealedCutpoints(sealed, nil)
	if err != nil {
		t.Fatal(err)
	}
	atGate, _, due := Sweep(s, day(120), gated)
	if gate := NextBoundary(sealed, p); atGate.EvalDay != gate || !due.Equal(DayCloses(gate+1, p)) {
		t.Fatalf("evaluated to %d, due %v; want the gate %d, due the day after", atGate.EvalDay, due, gate)
	}
	// Once the gate's boundary is sealed, the sweep from there equals one without gates.
	opened, err := p.WithSealedCutpoints(NextBoundary(sealed, p), nil)
	if err != nil {
		t.Fatal(err)
	}
	bound := CloseBound(day(120), opened)
	got, _, _ := Sweep(atGate, bound, opened)
	want, _, _ := Sweep(s, bound, p)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("resumed from the gate: %+v\nwithout gates: %+v", got, want)
	}
}
