package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// TestAnErasureOnTheTopicSurvivesARedisThatLostTheSuppressionList: the suppression list in
// Redis is gone (a restore from an older backup, say) but the erasure is on the erasures topic;
// the consumers restore the list from it before they apply anything, so the erased customer's
// next purchase does not bring it back, while another customer's is applied.
func TestAnErasureOnTheTopicSurvivesARedisThatLostTheSuppressionList(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rt := e.runtime(ctx, e.ns, false)
	gone, kept := testinfra.Name("gone"), testinfra.Name("kept")
	rec, err := rt.Codec.Encode(event.CustomerErased{EventID: "erase-" + gone, CustomerID: gone, ErasedAt: time.Now().UTC(),
		RequestedBy: "dpo@example.com", KeysRemoved: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Producer.Produce(ctx, stream.Record{Topic: rt.Topic(event.TopicErasures), Key: []byte(gone), Value: rec}); err != nil {
		t.Fatal(err)
	}
	if on, _ := rt.Redis.SIsMember(ctx, rt.Deployment.Erased(), gone).Result(); on {
		t.Fatal("the customer is on the Redis list before the restore: the test would prove nothing")
	}
	at := time.Now().UTC().Add(-time.Hour)
	buy := func(id string) event.Input {
		return event.Purchase{EventID: id + "-p", CustomerID: id, OccurredAt: at, OrderID: "o-" + id, Kind: event.KindPurchase,
			AmountMinor: 5000, Currency: rt.Policy.Currency}
	}
	e.produce(rt, []event.Input{buy(gone), buy(kept)})
	svc := e.start(rt, true)
	defer svc.stop()
	store, err := state.New(ctx, rt.Redis, rt.Keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := store.Get(ctx, kept); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other customer's purchase was never applied")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := store.Get(ctx, gone); err == nil {
		t.Errorf("the erased customer %s has a state again: the suppression list was not restored from the topic", gone)
	}
	if on, _ := rt.Redis.SIsMember(ctx, rt.Deployment.Erased(), gone).Result(); !on {
		t.Errorf("the erased customer %s is not on the restored suppression list", gone)
	}
}
