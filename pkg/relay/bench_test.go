package relay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/relay"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// BenchmarkPass drains 5,000 outbox entries shaped like the pipeline's (topic, key, event
// id, a 200-byte Avro value, source time) from 64 shards to a publisher that keeps nothing.
// It reports the client's time per entry published (ns/entry; ns/op is a round of 5,000) and
// Redis's CPU per entry (redis-µs/entry, INFO cpu, over the passes only): the fenced read and
// the fenced delete. With the read in a Lua script (before MULTI/EXEC), three runs gave
// 8.9–11.1 redis-µs/entry and 11–17.5 µs per entry on the client; with MULTI/EXEC 2.7–4.0 and
// 4.6–7.4.
func BenchmarkPass(b *testing.B) {
	rdb := testinfra.RedisClient(b)
	keys, err := keyspace.New(testinfra.Name("relaybench"), keyspace.DefaultShards)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	r, err := relay.New(ctx, relay.Config{}, rdb, keys, &memoryPublisher{}, nil, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	const entries = 5000
	value := strings.Repeat("v", 200)
	var redisSeconds float64
	published := 0
	for round := 0; b.Loop(); round++ {
		b.StopTimer()
		pipe := rdb.Pipeline()
		for i := range entries {
			shard := i % keyspace.DefaultShards
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: keys.Outbox(shard), Values: []any{
				"t", "loyalty.segment-changes.v1", "k", fmt.Sprintf("c%d", i), "id", fmt.Sprintf("c%d-%d", i, round),
				"v", value, "st", time.Now().UnixMilli()}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		cpu0 := testinfra.RedisCPUSeconds(b, rdb)
		b.StartTimer()
		for left := entries; left > 0; {
			n, err := r.Pass(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				b.Fatalf("a pass published nothing with %d entries left", left)
			}
			left -= n
			published += n
		}
		b.StopTimer()
		redisSeconds += testinfra.RedisCPUSeconds(b, rdb) - cpu0
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(published), "ns/entry")
	b.ReportMetric(redisSeconds*1e6/float64(published), "redis-µs/entry")
}
