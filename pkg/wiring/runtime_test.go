package wiring_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// A service refuses to start on a Redis that may evict keys, before it touches Kafka.
func TestARuntimeRefusesARedisThatMayEvictKeys(t *testing.T) {
	addr := testinfra.Redis(t)
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
