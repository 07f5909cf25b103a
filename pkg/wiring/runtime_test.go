package wiring_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// A service refuses to start on a Redis that may evict keys, before it touches Kafka.
func TestARuntimeRefusesARedisThatMayEvictKeys(t *testing.T) {
	addr := testinfra.PrivateRedis(t)
	c, err := redisconn.New(redisconn.Config{Addrs: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ConfigSet(context.Background(), "maxmemory-policy", old["maxmemory-policy"]) })
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"REDIS_ADDR": addr, "KAFKA_BROKERS": "127.0.0.1:1",
			"LOYALTY_NAMESPACE": testinfra.Name("evict")}[k]
	}, "off")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := wiring.NewRuntime(ctx, cfg, zaptest.NewLogger(t), wiring.Options{})
	if err == nil {
		rt.Close()
		t.Fatal("NewRuntime started on allkeys-lru")
	}
	if !strings.Contains(err.Error(), "allkeys-lru") || !strings.Contains(err.Error(), "noeviction") {
		t.Fatalf("got %v, want an error naming the policy and the fix", err)
	}
}

// EnsureTopics gives input topics KAFKA_INPUT_RETENTION and a bound on producers' clocks,
// and every other topic KAFKA_OUTPUT_RETENTION.
func TestTopicsAreCreatedWithTheRetentionOfTheirRole(t *testing.T) {
	brokers := testinfra.Kafka(t)
	suffix := testinfra.TopicSuffix(t, "ret")
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ","), "LOYALTY_TOPIC_SUFFIX": suffix,
			"KAFKA_INPUT_RETENTION": "infinite", "KAFKA_OUTPUT_RETENTION": "45d", "KAFKA_PARTITIONS": "1"}[k]
	}, "off")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := stream.NewAdmin(brokers, stream.Security{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := &wiring.Runtime{Config: cfg, Admin: admin, TopicSuffix: suffix}
	if err := rt.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	inputs := 0
	for _, s := range event.Streams() {
		want := 45 * 24 * time.Hour
		switch s.Role {
		case event.RoleInput:
			want, inputs = stream.RetentionInfinite, inputs+1
		case event.RoleErasure: // the durable suppression list: forever, compacted
			want = stream.RetentionInfinite
		}
		if got, err := admin.TopicRetention(ctx, rt.Topic(s.Topic)); err != nil || got != want {
			t.Errorf("%s: retention %v, %v; want %v", rt.Topic(s.Topic), got, err, want)
		}
		// Input topics refuse records stamped more than a minute ahead of the broker.
		ts, err := admin.TopicTimestamps(ctx, rt.Topic(s.Topic))
		if err != nil || ts.Bounded(stream.DefaultMaxTimestampAhead) != (s.Role == event.RoleInput) {
			t.Errorf("%s: timestamps %+v, %v; want producers' clocks bounded only on input topics", rt.Topic(s.Topic), ts, err)
		}
	}
	if inputs == 0 || inputs == len(event.Streams()) {
		t.Fatalf("%d input topics of %d: the test checks neither role", inputs, len(event.Streams()))
	}
}
