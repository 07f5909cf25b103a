package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// TestDedupeAndKeyChecksThroughTheConsumers runs the consumers on real Redis and Kafka (or
// kfake) and checks, end to end: two purchases whose ids collide under a 32-bit hash both
// count and a producer's duplicate of one is skipped; a record keyed by another customer, and
// one without a key, go to the dead-letter topic as key_mismatch while the records after them
// on the same partition are applied; a customer whose stored remembered ids are corrupt is
// quarantined.
func TestDedupeAndKeyChecksThroughTheConsumers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rt := e.runtime(ctx, e.ns, false)
	store, err := state.New(ctx, rt.Redis, rt.Keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	dlq := e.collect(rt, rt.Topic(event.TopicDeadLetter))
	svc := e.start(rt, true)
	defer svc.stop()

	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	purchase := func(id, customer, order string, minor int64) event.Purchase {
		return event.Purchase{EventID: id, CustomerID: customer, OccurredAt: at, OrderID: order,
			Kind: event.KindPurchase, AmountMinor: minor, Currency: "USD"}
	}
	produce := func(key string, in event.Input) stream.Record {
		v, err := rt.Codec.Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		var k []byte
		if key != "" {
			k = []byte(key)
		}
		return stream.Record{Topic: rt.Topic(event.TopicPurchases), Key: k, Value: v}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	deadLetters := func(code string) []event.DeadLetter {
		var out []event.DeadLetter
		for _, ev := range dlq.snapshot() {
			if d, ok := ev.(event.DeadLetter); ok && d.ErrorCode == code {
				out = append(out, d)
			}
		}
		return out
	}

	// dk-a: 100.00 and 200.00 under colliding FNV-32 ids, a producer's duplicate of the first,
	// then a record for dk-b keyed dk-a (dk-a's partition) and dk-a's next purchase behind it.
	// dk-c: a purchase without a key. dk-d: a purchase, to be corrupted below.
	recs := []stream.Record{
		produce("dk-a", purchase("purchase-462789", "dk-a", "o-1", 10000)),
		produce("dk-a", purchase("purchase-679192", "dk-a", "o-2", 20000)),
		produce("dk-a", purchase("purchase-462789", "dk-a", "o-1", 10000)),
		produce("dk-a", purchase("dk-b-1", "dk-b", "o-3", 700)),
		produce("dk-a", purchase("dk-a-3", "dk-a", "o-4", 5000)),
		produce("", purchase("dk-c-1", "dk-c", "o-5", 900)),
		produce("dk-d", purchase("dk-d-1", "dk-d", "o-6", 1000)),
	}
	if err := rt.Producer.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	waitFor("dk-a's three distinct purchases and dk-d's", func() bool {
		return spend(t, rt, store, "dk-a") == 35000 && spend(t, rt, store, "dk-d") == 1000
	})
	waitFor("two key_mismatch dead letters", func() bool { return len(deadLetters(ingest.CodeKeyMismatch)) == 2 })
	byCustomer := map[string]event.DeadLetter{}
	for _, d := range deadLetters(ingest.CodeKeyMismatch) {
		switch {
		case strings.Contains(d.ErrorMessage, `record key "dk-a" differs from its customer_id "dk-b"`):
			byCustomer["dk-b"] = d
		case strings.Contains(d.ErrorMessage, `record has no key`) && strings.Contains(d.ErrorMessage, `"dk-c"`):
			byCustomer["dk-c"] = d
		}
	}
	if len(byCustomer) != 2 || string(byCustomer["dk-b"].Key) != "dk-a" || len(byCustomer["dk-c"].Key) != 0 {
		t.Fatalf("key_mismatch dead letters: %+v", deadLetters(ingest.CodeKeyMismatch))
	}
	for _, id := range []string{"dk-b", "dk-c"} {
		if fields, err := store.Get(ctx, id); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("%s has a state after its record was refused: %v %v", id, fields, err)
		}
	}

	// Corrupt remembered ids, in a state of the former hash layout (still read): the customer
	// is quarantined and its record dead-lettered.
	cur, err := store.Current(ctx, "dk-d")
	if err != nil {
		t.Fatal(err)
	}
	view := cur.View()
	view["d0"], view["_v"] = "!!not base64", "1000"
	if err := rt.Redis.Del(ctx, rt.Keys.Customer("dk-d")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Redis.HSet(ctx, rt.Keys.Customer("dk-d"), view).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Producer.Produce(ctx, produce("dk-d", purchase("dk-d-2", "dk-d", "o-7", 1000))); err != nil {
		t.Fatal(err)
	}
	waitFor("dk-d's record dead-lettered as corrupt_state", func() bool {
		for _, d := range deadLetters("corrupt_state") {
			if string(d.Key) == "dk-d" {
				return true
			}
		}
		return false
	})
	qs, err := state.ListQuarantined(ctx, rt.Redis, rt.Keys)
	if err != nil || len(qs) != 1 || qs[0].Customer != "dk-d" || !strings.Contains(qs[0].Reason, `field "d"`) {
		t.Fatalf("quarantine: %+v, %v", qs, err)
	}
	if got := spend(t, rt, store, "dk-a"); got != 35000 {
		t.Fatalf("dk-a's net spend %d, want 350.00", got)
	}
}
