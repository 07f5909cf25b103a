package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
)

// Backlog is the work a namespace has queued: derived events in the outbox not yet relayed,
// and the customers' scheduled inactivity deadlines.
type Backlog struct {
	// OutboxDepth counts outbox entries over every shard; OutboxOldest is the append time of
	// the oldest one (zero when the outbox is empty).
	OutboxDepth  int64
	OutboxOldest time.Time
	// DeadlinesScheduled counts every scheduled deadline, DeadlinesDue those at or before the
	// wall clock, and DeadlinesPastWatermark those at or before the watermark (the ones the
	// sweeper fires next; 0 when the watermark is zero).
	DeadlinesScheduled     int64
	DeadlinesDue           int64
	DeadlinesPastWatermark int64
}

// ReadBacklog sums every shard's outbox stream and deadline set in one pipeline. Outbox
// entries have Redis-assigned ids, whose first part is the append time in milliseconds.
func ReadBacklog(ctx context.Context, rdb redisconn.Client, keys keyspace.Keyspace, now, watermark time.Time) (Backlog, error) {
	pipe := rdb.Pipeline()
	n := keys.Shards()
	lens, oldest := make([]*redis.IntCmd, n), make([]*redis.XMessageSliceCmd, n)
	all, due, late := make([]*redis.IntCmd, n), make([]*redis.IntCmd, n), make([]*redis.IntCmd, n)
	for s := range n {
		lens[s] = pipe.XLen(ctx, keys.Outbox(s))
		oldest[s] = pipe.XRangeN(ctx, keys.Outbox(s), "-", "+", 1)
		all[s] = pipe.ZCard(ctx, keys.Deadlines(s))
		due[s] = pipe.ZCount(ctx, keys.Deadlines(s), "-inf", strconv.FormatInt(now.UnixMilli(), 10))
		if !watermark.IsZero() {
			late[s] = pipe.ZCount(ctx, keys.Deadlines(s), "-inf", strconv.FormatInt(watermark.UnixMilli(), 10))
		}
	}
	var b Backlog
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return b, fmt.Errorf("reading outbox and deadlines: %w", err)
	}
	var first int64
	for s := range n {
		b.OutboxDepth += lens[s].Val()
		b.DeadlinesScheduled += all[s].Val()
		b.DeadlinesDue += due[s].Val()
		if late[s] != nil {
			b.DeadlinesPastWatermark += late[s].Val()
		}
		if msgs := oldest[s].Val(); len(msgs) > 0 {
			ms, err := strconv.ParseInt(strings.SplitN(msgs[0].ID, "-", 2)[0], 10, 64)
			if err != nil {
				return b, fmt.Errorf("outbox entry id %q: %w", msgs[0].ID, err)
			}
			if first == 0 || ms < first {
				first = ms
			}
		}
	}
	if first > 0 {
		b.OutboxOldest = time.UnixMilli(first)
	}
	return b, nil
}
