// Package watermark keeps the pipeline's event-time watermark: one clock for the three input
// topics, the minimum over every input partition of that partition's position.
//
// A partition's position is the event time before which no more of its records are expected:
//   - the largest event time its consumer has applied, or the earliest event time of the
//     records it holds but has not applied yet (a paused consumer reports those, so that the
//     partitions it waits for can move on);
//   - while its consumer heartbeats that it is caught up (it has applied everything up to the
//     partition's end), the wall clock of that heartbeat minus the allowed lateness.
//
// A consumer that is gone stops heartbeating, so its partitions hold the watermark where they
// were: late results beat wrong ones. A partition with no records never reports and never
// holds the watermark back. The scoring core closes a day once the watermark has passed the
// day's end plus the allowed lateness (scoring.Close); everything that closes days (the
// consumers before they apply, the sweeper) reads the same watermark, so what they close is a
// function of the input history, whichever runs first.
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

// Position is what a consumer knows about one partition after a durable batch, or about the
// records it holds while paused.
type Position struct {
	Topic     string
	Partition int
	// MaxEventTime is the largest occurred_at applied from the partition, or the earliest
	// occurred_at of the records held but not applied yet.
	MaxEventTime time.Time
	// CaughtUp is true when the batch's last record of the partition was its newest.
	CaughtUp bool
}

// report keeps, per partition, the largest event time and the latest caught-up heartbeat
// (both in Unix milliseconds, "ms:heartbeat"); neither ever moves back, so a consumer taking
// over a partition after a rebalance cannot move the watermark back. Values written before
// heartbeats existed ("ms:0", "ms:1") read as a heartbeat at the epoch.
var report = redisconn.NewScript("watermark-report", `
for i = 1, #ARGV, 3 do
  local field, ms, hb = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local cur = redis.call('HGET', KEYS[1], field)
  if cur then
    local pms, phb = string.match(cur, '^(%d+):?(%d*)')
    pms, phb = tonumber(pms), tonumber(phb)
    if pms and pms > ms then ms = pms end
    if phb and phb > hb then hb = phb end
  end
  redis.call('HSET', KEYS[1], field, string.format('%d:%d', ms, hb))
end
return 1`)

// Tracker reads and writes the watermark hash of one namespace.
type Tracker struct {
	rdb      redis.UniversalClient
	key      string
	lateness time.Duration
}

// NewTracker returns a tracker over the hash at key; lateness is the policy's allowed
// lateness, which a caught-up partition's heartbeat is counted less.
func NewTracker(ctx context.Context, rdb redis.UniversalClient, key string, lateness time.Duration) (*Tracker, error) {
	if lateness < 0 {
		return nil, fmt.Errorf("lateness: must not be negative")
	}
	if err := report.Load(ctx, rdb); err != nil {
		return nil, err
	}
	return &Tracker{rdb: rdb, key: key, lateness: lateness}, nil
}

// Report records positions after their batch is durable; a caught-up position also counts
// as a heartbeat at now.
func (t *Tracker) Report(ctx context.Context, positions []Position, now time.Time) error {
	if len(positions) == 0 {
		return nil
	}
	args := make([]any, 0, 3*len(positions))
	for _, p := range positions {
		hb := int64(0)
		if p.CaughtUp {
			hb = now.UnixMilli()
		}
		args = append(args, Field(p.Topic, p.Partition), max(p.MaxEventTime.UnixMilli(), 0), hb)
	}
	if err := report.Run(ctx, t.rdb, []string{t.key}, args...).Err(); err != nil {
		return fmt.Errorf("reporting watermarks: %w", err)
	}
	return nil
}

// Heartbeat records that the consumer of each field (watermark.Field) was caught up at the
// wall-clock time at: it had applied every record of the partition that existed then.
func (t *Tracker) Heartbeat(ctx context.Context, fields []string, at time.Time) error {
	if len(fields) == 0 {
		return nil
	}
	args := make([]any, 0, 3*len(fields))
	for _, f := range fields {
		args = append(args, f, 0, at.UnixMilli())
	}
	if err := report.Run(ctx, t.rdb, []string{t.key}, args...).Err(); err != nil {
		return fmt.Errorf("heartbeating watermarks: %w", err)
	}
	return nil
}

// Field names a partition in the watermark hash, as Required lists it.
func Field(topic string, partition int) string { return topic + "/" + strconv.Itoa(partition) }

// Reading is the watermark and the partition that holds it.
type Reading struct {
	// At is the watermark: the minimum of the partitions' positions.
	At time.Time
	// Holder is the partition (watermark.Field) whose position is the watermark.
	Holder string
	// Known is false when no partition has reported, or one of the required partitions
	// (those that hold records) has not reported since it started: it may hold events
	// older than every other's, so closing days before it reports could close them early.
	Known bool
	// Positions is every partition's position.
	Positions map[string]time.Time
}

// Read returns the watermark.
func (t *Tracker) Read(ctx context.Context, required ...string) (Reading, error) {
	all, err := t.rdb.HGetAll(ctx, t.key).Result()
	if err != nil {
		return Reading{}, fmt.Errorf("reading watermarks: %w", err)
	}
	r := Reading{Positions: make(map[string]time.Time, len(all))}
	for f, v := range all {
		at, err := t.position(v)
		if err != nil {
			return Reading{}, fmt.Errorf("reading watermarks: partition %s: %w", f, err)
		}
		r.Positions[f] = at
		if r.Holder == "" || at.Before(r.At) || (at.Equal(r.At) && f < r.Holder) {
			r.At, r.Holder = at, f
		}
	}
	r.Known = r.Holder != ""
	for _, f := range required {
		if _, ok := all[f]; !ok {
			r.Known = false
		}
	}
	return r, nil
}

// position decodes one partition's stored value.
func (t *Tracker) position(v string) (time.Time, error) {
	msText, hbText, _ := strings.Cut(v, ":")
	ms, err := strconv.ParseInt(msText, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad value %q", v)
	}
	at := time.UnixMilli(ms).UTC()
	if hbText != "" {
		hb, err := strconv.ParseInt(hbText, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("bad value %q", v)
		}
		if beat := time.UnixMilli(hb).UTC().Add(-t.lateness); hb > 1 && beat.After(at) {
			at = beat
		}
	}
	return at, nil
}

// Clock returns the watermark, and false when it is not known yet (see Reading.Known).
func (t *Tracker) Clock(ctx context.Context, required ...string) (time.Time, bool, error) {
	r, err := t.Read(ctx, required...)
	if err != nil || !r.Known {
		return time.Time{}, false, err
	}
	return r.At, true, nil
}
