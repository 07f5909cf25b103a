// Package testinfra gives integration tests a Kafka broker and a Redis server: the real ones
// named by KAFKA_BROKERS and REDIS_ADDR (what CI starts with deploy/local/infra.sh), and
// otherwise an in-process kfake broker and a redis-server child process. A test never skips
// for lack of a service: it gets one, or fails saying how to install one.
package testinfra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/embedded"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// Kafka returns broker addresses: KAFKA_BROKERS when set and non-empty, else a fresh
// in-process broker that is closed when the test ends.
func Kafka(t testing.TB) []string {
	t.Helper()
	if env := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")); env != "" {
		return strings.Split(env, ",")
	}
	k, err := embedded.StartKafka("", 4)
	if err != nil {
		t.Fatalf("starting in-process Kafka: %v", err)
	}
	t.Cleanup(k.Close)
	return k.Brokers()
}

// RealKafka reports whether tests run against an external broker.
func RealKafka() bool { return strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "" }

// Redis returns the address of a Redis server: REDIS_ADDR when set, else a redis-server child
// process stopped when the test ends. Tests sharing an external server must isolate their keys
// with Namespace.
func Redis(t testing.TB) string {
	t.Helper()
	if env := strings.TrimSpace(os.Getenv("REDIS_ADDR")); env != "" {
		return env
	}
	r, err := embedded.StartRedisServer(context.Background(), t.TempDir())
	if errors.Is(err, embedded.ErrNoRedisServer) {
		t.Fatalf("integration tests need a real Redis: set REDIS_ADDR, or install redis-server " +
			"(sudo apt-get install -y redis-server; `make test` does it for you)")
	}
	if err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r.Addr
}

// PrivateRedis returns the address of a redis-server child process of this test alone, even
// when REDIS_ADDR names a shared server. Tests that change server-wide settings (CONFIG SET,
// ACL users) use it, so packages running in parallel on the shared server never see them.
func PrivateRedis(t testing.TB) string {
	t.Helper()
	r, err := embedded.StartRedisServer(context.Background(), t.TempDir())
	if errors.Is(err, embedded.ErrNoRedisServer) {
		t.Fatalf("this test needs redis-server: sudo apt-get install -y redis-server " +
			"(`make test` does it for you)")
	}
	if err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r.Addr
}

// RedisCluster returns the seed addresses of a Redis Cluster: REDIS_CLUSTER_ADDRS
// (comma-separated) when set, else a three-node cluster of redis-server child processes.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	if env := strings.TrimSpace(os.Getenv("REDIS_CLUSTER_ADDRS")); env != "" {
		return strings.Split(env, ",")
	}
	c, err := embedded.StartRedisCluster(context.Background(), t.TempDir(), 3)
	if errors.Is(err, embedded.ErrNoRedisServer) {
		t.Fatalf("cluster tests need redis-server: sudo apt-get install -y redis-server")
	}
	if err != nil {
		t.Fatalf("starting a local Redis Cluster: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.Addrs
}

// OnRedisCluster reports whether the suite runs against a Redis Cluster: TEST_REDIS_CLUSTER=1
// makes the integration harnesses (RedisEnv) use RedisCluster instead of Redis, so the same
// tests cover the store, relay, sweeper, notifier, erasure and drop on a cluster (each test
// gets a three-node cluster of its own unless REDIS_CLUSTER_ADDRS names one).
func OnRedisCluster() bool { return os.Getenv("TEST_REDIS_CLUSTER") == "1" }

// RedisEnv returns the REDIS_ADDR and REDIS_CLUSTER values of a service configuration for the
// Redis the suite runs against: Redis(t), or the seeds of RedisCluster(t) on a cluster. Every
// call of one test gets the same server (or cluster).
func RedisEnv(t testing.TB) (addr, cluster string) {
	t.Helper()
	if v, ok := suiteRedis.Load(t); ok {
		env := v.([2]string)
		return env[0], env[1]
	}
	addr, cluster = Redis(t), "false"
	if OnRedisCluster() {
		addr, cluster = strings.Join(RedisCluster(t), ","), "true"
	}
	suiteRedis.Store(t, [2]string{addr, cluster})
	t.Cleanup(func() { suiteRedis.Delete(t) })
	return addr, cluster
}

// suiteRedis holds RedisEnv's answer per test.
var suiteRedis sync.Map

// RedisClient returns a client of the Redis the suite runs against (see RedisEnv), closed
// when the test ends.
func RedisClient(t testing.TB) redisconn.Client {
	t.Helper()
	addr, cluster := RedisEnv(t)
	c, err := redisconn.New(redisconn.Config{Addrs: strings.Split(addr, ","), Cluster: cluster == "true"})
	if err != nil {
		t.Fatalf("connecting to Redis at %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Name returns prefix plus a random suffix: a topic, group or key namespace no other test run
// uses, so tests can share one broker and one Redis.
func Name(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// TopicSuffix returns "." + Name(prefix), a topic suffix (LOYALTY_TOPIC_SUFFIX) no other test
// run uses. On the shared broker named by KAFKA_BROKERS it deletes every topic whose name
// contains it when the test ends: the deployment's topics, and a replay's shadow topics
// ("<topic><suffix>.replay.<namespace>"). A developer's long-lived broker (deploy/local)
// otherwise keeps every run's records; 3.8 GB of them once made its start time out. An
// in-process broker goes away with the test. Like Namespace's, the cleanup is registered
// first, so it runs after the test's services have stopped.
func TopicSuffix(t testing.TB, prefix string) string {
	t.Helper()
	suffix := "." + Name(prefix)
	env := strings.TrimSpace(os.Getenv("KAFKA_BROKERS"))
	if env == "" {
		return suffix
	}
	t.Cleanup(func() {
		if err := deleteTopics(strings.Split(env, ","), suffix); err != nil {
			t.Logf("deleting the test's Kafka topics *%s*: %v", suffix, err)
		}
	})
	return suffix
}

// deleteTopics deletes the topics of the brokers whose names contain fragment.
func deleteTopics(brokers []string, fragment string) error {
	admin, err := stream.NewAdmin(brokers, stream.Security{}, nil)
	if err != nil {
		return err
	}
	defer func() { _ = admin.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = admin.DeleteTopicsContaining(ctx, fragment)
	return err
}

// WaitTopicsGone waits until admin lists no topic containing fragment: Kafka deletes topics
// asynchronously, and its metadata may list a deleted one for a moment. It fails the test
// after 30 seconds, naming the topics still listed.
func WaitTopicsGone(t testing.TB, admin *stream.Admin, fragment string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := admin.Topics(context.Background(), fragment)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topics %v still listed 30 s after their deletion", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Namespace returns Name(prefix) for a test's Redis key namespace, and deletes the keys of
// the namespace and of a deployment of that name (keyspace.Keyspace.Prefix,
// keyspace.Deployment.Prefix) from the shared Redis named by REDIS_ADDR or
// REDIS_CLUSTER_ADDRS when the test ends. A developer's long-lived Redis (deploy/local) then
// does not fill up with every run's customers, which also made later benchmarks on it slower
// and noisier (AOF rewrites of hundreds of thousands of left-over keys). A Redis the test
// started itself goes away with it and is not cleaned. The cleanup is registered first, so it
// runs after the test's other cleanups (services stopped, clients closed).
func Namespace(t testing.TB, prefix string) string {
	t.Helper()
	name := Name(prefix)
	var addrs []string
	cluster := false
	if env := strings.TrimSpace(os.Getenv("REDIS_ADDR")); env != "" {
		addrs = []string{env}
	}
	if env := strings.TrimSpace(os.Getenv("REDIS_CLUSTER_ADDRS")); env != "" && OnRedisCluster() {
		addrs, cluster = strings.Split(env, ","), true
	}
	if len(addrs) == 0 {
		return name
	}
	keys, err := keyspace.New(name, 1)
	if err != nil {
		t.Fatalf("test namespace %q: %v", name, err)
	}
	// Tests name their deployment after their namespace too (keyspace.Deployment).
	deployment, err := keyspace.NewDeployment(name)
	if err != nil {
		t.Fatalf("test deployment %q: %v", name, err)
	}
	t.Cleanup(func() {
		for _, prefix := range []string{keys.Prefix(), deployment.Prefix()} {
			if err := deleteKeys(addrs, cluster, prefix+"*"); err != nil {
				t.Logf("deleting the test's Redis keys %s*: %v", prefix, err)
			}
		}
	})
	return name
}

// deleteKeys unlinks the keys matching pattern from every master of the Redis at addrs.
func deleteKeys(addrs []string, cluster bool, pattern string) error {
	rdb, err := redisconn.New(redisconn.Config{Addrs: addrs, Cluster: cluster})
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// One UNLINK per key, pipelined: a Cluster node refuses a multi-key command across slots.
	unlink := func(ctx context.Context, c *redis.Client, keys []string) error {
		pipe := c.Pipeline()
		for _, k := range keys {
			pipe.Unlink(ctx, k)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			if batch = append(batch, iter.Val()); len(batch) == 1000 {
				if err := unlink(ctx, c, batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return unlink(ctx, c, batch)
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, scan)
	case *redis.Client:
		return scan(ctx, c)
	}
	return fmt.Errorf("unexpected Redis client %T", rdb)
}

// RealKafkaBroker returns the addresses of a real Apache Kafka broker: KAFKA_BROKERS when set,
// else a single-node Kafka started for the test with the project's deploy/local/kafka/kafka.sh
// (fetching its jars from Maven Central the first time) and stopped when the test ends. Tests
// of consumer-group behaviour under crashes use it: their truth is Kafka's group coordinator,
// which the in-process broker only approximates (it does not always expire a SIGKILLed
// member during a rebalance).
func RealKafkaBroker(t testing.TB) []string {
	t.Helper()
	if RealKafka() {
		return Kafka(t)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("finding the repository for deploy/local/kafka/kafka.sh: %v", err)
	}
	script := filepath.Join(root, "deploy", "local", "kafka", "kafka.sh")
	env := append(os.Environ(), "KAFKA_RUN_DIR="+t.TempDir(), "KAFKA_PORT=", "KAFKA_CONTROLLER_PORT=")
	kafka := func(args ...string) (string, error) {
		cmd := exec.Command(script, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, step := range []string{"fetch", "start"} {
		if out, err := kafka(step); err != nil {
			t.Fatalf("this test needs a real Kafka broker: set KAFKA_BROKERS (make infra-up), or let it start one "+
				"(Java 17+ and Maven: sudo apt-get install -y default-jre-headless maven); kafka.sh %s: %v\n%s", step, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := kafka("stop"); err != nil {
			t.Logf("stopping the test's Kafka: %v\n%s", err, out)
		}
	})
	addr, err := kafka("bootstrap")
	if err != nil || addr == "" {
		t.Fatalf("reading the test Kafka's address: %v %s", err, addr)
	}
	return []string{addr}
}

// moduleRoot is the directory of the go.mod above the working directory (a test runs in its
// package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// RedisCPUSeconds is the CPU time (user + system) the Redis server behind rdb has used, from
// INFO cpu: benchmarks report Redis's own cost per operation from two readings.
func RedisCPUSeconds(t testing.TB, rdb redisconn.Client) float64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}
