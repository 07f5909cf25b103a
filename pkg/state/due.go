package state

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Due returns up to limit customers of a shard whose inactivity deadline is at or before
// until, earliest first.
func (s *Store) Due(ctx context.Context, shard int, until time.Time, limit int) ([]string, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, s.keys.Deadlines(shard), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(until.UnixMilli(), 10), Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("reading due customers of shard %d: %w", shard, err)
	}
	return ids, nil
}
