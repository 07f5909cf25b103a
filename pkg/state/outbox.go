package state

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
)

// OutboxDepths returns the number of entries waiting in each outbox shard of the namespace
// (one pipelined XLEN per shard).
func OutboxDepths(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) ([]int64, error) {
	pipe := rdb.Pipeline()
	lens := make([]*redis.IntCmd, keys.Shards())
	for s := range lens {
		lens[s] = pipe.XLen(ctx, keys.Outbox(s))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading the outbox depths: %w", err)
	}
	out := make([]int64, len(lens))
	for s, l := range lens {
		out[s] = l.Val()
	}
	return out, nil
}
