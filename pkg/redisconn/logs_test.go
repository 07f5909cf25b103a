package redisconn

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// go-redis's own messages (here the pool's dial failures) go to the zap logger, not to
// stderr in go-redis's format.
func TestRouteLogsSendsGoRedisMessagesToZap(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	RouteLogs(zap.New(core))
	t.Cleanup(func() { RouteLogs(zap.NewNop()) })
	rdb, err := New(Config{Addrs: []string{"127.0.0.1:1"}, DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterField(zap.String("source", "go-redis")).Len() == 0 && time.Now().Before(deadline) {
		_ = rdb.Ping(context.Background()).Err()
	}
	got := logs.FilterField(zap.String("source", "go-redis")).All()
	if len(got) == 0 {
		t.Fatal("no go-redis message reached the zap logger after repeated failed dials")
	}
	if !strings.Contains(got[0].Message, "dial") {
		t.Errorf("first routed message %q does not describe the failed dial", got[0].Message)
	}
}
