package redisconn_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// setPolicy sets the server's maxmemory-policy for the test and restores it afterwards. The
// tests run on a private server (a shared one would refuse other packages' runtimes meanwhile);
// a cluster from REDIS_CLUSTER_ADDRS is left as it was.
func setPolicy(t *testing.T, c redis.Cmdable, policy string) {
	t.Helper()
	ctx := context.Background()
	old, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", policy).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ConfigSet(ctx, "maxmemory-policy", old["maxmemory-policy"]) })
}

func newClient(t *testing.T, cfg redisconn.Config) redisconn.Client {
	t.Helper()
	c, err := redisconn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestAnEvictionPolicyIsRefusedAndNoevictionPasses(t *testing.T) {
	addr := testinfra.PrivateRedis(t)
	c := newClient(t, redisconn.Config{Addrs: []string{addr}})
	ctx := context.Background()
	setPolicy(t, c, "allkeys-lru")
	err := redisconn.CheckNoEviction(ctx, c, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "allkeys-lru") || !strings.Contains(err.Error(), "CONFIG SET maxmemory-policy noeviction") {
		t.Fatalf("allkeys-lru: got %v, want an error naming the policy and the fix", err)
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := redisconn.CheckNoEviction(ctx, c, zap.NewNop()); err != nil {
		t.Fatalf("noeviction: %v", err)
	}
}

// aclUser creates a user allowed everything but the given commands and returns a client
// logged in as it.
func aclUser(t *testing.T, addr string, admin redisconn.Client, denied ...string) redisconn.Client {
	t.Helper()
	ctx := context.Background()
	user := testinfra.Name("evict")
	rules := []any{"ACL", "SETUSER", user, "reset", "on", ">pw", "~*", "&*", "+@all"}
	for _, d := range denied {
		rules = append(rules, "-"+d)
	}
	if err := admin.Do(ctx, rules...).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(ctx, "ACL", "DELUSER", user) })
	return newClient(t, redisconn.Config{Addrs: []string{addr}, Username: user, Password: "pw"})
}

func TestWithoutCONFIGThePolicyIsReadFromINFO(t *testing.T) {
	addr := testinfra.PrivateRedis(t)
	admin := newClient(t, redisconn.Config{Addrs: []string{addr}})
	setPolicy(t, admin, "volatile-ttl")
	c := aclUser(t, addr, admin, "config")
	ctx := context.Background()
	if err := c.ConfigGet(ctx, "maxmemory-policy").Err(); err == nil {
		t.Fatal("the restricted user may run CONFIG GET; the test does not test the fallback")
	}
	err := redisconn.CheckNoEviction(ctx, c, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "volatile-ttl") || !strings.Contains(err.Error(), "INFO memory") {
		t.Fatalf("got %v, want the policy read from INFO memory", err)
	}
}

func TestWhenNeitherCONFIGNorINFOIsPermittedItWarnsAndPasses(t *testing.T) {
	addr := testinfra.PrivateRedis(t)
	admin := newClient(t, redisconn.Config{Addrs: []string{addr}})
	setPolicy(t, admin, "allkeys-random")
	c := aclUser(t, addr, admin, "config", "info")
	core, logs := observer.New(zapcore.WarnLevel)
	if err := redisconn.CheckNoEviction(context.Background(), c, zap.New(core)); err != nil {
		t.Fatalf("got %v, want a warning only", err)
	}
	if logs.FilterMessageSnippet("maxmemory-policy").Len() != 1 {
		t.Fatalf("want one warning about maxmemory-policy, got %v", logs.All())
	}
}

func TestEveryClusterMasterIsChecked(t *testing.T) {
	addrs := testinfra.RedisCluster(t)
	c := newClient(t, redisconn.Config{Addrs: addrs, Cluster: true})
	ctx := context.Background()
	if err := redisconn.CheckNoEviction(ctx, c, zap.NewNop()); err != nil {
		t.Fatalf("every master noeviction: %v", err)
	}
	// One master with an eviction policy is enough to refuse.
	cc := c.(*redis.ClusterClient)
	var (
		mu      sync.Mutex
		masters []*redis.Client
	)
	if err := cc.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		masters = append(masters, m)
		return nil
	}); err != nil || len(masters) < 2 {
		t.Fatalf("masters %d, %v", len(masters), err)
	}
	last := masters[len(masters)-1]
	setPolicy(t, last, "allkeys-lfu")
	err := redisconn.CheckNoEviction(ctx, c, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "allkeys-lfu") || !strings.Contains(err.Error(), last.Options().Addr) {
		t.Fatalf("got %v, want an error naming %s and allkeys-lfu", err, last.Options().Addr)
	}
}
