package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
)

// EraseCustomer removes what the notifier keeps about one customer in namespace ks, for the
// GDPR erasure path: arbitration state, recent triggers, decision history, and every queued
// delivery of an action for the customer that is not yet settled (waiting for its first
// attempt or between retries), so no webhook about an erased customer goes out afterwards.
// An attempt already in flight when it runs may still complete; erasure's second pass removes
// what its settlement writes. It returns the number of keys and queued actions removed.
func EraseCustomer(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, customerID string) (int, error) {
	k := keys{ks: ks}
	removed := 0
	for _, key := range CustomerKeys(ks, customerID) {
		n, err := rdb.Del(ctx, key).Result()
		if err != nil {
			return removed, fmt.Errorf("erasing %s: %w", key, err)
		}
		removed += int(n)
	}
	shard := ks.Shard(customerID)
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
	for _, id := range actions {
		pipe := rdb.TxPipeline()
		del := pipe.HDel(ctx, pending, id, id+":a", id+":f", id+":p")
		pipe.ZRem(ctx, due, id)
		if _, err := pipe.Exec(ctx); err != nil {
			return removed, fmt.Errorf("withdrawing queued action %s: %w", id, err)
		}
		if del.Val() > 0 {
			removed++
		}
	}
	return removed, nil
}
