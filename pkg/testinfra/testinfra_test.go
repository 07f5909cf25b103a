package testinfra

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// TestNamespaceDeletesItsKeysWhenTheTestEnds: a test's namespace and deployment keys are gone
// from the shared Redis once the test ends (more keys than one scan batch), and nothing else
// is touched.
func TestNamespaceDeletesItsKeysWhenTheTestEnds(t *testing.T) {
	ctx := context.Background()
	addr := Redis(t)
	t.Setenv("REDIS_ADDR", addr)
	t.Setenv("TEST_REDIS_CLUSTER", "")
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	kept := "loy:" + Name("other") + ":kept"
	if err := rdb.Set(ctx, kept, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Del(ctx, kept).Err() })
	var ns string
	t.Run("writer", func(t *testing.T) {
		ns = Namespace(t, "ti")
		keys, _ := keyspace.New(ns, 4)
		dep, _ := keyspace.NewDeployment(ns)
		pipe := rdb.Pipeline()
		for i := range 2500 {
			pipe.Set(ctx, keys.Customer(strconv.Itoa(i)), "x", 0)
		}
		pipe.Set(ctx, dep.Active(), "x", 0)
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	})
	for _, pattern := range []string{"loy:" + ns + ":*", "loyd:" + ns + ":*"} {
		if left, err := rdb.Keys(ctx, pattern).Result(); err != nil || len(left) > 0 {
			t.Errorf("%d keys %s left after the test (%v)", len(left), pattern, err)
		}
	}
	if n, err := rdb.Exists(ctx, kept).Result(); err != nil || n != 1 {
		t.Errorf("another namespace's key was deleted (%d, %v)", n, err)
	}
}

// TestTopicSuffixDeletesItsTopicsWhenTheTestEnds: the topics named with a test's suffix, a
// replay's shadow topics among them, are gone from the shared broker once the test ends, and
// another run's topic is kept.
func TestTopicSuffixDeletesItsTopicsWhenTheTestEnds(t *testing.T) {
	brokers := Kafka(t)
	t.Setenv("KAFKA_BROKERS", strings.Join(brokers, ","))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := stream.NewAdmin(brokers, stream.Security{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	kept := Name("other-run")
	ensure := func(names ...string) {
		for _, n := range names {
			if err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: n, Partitions: 1, ReplicationFactor: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ensure(kept)
	defer func() { _ = admin.DeleteTopics(context.WithoutCancel(ctx), kept) }()
	var suffix string
	t.Run("writer", func(t *testing.T) {
		suffix = TopicSuffix(t, "ti")
		ensure("loyalty.purchases.v1"+suffix, "loyalty.tier-changes.v1"+suffix+".replay.ns1")
		if got, err := admin.Topics(ctx, suffix); err != nil || len(got) != 2 {
			t.Fatalf("topics of the suffix: %v (%v)", got, err)
		}
	})
	WaitTopicsGone(t, admin, suffix)
	if all, err := admin.Topics(ctx, ""); err != nil || !slices.Contains(all, kept) {
		t.Errorf("another run's topic %s was deleted (%v)", kept, err)
	}
}
