package notifier_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
)

// TestErasingACustomerWithdrawsTheirQueuedDeliveries: an action waiting for a retry carries
// the customer's data in the delivery queue; erasure removes it with the rest of the
// notifier's keys, so no webhook about the erased customer goes out afterwards, while another
// customer's queued action is left alone.
func TestErasingACustomerWithdrawsTheirQueuedDeliveries(t *testing.T) {
	in := newInfra(t)
	def := notifier.DefaultRules()
	victim, other := treated(def, "erased"), treated(def, "kept")
	e := newEnv(t, in, nil, func(r received, nth int) int {
		if r.Parsed.CustomerID == other && nth >= 2 {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable // every attempt fails: the action stays queued
	})
	cfg := e.cfg
	cfg.Delivery.MaxAttempts, cfg.Delivery.BackoffBase, cfg.Delivery.BackoffMax = 10, time.Second, time.Second
	e.start(e.rt, cfg)
	up := func(id string) event.TierChanged {
		return tier(id, "up-"+id, event.TierSilver, event.TierGold, event.DirectionUp, t0)
	}
	// A rise to HIGH ten days on, past the cooldown: a win-back, an uplift exposure waiting
	// for its outcome.
	rise := func(id string) event.ChurnRiskChanged {
		return churn(id, "rise-"+id, event.ChurnMedium, event.ChurnHigh, t0.AddDate(0, 0, 10))
	}
	e.produce(up(victim), up(other), rise(victim), rise(other))
	ctx := context.Background()
	exposed := func(id string) (members []string) {
		key := e.rt.Deployment.ShardKey("notify-expo", e.rt.Keys.Shard(id)) // its shard's exposures
		for _, m := range e.rt.Redis.ZRange(ctx, key, 0, -1).Val() {
			if strings.HasSuffix(m, "|"+id) {
				members = append(members, key+" "+m)
			}
		}
		return members
	}
	waitFor(t, 30*time.Second, "the first attempts and the win-backs' exposures", func() bool {
		return len(e.deliveriesFor(victim)) >= 1 && len(e.deliveriesFor(other)) >= 1 && len(exposed(victim)) == 2 && len(exposed(other)) == 2
	})

	// Erasing the notifier's state alone (the suppression list, which the erasure path sets
	// first, is not under test here) holds only once the triggers are committed: a batch
	// handled but not yet committed is redelivered after a rebalance, and would decide the
	// erased customer's actions afresh. Under a loaded -race run that happened.
	waitFor(t, 30*time.Second, "the notifier's commits of the four triggers", func() bool {
		for _, topic := range []string{e.rt.Topic(event.TopicTierChanges), e.rt.Topic(event.TopicChurnRisk)} {
			end, err1 := e.rt.Admin.EndOffsets(ctx, topic)
			committed, err2 := e.rt.Admin.GroupOffsets(ctx, notifier.GroupID(e.rt.Deployment), topic)
			if err1 != nil || err2 != nil {
				return false
			}
			for p, off := range end {
				if committed[p] < off {
					return false
				}
			}
		}
		return true
	})
	removed, err := notifier.EraseCustomer(ctx, e.rt.Redis, e.rt.Deployment, e.rt.Keys, victim)
	if err != nil {
		t.Fatal(err)
	}
	if removed < 2 { // at least the arbitration state and the queued action
		t.Errorf("removed %d keys and queued actions, want the customer's state and queued action", removed)
	}
	attempts := len(e.deliveriesFor(victim))
	waitFor(t, 30*time.Second, "the other customer's retry", func() bool { return len(e.deliveriesFor(other)) >= 2 })
	time.Sleep(2 * cfg.Delivery.BackoffMax) // the victim's retry would have come by now
	if got := len(e.deliveriesFor(victim)); got > attempts+1 {
		// One attempt may already have been claimed when erasure ran; none may follow it.
		t.Errorf("%d webhook attempts for the erased customer after erasure", got-attempts)
	}
	var leftovers []string
	iter := e.rt.Redis.Scan(ctx, 0, e.rt.Deployment.Global("notify*"), 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		if strings.Contains(key, victim) {
			leftovers = append(leftovers, key)
			continue
		}
		if strings.Contains(key, "notify-pending:") {
			for field, value := range e.rt.Redis.HGetAll(ctx, key).Val() {
				if strings.Contains(value, victim) {
					leftovers = append(leftovers, key+" "+field)
				}
			}
		}
	}
	leftovers = append(leftovers, exposed(victim)...)
	if len(leftovers) > 0 {
		t.Errorf("the notifier still holds the erased customer: %v", leftovers)
	}
	if len(exposed(other)) != 2 {
		t.Errorf("erasure took another customer's exposures: %v left", exposed(other))
	}
}
