// Package watermark keeps the pipeline's event-time clock. Every consumer reports, per input
// partition, the largest event time it has applied and whether it was caught up (its last
// record was the partition's newest). The sweeper's clock is the minimum over partitions of
// "largest event time minus the allowed lateness", where a caught-up partition counts as the
// wall clock. Live, deadlines then fire on time; in a replay of history they fire at the same
// event times as they did live, so the derived events are identical.
package watermark

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
)

// Position is what a consumer knows about one partition after a durable batch.
type Position struct {
	Topic     string
	Partition int
	// MaxEventTime is the largest occurred_at applied from the partition.
	MaxEventTime time.Time
	// CaughtUp is true when the batch's last record of the partition was its newest.
	CaughtUp bool
}

// report keeps the maximum event time per partition (a consumer taking over a partition
// after a rebalance never moves it back) and the latest caught-up flag.
var report = redisconn.NewScript("watermark-report", `
for i = 1, #ARGV, 3 do
  local field, ms, caught = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local cur = redis.call('HGET', KEYS[1], field)
  if cur then
    local prev = tonumber(string.match(cur, '^(%d+)'))
    if prev and prev > ms then ms = prev end
  end
  redis.call('HSET', KEYS[1], field, ms .. ':' .. caught)
end
return 1`)

// Tracker reads and writes the watermark hash of one namespace.
type Tracker struct {
	rdb      redis.UniversalClient
	key      string
	lateness time.Duration
}

// NewTracker returns a tracker over the hash at key.
func NewTracker(ctx context.Context, rdb redis.UniversalClient, key string, lateness time.Duration) (*Tracker, error) {
	if lateness < 0 {
		return nil, fmt.Errorf("lateness: must not be negative")
	}
	if err := report.Load(ctx, rdb); err != nil {
		return nil, err
	}
	return &Tracker{rdb: rdb, key: key, lateness: lateness}, nil
}

// Report records positions after their batch is durable.
func (t *Tracker) Report(ctx context.Context, positions []Position) error {
	if len(positions) == 0 {
		return nil
	}
	args := make([]any, 0, 3*len(positions))
	for _, p := range positions {
		caught := "0"
		if p.CaughtUp {
			caught = "1"
		}
		args = append(args, Field(p.Topic, p.Partition), p.MaxEventTime.UnixMilli(), caught)
	}
	if err := report.Run(ctx, t.rdb, []string{t.key}, args...).Err(); err != nil {
		return fmt.Errorf("reporting watermarks: %w", err)
	}
	return nil
}

// Field names a partition in the watermark hash, as Required lists it.
func Field(topic string, partition int) string { return topic + "/" + strconv.Itoa(partition) }

// Clock returns the pipeline's event-time clock given the wall clock now, and false when it is
// not known yet: no partition reported, or one of the required partitions (those that hold
// records) has not reported since it started. A partition that has not reported may hold
// events older than every other's, so evaluating before it reports would close days too
// early.
func (t *Tracker) Clock(ctx context.Context, now time.Time, required ...string) (time.Time, bool, error) {
	all, err := t.rdb.HGetAll(ctx, t.key).Result()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading watermarks: %w", err)
	}
	for _, f := range required {
		if _, ok := all[f]; !ok {
			return time.Time{}, false, nil
		}
	}
	var clock time.Time
	for _, v := range all {
		msText, caught, _ := strings.Cut(v, ":")
		ms, err := strconv.ParseInt(msText, 10, 64)
		if err != nil {
			continue
		}
		at := time.UnixMilli(ms).UTC().Add(-t.lateness)
		if caught == "1" {
			at = now
		}
		if clock.IsZero() || at.Before(clock) {
			clock = at
		}
	}
	return clock, !clock.IsZero(), nil
}
