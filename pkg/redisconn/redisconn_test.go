package redisconn_test

import (
	"context"
	"strings"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

func TestScriptsRunBySHAAndSurviveAFlushedScriptCache(t *testing.T) {
	addr := testinfra.Redis(t)
	c, err := redisconn.New(redisconn.Config{Addrs: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	key := testinfra.Name("redisconn") + ":{k}"
	t.Cleanup(func() { c.Del(ctx, key) })
	incr := redisconn.NewScript("incr", `return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	if err := redisconn.LoadAll(ctx, c, incr); err != nil {
		t.Fatal(err)
	}
	if n, err := incr.Run(ctx, c, []string{key}, 2).Int(); err != nil || n != 2 {
		t.Fatalf("got %d, %v", n, err)
	}
	// A restarted or failed-over server has no script cache: EVALSHA fails with NOSCRIPT and
	// the call falls back to EVAL.
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := incr.Run(ctx, c, []string{key}, 3).Int(); err != nil || n != 5 {
		t.Fatalf("after SCRIPT FLUSH got %d, %v", n, err)
	}
}

func TestABrokenScriptFailsAtLoadNotAtFirstUse(t *testing.T) {
	addr := testinfra.Redis(t)
	c, _ := redisconn.New(redisconn.Config{Addrs: []string{addr}})
	defer c.Close()
	err := redisconn.NewScript("broken", `return redis.call(`).Load(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("got %v", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name  string
		cfg   redisconn.Config
		field string
	}{
		{"no address is rejected", redisconn.Config{}, "Addrs"},
		{"an address without a port is rejected", redisconn.Config{Addrs: []string{"localhost"}}, "Addrs"},
		{"a database other than 0 on a cluster is rejected", redisconn.Config{Addrs: []string{"a:1", "b:2"}, DB: 2}, "DB"},
		{"an out-of-range database is rejected", redisconn.Config{Addrs: []string{"a:1"}, DB: 99}, "DB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisconn.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("got %v, want an error naming %s", err, tt.field)
			}
		})
	}
}
