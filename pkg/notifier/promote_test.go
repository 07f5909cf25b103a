package notifier_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// TestAPromoteAndADropNeitherResendNorOrphanAnAction is issue 11's promote test, with the
// services running and traffic flowing: triggers keep arriving while the deployment promotes
// another namespace, the services on the old one stop (its relay first, the worst order) and
// new ones start on the promoted one, and the old namespace is then dropped. Some receivers
// fail until after the promote, so their actions wait in the delivery queue across it.
//
// Every customer must get exactly one action, answered 2xx exactly once (nothing decided or
// sent before the promote is decided or sent again), the queued actions must be delivered by
// the promoted notifier (nothing orphaned), every action must end SENT on the actions topic,
// and the cooldown must still hold for a customer after the drop.
func TestAPromoteAndADropNeitherResendNorOrphanAnAction(t *testing.T) {
	in := newInfra(t)
	var healed atomic.Bool
	failing := map[string]bool{}
	e := newEnv(t, in, nil, func(r received, _ int) int {
		if failing[r.Parsed.CustomerID] && !healed.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := e.cfg
	cfg.Delivery.MaxAttempts, cfg.Delivery.BackoffBase, cfg.Delivery.BackoffMax = 50, 200*time.Millisecond, 400*time.Millisecond
	def := notifier.DefaultRules()
	const n = 48
	customers := make([]string, n)
	for i := range customers {
		customers[i] = treated(def, fmt.Sprintf("promote%d", i))
	}
	for _, id := range customers[:6] {
		failing[id] = true // their receivers answer 503 until after the promote
	}
	upgrade := func(id string) event.TierChanged {
		return tier(id, "promote-up-"+id, event.TierSilver, event.TierGold, event.DirectionUp, t0)
	}

	stopOldNotifier := e.start(e.rt, cfg)
	// Traffic: one upgrade every 20 ms, before, during and after the promote.
	var wg sync.WaitGroup
	var produced atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, id := range customers {
			e.produce(upgrade(id))
			produced.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	waitFor(t, 60*time.Second, "half the traffic and the first deliveries", func() bool {
		return produced.Load() >= n/2 && len(e.hook.requests()) >= n/4
	})

	// The promote, as a supervisor sees it: the pointer moves, the old services exit (the
	// relay first), new ones start on the promoted namespace.
	ctx := context.Background()
	promoted := testinfra.Namespace(t, "ns")
	if err := namespace.Activate(ctx, e.rt.Redis, e.rt.Deployment, e.rt.Keys.Namespace(), promoted); err != nil {
		t.Fatal(err)
	}
	old := e.rt.Keys
	e.stopRelay()
	stopOldNotifier()
	rt := e.runtimeIn(promoted)
	e.goRun("relay", func(ctx context.Context) error { return wiring.RunRelay(ctx, rt, nil) })
	e.start(rt, cfg)
	healed.Store(true)
	wg.Wait()

	for _, id := range customers {
		want := notifier.ActionID("promote-up-"+id, event.ActionVIPWelcome)
		waitFor(t, 60*time.Second, "the delivery to "+id, func() bool {
			for _, h := range e.deliveriesFor(id) {
				if h.Status == http.StatusOK {
					return true
				}
			}
			return false
		})
		waitFor(t, 30*time.Second, "the SENT record of "+id, func() bool {
			for _, r := range e.recordsFor(id) {
				if r.ActionID == want && r.Outcome == event.OutcomeSent {
					return true
				}
			}
			return false
		})
	}
	// A repeat of a trigger decided before the promote, and a new upgrade inside the cooldown
	// for a customer served before it, after the old namespace is gone.
	if _, err := namespace.DeleteKeys(ctx, e.rt.Redis, old); err != nil {
		t.Fatal(err)
	}
	if err := namespace.Forget(ctx, e.rt.Redis, e.rt.Deployment, old.Namespace()); err != nil {
		t.Fatal(err)
	}
	first := customers[0]
	e.produce(upgrade(first), tier(first, "promote-again-"+first, event.TierGold, event.TierPlatinum, event.DirectionUp, t0.Add(time.Hour)))
	waitFor(t, 30*time.Second, "the cooldown decision after the drop", func() bool {
		for _, r := range e.recordsFor(first) {
			if r.TriggerEventID == "promote-again-"+first {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second) // any webhook the repeat would cause has had time to arrive

	for _, id := range customers {
		want := notifier.ActionID("promote-up-"+id, event.ActionVIPWelcome)
		ok := 0
		for _, h := range e.deliveriesFor(id) {
			if h.Key != want {
				t.Errorf("customer %s: a delivery with key %s, want only %s", id, h.Key, want)
			}
			if h.Status == http.StatusOK {
				ok++
			}
		}
		if ok != 1 {
			t.Errorf("customer %s: %d deliveries answered 200, want exactly 1", id, ok)
		}
	}
	for _, r := range e.recordsFor(first) {
		if r.TriggerEventID == "promote-again-"+first && (r.Outcome != event.OutcomeSuppressed || r.Reason != "cooldown") {
			t.Errorf("an upgrade inside the cooldown after the promote and the drop: %s %s, want SUPPRESSED cooldown", r.Outcome, r.Reason)
		}
	}
	entries, err := notifier.History(ctx, rt.Redis, rt.Keys, rt.Deployment, first, 50)
	if err != nil || len(entries) < 3 {
		t.Errorf("decision history of %s after the drop: %d entries (%v), want the whole history", first, len(entries), err)
	}
}

// TestTheNotifierAdoptsTheStateAnEarlierVersionKeptInTheNamespace: a deployment upgraded from a
// version that kept the notifier's keys and consumer group per namespace keeps its decisions,
// queue and position: the keys move to the deployment once, the group starts where the old one
// stopped, and a second start changes nothing.
func TestTheNotifierAdoptsTheStateAnEarlierVersionKeptInTheNamespace(t *testing.T) {
	in := newInfra(t)
	e := newEnv(t, in, nil, nil)
	ctx := context.Background()
	ks, d, rdb := e.rt.Keys, e.rt.Deployment, e.rt.Redis
	id := "adopted-customer"
	shard := ks.Shard(id)
	oldKeys := map[string]string{
		ks.CustomerKey("notify-log", id):    d.CustomerKey("notify-log", shard, id),
		ks.ShardKey("notify-due", shard):    d.ShardKey("notify-due", shard),
		ks.CustomerKey("notify-trig", id):   d.CustomerKey("notify-trig", shard, id),
		ks.ShardKey("notify-pending", 0):    d.ShardKey("notify-pending", 0),
		ks.CustomerKey("notify", id):        d.CustomerKey("notify", shard, id),
		ks.Global("notifier:clv-threshold"): ks.Global("notifier:clv-threshold"), // the namespace's own
	}
	for from := range oldKeys {
		if err := rdb.Set(ctx, from, "v-"+from, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	topic := e.rt.Topic(event.TopicTierChanges)
	if err := e.rt.Admin.EnsureTopics(ctx, stream.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	oldGroup := "loyalty-" + ks.Namespace() + "-" + notifier.Service
	if err := e.rt.Admin.CommitGroupOffsets(ctx, oldGroup, topic, stream.Offsets{0: 0, 1: 0}); err != nil {
		t.Fatal(err)
	}
	group := notifier.GroupID(d)
	a, err := notifier.Adopt(ctx, rdb, e.rt.Admin, ks, d, group, []string{topic}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	if a.Keys != 5 || len(a.Kept) != 0 || len(a.Offsets) != 1 {
		t.Errorf("adoption %+v, want 5 keys moved, none kept, the offsets of %s", a, topic)
	}
	for from, to := range oldKeys {
		if got := rdb.Get(ctx, to).Val(); got != "v-"+from {
			t.Errorf("%s holds %q after the adoption, want the value of %s", to, got, from)
		}
	}
	if offs, err := e.rt.Admin.GroupOffsets(ctx, group, topic); err != nil || len(offs) != 2 {
		t.Errorf("group %s offsets %v (%v), want the two partitions of %s", group, offs, err, oldGroup)
	}
	// A key written under the old name again (an old notifier still running) is not taken.
	stale := ks.CustomerKey("notify", id)
	rdb.Set(ctx, stale, "late", 0)
	again, err := notifier.Adopt(ctx, rdb, e.rt.Admin, ks, d, group, []string{topic}, e.log)
	if err != nil || again.Keys != a.Keys || !again.At.Equal(a.At) {
		t.Errorf("second adoption %+v (%v), want the first one's record %+v", again, err, a)
	}
	if got := rdb.Get(ctx, d.CustomerKey("notify", shard, id)).Val(); got != "v-"+stale {
		t.Errorf("the deployment's key was overwritten by a later adoption: %q", got)
	}
}
