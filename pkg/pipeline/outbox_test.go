package pipeline_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// TestTheOutboxIsBoundedAndTheConsumersPauseUntilTheRelayDrainsIt: with the relay down, the
// consumers derive until the outboxes hold OUTBOX_MAX_ENTRIES, then pause (their batches fail
// uncommitted and are retried) instead of growing Redis without end; once the relay runs,
// everything is applied and published.
func TestTheOutboxIsBoundedAndTheConsumersPauseUntilTheRelayDrainsIt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const bound, batch, customers = 1000, 100, 2500
	rt := e.runtimeWith(ctx, e.ns, false, map[string]string{"OUTBOX_MAX_ENTRIES": fmt.Sprint(bound), "BATCH_SIZE": fmt.Sprint(batch)})
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	inputs := make([]event.Input, customers)
	for i := range inputs {
		id := fmt.Sprintf("ob-%d", i)
		// Far above every tier threshold: at least one derived event (the upgrade) each.
		inputs[i] = event.Purchase{EventID: id + "-p", CustomerID: id, OccurredAt: at, OrderID: "o-" + id,
			Kind: event.KindPurchase, AmountMinor: 10_000_000, Currency: rt.Policy.Currency}
	}
	e.produce(rt, inputs)

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil && runCtx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	run("purchases", func(ctx context.Context) error {
		return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: "purchases", Topics: []string{event.TopicPurchases}})
	})
	depth := func() int64 {
		d, err := state.OutboxDepths(ctx, rt.Redis, rt.Keys)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, x := range d {
			n += x
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for depth() < bound {
		if time.Now().After(deadline) {
			t.Fatalf("the outbox reached %d entries in a minute, want the bound %d", depth(), bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Paused: a few more seconds of consuming add at most the batches already past the check.
	time.Sleep(3 * time.Second)
	held := depth()
	applied := countCustomers(t, rt)
	t.Logf("relay down: %d entries waiting (bound %d), %d of %d customers applied", held, bound, applied, customers)
	if held > bound+2*batch*3 { // a batch of 100 records derives a few events each at most
		t.Errorf("%d entries waiting with the relay down, want the consumer paused near the bound %d", held, bound)
	}
	if applied >= customers {
		t.Errorf("every customer was applied with the relay down: the bound held nothing back")
	}

	run("relay", func(ctx context.Context) error { return wiring.RunRelay(ctx, rt, nil) })
	deadline = time.Now().Add(90 * time.Second)
	for countCustomers(t, rt) < customers || depth() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the relay started: %d of %d customers applied, %d entries waiting", countCustomers(t, rt), customers, depth())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countCustomers counts the customers with a stored state in rt's namespace, on every master.
func countCustomers(t *testing.T, rt *wiring.Runtime) int {
	t.Helper()
	var n atomic.Int64
	if err := state.ForEachCustomer(context.Background(), rt.Redis, rt.Keys, func(string, state.Current) { n.Add(1) }); err != nil {
		t.Fatal(err)
	}
	return int(n.Load())
}
