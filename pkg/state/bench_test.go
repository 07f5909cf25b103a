package state_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// BenchmarkApply writes batches of 1,000 customers spread over 64 shards, each update shaped
// like the pipeline's: a 200-byte compact value, five KPI increments on the customer's own
// days, a histogram increment, a deadline, and every third customer a derived event and a
// transition. It reports the store's cost per customer write on both sides: the client's
// time (ns/op) and Redis's CPU (redis-µs/write, from INFO cpu), the figure bench-e2e's Redis
// row is made of.
func BenchmarkApply(b *testing.B) {
	for _, batch := range []int{250, 1000} {
		for _, span := range []bool{false, true} {
			b.Run(fmt.Sprintf("batch=%d/span-shards=%t", batch, span), func(b *testing.B) { benchmarkApply(b, batch, span) })
		}
	}
}

func benchmarkApply(b *testing.B, batch int, spanShards bool) {
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(b)}})
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	keys, err := keyspace.New(testinfra.Namespace(b, "bench"), keyspace.DefaultShards)
	if err != nil {
		b.Fatal(err)
	}
	store, err := state.New(context.Background(), rdb, keys, nil)
	if err != nil {
		b.Fatal(err)
	}
	store.SpanShards = spanShards
	const customers = 20_000
	value := []byte(strings.Repeat("v", 200))
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	compute := func(round int) state.ComputeFunc {
		return func(id string, _ state.Current) (state.Update, error) {
			n, _ := strconv.Atoi(id[2:])
			day := strconv.Itoa(20_000 + round/4 + n%3) // a batch spans about three days of event time, as under a backlog
			u := state.Update{Value: value, Deadline: at.Add(time.Duration(n) * time.Minute),
				KPI:       map[string]int64{day + ":o": 1, day + ":g": 4500, day + ":l": 1, day + ":a": 1, "19999:x": -1},
				Histogram: map[string]int64{day + ":m:3": 1}}
			if n%3 == 0 {
				u.Outbox = []state.OutboxEntry{{Topic: "t", EventID: id + day, Value: value[:120]}}
				u.Transitions = []string{`{"at":"2026-01-01","kind":"tier"}`}
			}
			return u, nil
		}
	}
	ids := make([]string, batch)
	b.ResetTimer()
	cpu0 := testinfra.RedisCPUSeconds(b, rdb)
	for i := 0; i < b.N; i++ {
		for j := range ids {
			ids[j] = fmt.Sprintf("c-%d", (i*batch+j)%customers)
		}
		if _, err := store.Apply(context.Background(), ids, compute(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((testinfra.RedisCPUSeconds(b, rdb)-cpu0)*1e6/float64(b.N*batch), "redis-µs/write")
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "writes/s")
}
