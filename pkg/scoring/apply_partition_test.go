package scoring_test

import (
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// A topic's partition count grew and the customer's records now land on another partition,
// whose offsets are unrelated: its events must not be mistaken for redeliveries.
func TestAnEventFromANewPartitionWithALowerOffsetIsNotADuplicate(t *testing.T) {
	p := scoring.DefaultPolicy()
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	login := func(id string, partition int32, offset int64) scoring.Event {
		return scoring.Event{Kind: scoring.KindLogin, EventID: id, CustomerID: "c", OccurredAt: at,
			Source: scoring.Source{Topic: "loyalty.logins.v1", Partition: partition, Offset: offset}}
	}
	st, _, err := scoring.Apply(scoring.State{}, login("a", 0, 900), p)
	if err != nil {
		t.Fatal(err)
	}
	if !scoring.IsDuplicate(st, login("b", 0, 899)) {
		t.Fatal("a lower offset on the same partition must be a redelivery")
	}
	if scoring.IsDuplicate(st, login("c", 5, 3)) {
		t.Fatal("an offset on another partition was taken for a redelivery")
	}
	st, _, _ = scoring.Apply(st, login("c", 5, 3), p)
	if len(st.Offsets) != 1 || st.Offsets["loyalty.logins.v1#5"] != 3 {
		t.Fatalf("offsets %v: the former partition's offset must be replaced", st.Offsets)
	}
}
