package state

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DueIn returns, per shard (in the order given), up to limit of its customers whose
// inactivity deadline is at or before until, earliest first: one pipelined round trip.
func (s *Store) DueIn(ctx context.Context, shards []int, until time.Time, limit int) ([][]string, error) {
	if len(shards) == 0 {
		return nil, nil
	}
	by := &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(until.UnixMilli(), 10), Count: int64(limit)}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(shards))
	for i, shard := range shards {
		cmds[i] = pipe.ZRangeByScore(ctx, s.keys.Deadlines(shard), by)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading due customers of %d shards: %w", len(shards), err)
	}
	out := make([][]string, len(shards))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}
