package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
)

// EraseCustomer removes what the notifier keeps about one customer in deployment d, whose
// namespaces have ks's shard count, for the GDPR erasure path: arbitration state, recent triggers, decision history, uplift exposures waiting for an outcome, and every queued
// delivery of an action for the customer that is not yet settled (waiting for its first
// attempt or between retries), so no webhook about an erased customer goes out afterwards.
// An attempt already in flight when it runs may still complete; erasure's second pass removes
// what its settlement writes. It returns the number of keys and queued actions removed.
func EraseCustomer(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment, ks keyspace.Keyspace, customerID string) (int, error) {
	k := keys{ks: ks, d: d}
	// One DEL: the customer's keys share its shard's hash tag, so one slot on a cluster too.
	n, err := rdb.Del(ctx, CustomerKeys(ks, d, customerID)...).Result()
	if err != nil {
		return 0, fmt.Errorf("erasing the notifier's keys: %w", err)
	}
	removed := int(n)
	shard := ks.Shard(customerID)
	// Its uplift exposures still waiting for an outcome name it; the settled counters do not.
	var exposed []any
	glob := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(customerID)
	zi := rdb.ZScan(ctx, k.exposures(shard), 0, "*|"+glob, 500).Iterator()
	for zi.Next(ctx) {
		if m := zi.Val(); strings.HasSuffix(m, "|"+customerID) {
			exposed = append(exposed, m)
		}
		zi.Next(ctx) // the score
	}
	if err := zi.Err(); err != nil {
		return removed, fmt.Errorf("scanning the uplift exposures: %w", err)
	}
	if len(exposed) > 0 {
		if err := rdb.ZRem(ctx, k.exposures(shard), exposed...).Err(); err != nil {
			return removed, fmt.Errorf("removing the uplift exposures: %w", err)
		}
		removed += len(exposed)
	}
	pending, due := k.pending(shard), k.due(shard)
	var actions []string
	iter := rdb.HScan(ctx, pending, 0, "*", 500).Iterator()
	for iter.Next(ctx) {
		field := iter.Val()
		if !iter.Next(ctx) {
			break
		}
		if strings.Contains(field, ":") {
			continue // an attempt counter or flag, not a payload
		}
		var a pendingAction
		if err := json.Unmarshal([]byte(iter.Val()), &a); err == nil && a.CustomerID == customerID {
			actions = append(actions, field)
		}
	}
	if err := iter.Err(); err != nil {
		return removed, fmt.Errorf("scanning queued deliveries: %w", err)
	}
	if len(actions) == 0 {
		return removed, nil
	}
	// The claim script drops a due id whose payload is gone, so the order of the two
	// commands does not matter; MULTI keeps a claimer from seeing half of it.
	pipe := rdb.TxPipeline()
	members := make([]any, len(actions))
	for i, id := range actions {
		pipe.HDel(ctx, pending, id, id+":a", id+":f", id+":p")
		members[i] = id
	}
	pipe.ZRem(ctx, due, members...)
	if _, err := pipe.Exec(ctx); err != nil {
		return removed, fmt.Errorf("withdrawing %d queued actions: %w", len(actions), err)
	}
	return removed + len(actions), nil
}
