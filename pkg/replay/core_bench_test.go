package replay_test

import (
	"container/heap"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// BenchmarkScoringCoreOverRetailHistory is the scoring core alone over the UCI retail
// history of the acceptance replay (110,930 events, 21,855 customers): every customer's state
// kept decoded in memory, one thread, no Redis, no encoding, no derived events, KPIs or
// transitions, and the policy's cut points throughout (no derivation). Each event's customer
// has its closable days closed and the event applied, as the processor does, and due
// customers are swept at the close of each re-check day, as a sweeper behind a backlog does.
// It is the ceiling of any replay engine built on this core: what a replay would make if
// everything around the core cost nothing (events/s), and the core's cost per evaluation.
func BenchmarkScoringCoreOverRetailHistory(b *testing.B) {
	events := retailEvents(loadRetail(b), 5, time.Now())
	_, p := gbpPolicy(b, 200000, "bench")
	scored := make([]scoring.Event, len(events))
	for i, e := range events {
		scored[i] = pipeline.ScoringEvent(ingest.Record{Message: stream.Message{Topic: "loyalty.purchases.v1", Partition: i % 6, Offset: int64(i)}, Event: e})
	}
	end := time.Now().Add(-p.AllowedLateness)
	var evaluations int
	for b.Loop() {
		evaluations = replayCore(b, scored, p, end)
	}
	b.ReportMetric(float64(len(events)*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(b.Elapsed().Seconds()*1e6/float64(evaluations*b.N), "µs/evaluation")
	b.ReportMetric(float64(evaluations), "evaluations")
}

// replayCore applies the events in order and sweeps due customers, returning how many
// sweeper evaluations it made.
func replayCore(b *testing.B, events []scoring.Event, p *scoring.Policy, end time.Time) int {
	states := map[string]scoring.State{}
	deadline := map[string]time.Time{}
	due := &deadlineHeap{}
	schedule := func(id string, at time.Time) {
		if at.IsZero() {
			delete(deadline, id)
			return
		}
		deadline[id] = at
		heap.Push(due, customerDeadline{id, at})
	}
	evaluations := 0
	sweep := func(clock time.Time) {
		for due.Len() > 0 && !(*due)[0].at.After(scoring.CloseBound(clock, p)) {
			d := heap.Pop(due).(customerDeadline)
			if !deadline[d.id].Equal(d.at) {
				continue // superseded by a later write
			}
			s, _, next, _ := scoring.SweepSampled(states[d.id], clock, p)
			states[d.id] = s
			evaluations++
			schedule(d.id, next)
		}
	}
	for _, e := range events {
		wm := e.OccurredAt.Add(-p.AllowedLateness)
		sweep(scoring.LastRecheckCloses(wm, p))
		s, _, _ := scoring.Sweep(states[e.CustomerID], wm, p)
		s, _, err := scoring.Apply(s, e, p)
		if err != nil {
			b.Fatal(err)
		}
		states[e.CustomerID] = s
		schedule(e.CustomerID, scoring.NextDeadline(s, p))
	}
	sweep(end)
	return evaluations
}

type customerDeadline struct {
	id string
	at time.Time
}

type deadlineHeap []customerDeadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(customerDeadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
