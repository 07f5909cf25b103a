package state

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ShardHistogram is one shard's population histogram (or KPI counters) together with its
// earliest deadline, read atomically: a customer adds its sample of a boundary in the same
// write that moves its deadline past that boundary's closing, so while every shard's FirstDue
// is after the closing the counters of that boundary, summed over the shards, are complete.
// (A write spanning shards puts its increments into one of them, so it is the sum that is
// complete, read with every shard's deadline in one step; see Store.SpanShards.)
type ShardHistogram struct {
	// FirstDue is the shard's earliest deadline; zero when no customer has one.
	FirstDue time.Time
	// Counters is every field of the shard's histogram (all boundaries not yet dropped).
	Counters map[string]int64
}

// readHistogramLua reads shards' earliest deadlines and their counters in one step.
// KEYS: per shard its deadline zset, its counter hash and the hash's journal (journal.go).
// Returns per shard {earliest deadline ms or an empty string, flat fields, journal entries}.
const readHistogramLua = `
local out = {}
for i = 1, #KEYS, 3 do
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  out[#out + 1] = {first[2] or '', redis.call('HGETALL', KEYS[i + 1]), redis.call('XRANGE', KEYS[i + 2], '-', '+')}
end
return out`

// ReadHistograms reads every shard's histogram and earliest deadline, each shard atomically,
// all in one round trip.
func (s *Store) ReadHistograms(ctx context.Context) ([]ShardHistogram, error) {
	return s.readCounters(ctx, s.keys.Histogram, "population histograms")
}

// ReadKPI reads every shard's KPI counters (package kpi) and earliest deadline, each shard
// atomically, all in one round trip. Like a histogram boundary, a day's counters of
// end-of-day changes are complete once every shard's earliest deadline is after the day
// closes.
func (s *Store) ReadKPI(ctx context.Context) ([]ShardHistogram, error) {
	return s.readCounters(ctx, s.keys.KPI, "KPI counters")
}

func (s *Store) readCounters(ctx context.Context, key func(int) string, what string) ([]ShardHistogram, error) {
	// A write spanning shards puts its increments into one shard's counters (Store.SpanShards),
	// so then every shard is read in one atomic step; otherwise each shard's counters and
	// deadlines are, all in one round trip.
	groups := make([][]string, 0, s.keys.Shards())
	for i := range s.keys.Shards() {
		if !s.SpanShards || i == 0 {
			groups = append(groups, nil)
		}
		last := len(groups) - 1
		groups[last] = append(groups[last], s.keys.Deadlines(i), key(i), s.keys.Journal(key(i)))
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(groups))
	for i, keys := range groups {
		cmds[i] = pipe.Eval(ctx, readHistogramLua, keys)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading the %s: %w", what, err)
	}
	out := make([]ShardHistogram, 0, s.keys.Shards())
	for _, c := range cmds {
		shards, ok := c.Val().([]any)
		if !ok {
			return nil, fmt.Errorf("reading the %s: unexpected reply %v", what, c.Val())
		}
		for _, v := range shards {
			h, err := parseShardHistogram(v)
			if err != nil {
				return nil, fmt.Errorf("%s of shard %d: %w", what, len(out), err)
			}
			out = append(out, h)
		}
	}
	if len(out) != s.keys.Shards() {
		return nil, fmt.Errorf("reading the %s: %d shards in the reply, want %d", what, len(out), s.keys.Shards())
	}
	return out, nil
}

func parseShardHistogram(v any) (ShardHistogram, error) {
	parts, ok := v.([]any)
	if !ok || len(parts) != 3 {
		return ShardHistogram{}, fmt.Errorf("unexpected reply %v", v)
	}
	h := ShardHistogram{}
	if first, _ := parts[0].(string); first != "" {
		ms, err := strconv.ParseFloat(first, 64)
		if err != nil {
			return ShardHistogram{}, fmt.Errorf("deadline %q: %w", first, err)
		}
		h.FirstDue = time.UnixMilli(int64(ms)).UTC()
	}
	flat, _ := parts[1].([]any)
	h.Counters = make(map[string]int64, len(flat)/2)
	for j := 0; j+1 < len(flat); j += 2 {
		field, _ := flat[j].(string)
		text, _ := flat[j+1].(string)
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return ShardHistogram{}, fmt.Errorf("field %q holds %q: %w", field, text, err)
		}
		h.Counters[field] += n
	}
	entries, _ := parts[2].([]any)
	for _, e := range entries {
		entry, _ := e.([]any)
		if len(entry) != 2 {
			return ShardHistogram{}, fmt.Errorf("counter journal entry %v", e)
		}
		flat, _ := entry[1].([]any)
		if err := addEntry(h.Counters, flat); err != nil {
			return ShardHistogram{}, fmt.Errorf("counter journal entry %v: %w", entry[0], err)
		}
	}
	return h, nil
}

// DropHistogramFields deletes counters from a shard's histogram (those of sealed boundaries).
func (s *Store) DropHistogramFields(ctx context.Context, shard int, fields []string) error {
	if len(fields) == 0 {
		return nil
	}
	// Their increments still in the journal go into the hash first, to be dropped with it
	// (a sealed boundary gets no more: its samples were complete when it was sealed).
	if err := s.foldAll(ctx, s.keys.Histogram(shard)); err != nil {
		return err
	}
	if err := s.rdb.HDel(ctx, s.keys.Histogram(shard), fields...).Err(); err != nil {
		return fmt.Errorf("dropping histogram counters of shard %d: %w", shard, err)
	}
	return nil
}

// FirstDue returns the earliest deadline of all shards (zero when no customer has one), in
// one pipelined round trip: the cheap check before ReadHistograms, which also returns each
// shard's earliest deadline, read atomically with its counters.
func (s *Store) FirstDue(ctx context.Context) (time.Time, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.ZSliceCmd, s.keys.Shards())
	for i := range cmds {
		cmds[i] = pipe.ZRangeWithScores(ctx, s.keys.Deadlines(i), 0, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return time.Time{}, fmt.Errorf("reading the earliest deadlines: %w", err)
	}
	var first time.Time
	for _, c := range cmds {
		if z := c.Val(); len(z) > 0 {
			if due := time.UnixMilli(int64(z[0].Score)).UTC(); first.IsZero() || due.Before(first) {
				first = due
			}
		}
	}
	return first, nil
}
