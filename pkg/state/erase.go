package state

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
)

// EraseCustomer removes what the store keeps about a customer in a namespace: the state
// hash (and a quarantined copy), its transition list, the inactivity deadline and the outbox entries not yet published (they carry the
// customer's data). It returns how many keys and entries it removed.
func EraseCustomer(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, id string) (int, error) {
	shard := keys.Shard(id)
	n, err := rdb.Del(ctx, keys.Customer(id), keys.CustomerKey("q", id), keys.Transitions(id)).Result()
	if err != nil {
		return 0, fmt.Errorf("deleting the state: %w", err)
	}
	removed := int(n)
	n, err = rdb.HDel(ctx, quarantineIndex(keys, shard), id).Result()
	if err != nil {
		return removed, fmt.Errorf("removing the quarantine entry: %w", err)
	}
	removed += int(n)
	n, err = rdb.ZRem(ctx, keys.Deadlines(shard), id).Result()
	if err != nil {
		return removed, fmt.Errorf("removing the deadline: %w", err)
	}
	removed += int(n)
	start := "-"
	for {
		entries, err := rdb.XRangeN(ctx, keys.Outbox(shard), start, "+", 1000).Result()
		if err != nil {
			return removed, fmt.Errorf("reading the outbox: %w", err)
		}
		var ids []string
		for _, e := range entries {
			if k, _ := e.Values["k"].(string); k == id {
				ids = append(ids, e.ID)
			}
		}
		if len(ids) > 0 {
			n, err := rdb.XDel(ctx, keys.Outbox(shard), ids...).Result()
			if err != nil {
				return removed, fmt.Errorf("deleting outbox entries: %w", err)
			}
			removed += int(n)
		}
		if len(entries) < 1000 {
			return removed, nil
		}
		start = "(" + entries[len(entries)-1].ID
	}
}
