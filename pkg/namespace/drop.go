package namespace

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// DeleteKeys deletes every key of a namespace (SCAN + UNLINK on every master) and returns how
// many it deleted. The caller makes sure the namespace is not live. Each key is unlinked on
// its own (pipelined): a master of a Redis Cluster refuses one UNLINK of keys in several slots.
func DeleteKeys(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) (int64, error) {
	var deleted atomic.Int64
	err := state.ForEachMaster(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, keys.Prefix()+"*", 1000).Iterator()
		var batch []string
		unlink := func() error {
			pipe := c.Pipeline()
			cmds := make([]*redis.IntCmd, len(batch))
			for i, k := range batch {
				cmds[i] = pipe.Unlink(ctx, k)
			}
			_, err := pipe.Exec(ctx)
			for _, cmd := range cmds {
				deleted.Add(cmd.Val())
			}
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := unlink(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		if len(batch) > 0 {
			return unlink()
		}
		return nil
	})
	if err != nil {
		return deleted.Load(), fmt.Errorf("dropping namespace %s: %w", keys.Namespace(), err)
	}
	return deleted.Load(), nil
}

// ReplayMetadata returns the metadata (JSON) of the replay that builds the namespace, if any.
func ReplayMetadata(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) ([]byte, bool, error) {
	b, err := rdb.Get(ctx, keys.Replay()).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading replay metadata: %w", err)
	}
	return b, true, nil
}

// StoreReplayMetadata records the metadata (JSON) of the replay that builds the namespace.
func StoreReplayMetadata(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, b []byte) error {
	if err := rdb.Set(ctx, keys.Replay(), b, 0).Err(); err != nil {
		return fmt.Errorf("storing replay metadata: %w", err)
	}
	return nil
}

// DropOutboxes deletes the namespace's outbox streams (every shard's).
func DropOutboxes(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) error {
	for s := range keys.Shards() {
		if err := rdb.Del(ctx, keys.Outbox(s)).Err(); err != nil {
			return fmt.Errorf("dropping the outbox of shard %d: %w", s, err)
		}
	}
	return nil
}
