package replay_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/replay"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// liveRound is one round of live traffic: a purchase and a login for each of 20 customers,
// happening now.
func liveRound(round int) []event.Input {
	var in []event.Input
	for c := range 20 {
		id := fmt.Sprintf("cust-%02d", c)
		at := time.Now().UTC()
		in = append(in,
			event.Purchase{EventID: fmt.Sprintf("p%d-%d", round, c), CustomerID: id, OccurredAt: at, OrderID: fmt.Sprintf("o%d-%d", round, c),
				Kind: event.KindPurchase, AmountMinor: int64(9000 + 7919*(round*20+c)%90000), Currency: "USD"},
			event.Login{EventID: fmt.Sprintf("l%d-%d", round, c), CustomerID: id, OccurredAt: at.Add(time.Millisecond), Channel: event.ChannelApp})
	}
	return in
}

// TestAQuarantinedCustomerIsReleasedWithItsStateFromAReplay: the operator's path for a
// corrupt stored state. A customer's state is corrupted under live traffic, so it is
// quarantined and its records are turned away; a replay rebuilds everyone into a new
// namespace; more records arrive for the customer (turned away too); then the release from
// that replay puts the replayed state in place, applies the records that came after the
// replay, and the customer goes on live. In the end every customer's live state, the released
// one included, equals a clean replay of all the topics.
func TestAQuarantinedCustomerIsReleasedWithItsStateFromAReplay(t *testing.T) {
	// The rounds happen "now": a UTC day ending under the test would close a day in the live
	// run at another point of its history than in the replay.
	if left := time.Until(time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)); left < 3*time.Minute {
		time.Sleep(left + 5*time.Second)
	}
	e := newEnv(t)
	ctx := context.Background()
	rt, err := wiring.NewRuntime(ctx, e.config(e.live), e.log, wiring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	stop := runServices(t, rt)
	defer func() { stop() }()
	round := 0
	next := func() {
		round++
		e.produce(rt, liveRound(round))
		e.waitDone(rt)
	}
	next()
	next()

	const victim = "cust-05"
	// A compact value whose state format no decoder knows (magic byte, version, format).
	raw, err := rt.Redis.Get(ctx, rt.Keys.Customer(victim)).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	_, n := binary.Uvarint(raw[1:])
	raw[1+n] = 99
	if err := rt.Redis.Set(ctx, rt.Keys.Customer(victim), raw, 0).Err(); err != nil {
		t.Fatal(err)
	}
	next() // the victim's records of this round find the corrupt state: quarantined
	qs, err := state.ListQuarantined(ctx, rt.Redis, rt.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 || qs[0].Customer != victim {
		t.Fatalf("quarantined after the corruption: %+v, want %s alone", qs, victim)
	}

	rebuilt := testinfra.Namespace(t, "rb")
	if _, err := wiring.Replay(ctx, e.config(e.live), replay.Config{Namespace: rebuilt, Outputs: replay.OutputsNone}, e.log); err != nil {
		t.Fatal(err)
	}
	next() // after the replay's range: turned away from the quarantined victim
	next()
	tomb, err := rt.Redis.HGetAll(ctx, rt.Keys.Customer(victim)).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Of round 3, the first of the victim's two records quarantined it and the other was
	// turned away; then two rounds of two.
	if tomb[state.QuarantineMarkField] != "5" {
		t.Fatalf("the tombstone counts %q records turned away, want 5: %v", tomb[state.QuarantineMarkField], tomb)
	}

	// A namespace that is not a replay, and the live one, are refused.
	if _, err := wiring.RebuildQuarantined(ctx, e.config(e.live), false, e.live, victim, e.log); !errors.Is(err, replay.ErrReplayNotUsable) {
		t.Fatalf("a rebuild from the live namespace: %v, want ErrReplayNotUsable", err)
	}
	sum, err := wiring.RebuildQuarantined(ctx, e.config(e.live), false, rebuilt, victim, e.log)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Replayed || sum.Applied != 4 || sum.Rejected != 0 || sum.Attempts != 1 {
		t.Errorf("rebuild summary %+v, want the replayed state and 4 later records applied", sum)
	}
	if qs, err := state.ListQuarantined(ctx, rt.Redis, rt.Keys); err != nil || len(qs) != 0 {
		t.Fatalf("still quarantined after the release: %+v %v", qs, err)
	}
	if _, err := wiring.RebuildQuarantined(ctx, e.config(e.live), false, rebuilt, victim, e.log); !errors.Is(err, state.ErrNotQuarantined) {
		t.Fatalf("releasing the released customer again: %v, want ErrNotQuarantined", err)
	}
	next() // the victim is live again
	stop()
	stop = func() {}

	clean := testinfra.Namespace(t, "cl")
	if _, err := wiring.Replay(ctx, e.config(e.live), replay.Config{Namespace: clean, Outputs: replay.OutputsNone}, e.log); err != nil {
		t.Fatal(err)
	}
	liveStates, cleanStates := e.states(e.live, 20), e.states(clean, 20)
	for id, want := range cleanStates {
		if got := liveStates[id]; !maps.Equal(got, want) {
			t.Errorf("customer %s: live state after the release differs from a clean replay:\n clean %v\n live  %v", id, want, got)
		}
	}
	t.Logf("%d rounds; the released customer's later records: %+v", round, sum)
}
