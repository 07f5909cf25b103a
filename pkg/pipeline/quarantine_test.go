package pipeline_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// spend is a customer's net spend over the segment window as stored, or -1 without a state.
func spend(t *testing.T, rt *wiring.Runtime, store *state.Store, id string) int64 {
	t.Helper()
	cur, err := store.Current(context.Background(), id)
	if err != nil {
		return -1
	}
	st, err := cur.State()
	if err != nil {
		return -1
	}
	v, ok := st.RFMValuesAt(scoring.DayOf(time.Now()), rt.Policy)
	if !ok {
		return -1
	}
	return int64(v.MonetaryMinor)
}

// TestACorruptCustomerStateIsQuarantinedAndTheRestOfTheBatchGoesOn corrupts two customers'
// stored states (a bad field, and a value that is not a hash at all) on real Redis, and checks
// that the next records of 30 other customers are applied, the two are quarantined with their
// records on the dead-letter topic, and a release starts one afresh.
func TestACorruptCustomerStateIsQuarantinedAndTheRestOfTheBatchGoesOn(t *testing.T) {
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

	n := 0
	buy := func(ids ...string) {
		var in []event.Input
		for _, id := range ids {
			n++
			in = append(in, event.Purchase{EventID: fmt.Sprintf("qp-%d", n), CustomerID: id, OccurredAt: time.Now().Add(-time.Minute),
				OrderID: fmt.Sprintf("qo-%d", n), Kind: event.KindPurchase, AmountMinor: 1000, Currency: "USD"})
		}
		e.produce(rt, in)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	ids := make([]string, 32)
	for i := range ids {
		ids[i] = fmt.Sprintf("q-%02d", i)
	}
	buy(ids...)
	waitFor("the first purchases", func() bool {
		for _, id := range ids {
			if spend(t, rt, store, id) != 1000 {
				return false
			}
		}
		return true
	})

	// q-00's compact state gets another format version; q-01's key is not a state anymore.
	if err := corruptFormat(ctx, rt.Redis, rt.Keys.Customer("q-00")); err != nil {
		t.Fatal(err)
	}
	if err := rt.Redis.Del(ctx, rt.Keys.Customer("q-01")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Redis.Set(ctx, rt.Keys.Customer("q-01"), "garbage", 0).Err(); err != nil {
		t.Fatal(err)
	}
	buy(ids...)
	waitFor("the 30 others' second purchases", func() bool {
		for _, id := range ids[2:] {
			if spend(t, rt, store, id) != 2000 {
				return false
			}
		}
		return true
	})
	codes := func(id string) []string {
		var out []string
		for _, ev := range dlq.snapshot() {
			if d, ok := ev.(event.DeadLetter); ok && string(d.Key) == id {
				out = append(out, d.ErrorCode)
			}
		}
		return out
	}
	waitFor("the two records on the dead-letter topic", func() bool {
		return strings.Join(codes("q-00"), ",") == "corrupt_state" && strings.Join(codes("q-01"), ",") == "corrupt_state"
	})
	qs, err := state.ListQuarantined(ctx, rt.Redis, rt.Keys)
	if err != nil || len(qs) != 2 || qs[0].Customer == qs[1].Customer || !strings.Contains(qs[0].Reason+qs[1].Reason, "not a compact state") {
		t.Fatalf("quarantine: %+v, %v", qs, err)
	}
	if kept, err := state.QuarantinedCopy(ctx, rt.Redis, rt.Keys, "q-00"); err != nil || !strings.Contains(kept[state.UnreadableField], "format 99") {
		t.Fatalf("kept copy of q-00: %v, %v", kept, err)
	}

	// While quarantined, a customer's records go to the dead-letter topic; after a release
	// the next one starts it afresh.
	buy("q-00")
	waitFor("q-00's record rejected as quarantined", func() bool { return strings.Join(codes("q-00"), ",") == "corrupt_state,quarantined" })
	if err := state.ReleaseQuarantined(ctx, rt.Redis, rt.Keys, "q-00"); err != nil {
		t.Fatal(err)
	}
	if err := state.ReleaseQuarantined(ctx, rt.Redis, rt.Keys, "q-00"); err == nil {
		t.Fatal("released twice")
	}
	buy("q-00")
	waitFor("q-00 afresh", func() bool { return spend(t, rt, store, "q-00") == 1000 })
	if qs, err := state.ListQuarantined(ctx, rt.Redis, rt.Keys); err != nil || len(qs) != 1 || qs[0].Customer != "q-01" {
		t.Fatalf("after the release: %+v, %v", qs, err)
	}
}

// corruptFormat rewrites a customer's compact value (magic byte, uvarint version, then the
// state's encoding, format byte first) with a state format no decoder knows, version kept.
func corruptFormat(ctx context.Context, rdb redisconn.Client, key string) error {
	raw, err := rdb.Get(ctx, key).Bytes()
	if err != nil {
		return err
	}
	_, n := binary.Uvarint(raw[1:])
	if n <= 0 || len(raw) <= 1+n {
		return fmt.Errorf("%s holds %x, not a compact state", key, raw)
	}
	raw[1+n] = 99
	return rdb.Set(ctx, key, raw, 0).Err()
}
