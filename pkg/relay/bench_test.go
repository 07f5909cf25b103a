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
	"github.com/loyalty-scoring/loyalty/pkg/outbox"
	"github.com/loyalty-scoring/loyalty/pkg/relay"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// BenchmarkPass drains 5,000 derived events shaped like the pipeline's (topic, customer key,
// event id, a 200-byte Avro value, source time) from 64 outbox shards to a publisher, in the
// two entry layouts the relay reads: one entry per event (the former layout, which the notifier
// still writes) and one entry per customer write holding its events (package outbox; two
// events per write here, as a day-end segment change with a churn change). It reports the
// client's time per event published (ns/event; ns/op is a round of 5,000) and Redis's CPU
// per event (redis-µs/event, INFO cpu, over the passes only): the fenced read and the fenced
// delete. With the read in a Lua script (before MULTI/EXEC), three runs gave 8.9–11.1
// redis-µs and 11–17.5 µs per event on the client, one event per entry; with MULTI/EXEC
// 2.7–4.0 and 4.6–7.4.
func BenchmarkPass(b *testing.B) {
	for _, perEntry := range []int{1, 2} {
		name := "entry-per-event"
		if perEntry > 1 {
			name = fmt.Sprintf("entry-per-write-of-%d", perEntry)
		}
		b.Run(name, func(b *testing.B) { benchmarkPass(b, perEntry) })
	}
}

func benchmarkPass(b *testing.B, perEntry int) {
	rdb := testinfra.RedisClient(b)
	keys, err := keyspace.New(testinfra.Namespace(b, "relaybench"), keyspace.DefaultShards)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	r, err := relay.New(ctx, relay.Config{}, rdb, keys, discard{}, nil, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	const events = 5000
	value := []byte(strings.Repeat("v", 200))
	topics := []string{"loyalty.segment-changes.v1", "loyalty.churn-risk.v1"}
	var redisSeconds float64
	published := 0
	for round := 0; b.Loop(); round++ {
		b.StopTimer()
		pipe := rdb.Pipeline()
		for i := range events / perEntry {
			shard, key := i%keyspace.DefaultShards, fmt.Sprintf("c%d", i)
			if perEntry == 1 {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: keys.Outbox(shard), Values: []any{
					"t", topics[0], "k", key, "id", fmt.Sprintf("%s-%d", key, round), "v", value, "st", time.Now().UnixMilli()}})
				continue
			}
			write := make([]outbox.Event, perEntry)
			for j := range write {
				write[j] = outbox.Event{Topic: topics[j%len(topics)], EventID: fmt.Sprintf("%s-%d-%d", key, round, j), Value: value, SourceTime: time.Now()}
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: keys.Outbox(shard), Values: []any{"k", key, "e", outbox.Pack(nil, write)}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		cpu0 := testinfra.RedisCPUSeconds(b, rdb)
		b.StartTimer()
		for left := events; left > 0; {
			n, err := r.Pass(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				b.Fatalf("a pass published nothing with %d events left", left)
			}
			left -= n
			published += n
		}
		b.StopTimer()
		redisSeconds += testinfra.RedisCPUSeconds(b, rdb) - cpu0
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(published), "ns/event")
	b.ReportMetric(redisSeconds*1e6/float64(published), "redis-µs/event")
}

// discard is a publisher that acknowledges everything and keeps nothing.
type discard struct{}

func (discard) Produce(context.Context, ...stream.Record) error { return nil }
