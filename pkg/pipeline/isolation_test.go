package pipeline_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// faultyEncoder encodes every derived event, but fails on those of one customer and panics on
// those of another: a stand-in for any failure of one customer's computation.
type faultyEncoder struct{ failFor, panicFor string }

func (f faultyEncoder) Encode(e event.Event) ([]byte, error) {
	switch id := customerOf(e); id {
	case f.failFor:
		return nil, errors.New("the schema refuses this value")
	case f.panicFor:
		panic("index out of range in a derived event of " + id)
	default:
		return []byte(e.Schema()), nil
	}
}

func customerOf(e event.Event) string {
	switch v := e.(type) {
	case event.TierChanged:
		return v.CustomerID
	case event.ChurnRiskChanged:
		return v.CustomerID
	case event.SegmentChanged:
		return v.CustomerID
	}
	return ""
}

// TestOneCustomersFailureIsolatesThatRecordAndTheRestOfTheBatchGoesOn: in a batch of three
// customers, the record whose derived event cannot be encoded and the record whose
// computation panics are rejected as scoring_failed, each customer going on from its state
// before the record, and the third customer is scored as usual. Nothing returns an error, so
// the batch commits.
func TestOneCustomersFailureIsolatesThatRecordAndTheRestOfTheBatchGoesOn(t *testing.T) {
	p := scoring.DefaultPolicy()
	scorer := pipeline.NewScorer(p, faultyEncoder{failFor: "fails", panicFor: "panics"}, false)
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	big := func(id string, n int) event.Purchase { // far above every tier threshold: an upgrade
		return event.Purchase{EventID: fmt.Sprintf("%s-%d", id, n), CustomerID: id, OccurredAt: at.Add(time.Duration(n) * time.Minute),
			OrderID: fmt.Sprintf("o-%d", n), Kind: event.KindPurchase, AmountMinor: 10_000_000, Currency: p.Currency}
	}
	inputs := []event.Purchase{big("fails", 1), big("panics", 1), big("fine", 1)}
	msgs := make([]stream.Message, len(inputs))
	for i := range msgs {
		msgs[i] = stream.Message{Topic: "loyalty.purchases.v1", Partition: 0, Offset: int64(i)}
	}
	b := stream.NewBatch(msgs)
	byCustomer := map[string][]ingest.Record{}
	for i, in := range inputs {
		byCustomer[in.CustomerID] = append(byCustomer[in.CustomerID], ingest.NewRecord(b, i, in))
	}
	compute := scorer.ApplyCompute(byCustomer, time.Time{})
	for _, id := range []string{"fails", "panics", "fine"} {
		u, err := compute(id, state.Current{})
		if err != nil {
			t.Fatalf("customer %s: %v: one customer's failure failed the batch", id, err)
		}
		if id == "fine" && len(u.Outbox) == 0 {
			t.Errorf("customer fine: no derived events, want its upgrade")
		}
		if id != "fine" && (len(u.Outbox) != 0 || u.Quarantine != "") {
			t.Errorf("customer %s: update %+v, want the state before its failed record and nothing derived", id, u)
		}
	}
	rejected := map[int64]stream.Rejection{}
	for _, r := range b.Rejections() {
		rejected[r.Message.Offset] = r
	}
	for i, want := range []string{"encoding", "panicked"} {
		r, ok := rejected[int64(i)]
		if !ok || r.Code != "scoring_failed" || !strings.Contains(r.Err.Error(), want) {
			t.Errorf("record %d (%s): rejection %+v, want scoring_failed naming %q", i, inputs[i].CustomerID, r, want)
		}
	}
	if _, ok := rejected[2]; ok {
		t.Errorf("the healthy customer's record was rejected: %+v", rejected[2])
	}
}

// TestARebuildWritesOnlyOverTheTombstoneItChoseItsRecordsAgainst: a record turned away from a
// quarantined customer bumps its tombstone, and a rebuild computed against the tombstone from
// before refuses to write (the caller chooses its records again), as it does for a customer no
// longer quarantined; against the current tombstone it writes the replayed state with the
// later records applied.
func TestARebuildWritesOnlyOverTheTombstoneItChoseItsRecordsAgainst(t *testing.T) {
	p := scoring.DefaultPolicy()
	scorer := pipeline.NewScorer(p, faultyEncoder{}, false)
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	buy := func(n int) event.Purchase {
		return event.Purchase{EventID: fmt.Sprintf("b-%d", n), CustomerID: "c", OccurredAt: at.Add(time.Duration(n) * time.Minute),
			OrderID: fmt.Sprintf("o-%d", n), Kind: event.KindPurchase, AmountMinor: 10_000_000, Currency: p.Currency}
	}
	records := func(first int, ins ...event.Purchase) []ingest.Record {
		msgs := make([]stream.Message, len(ins))
		for i := range msgs {
			msgs[i] = stream.Message{Topic: "loyalty.purchases.v1", Offset: int64(first + i)}
		}
		b := stream.NewBatch(msgs)
		out := make([]ingest.Record, len(ins))
		for i, in := range ins {
			out[i] = ingest.NewRecord(b, i, in)
		}
		return out
	}
	replayed, err := scorer.ApplyCompute(map[string][]ingest.Record{"c": records(0, buy(1))}, time.Time{})("c", state.Current{})
	if err != nil || replayed.Value == nil {
		t.Fatalf("the replayed state: %+v %v", replayed, err)
	}
	tomb := state.Current{Fields: map[string]string{state.QuarantinedField: "corrupt"}}
	turned, err := scorer.ApplyCompute(map[string][]ingest.Record{"c": records(1, buy(2))}, time.Time{})("c", tomb)
	if err != nil || turned.Fields[state.QuarantineMarkField] != "1" || turned.Fields[state.QuarantinedField] != "corrupt" || len(turned.Outbox) != 0 {
		t.Fatalf("a record for a quarantined customer: update %+v %v, want the tombstone with 1 turned away and nothing derived", turned, err)
	}
	later := records(1, buy(2))
	replayedState := state.Current{Value: replayed.Value}
	if _, err := scorer.RebuildCompute(replayedState, "", later, time.Time{})("c", state.Current{Fields: turned.Fields}); !errors.Is(err, pipeline.ErrTombstoneMoved) {
		t.Errorf("a rebuild against the tombstone before a record was turned away: %v, want ErrTombstoneMoved", err)
	}
	if _, err := scorer.RebuildCompute(replayedState, "1", later, time.Time{})("c", replayedState); !errors.Is(err, pipeline.ErrNotQuarantinedNow) {
		t.Errorf("a rebuild of a customer not quarantined: %v, want ErrNotQuarantinedNow", err)
	}
	u, err := scorer.RebuildCompute(replayedState, "1", later, time.Time{})("c", state.Current{Fields: turned.Fields})
	if err != nil {
		t.Fatal(err)
	}
	want, err := scorer.ApplyCompute(map[string][]ingest.Record{"c": records(0, buy(1), buy(2))}, time.Time{})("c", state.Current{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(u.Value, want.Value) {
		t.Errorf("rebuilt state\n %x\nwant the state of both records\n %x", u.Value, want.Value)
	}
	if u.Fields != nil {
		t.Errorf("the rebuilt state is still a tombstone: %v", u.Fields)
	}
}
