package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a local Redis Cluster of redis-server child processes, one master per node
// and no replicas: enough to prove that multi-key scripts stay within one slot.
type RedisCluster struct {
	Addrs []string
	nodes []*Redis
}

// Close stops every node.
func (c *RedisCluster) Close() error {
	var errs []error
	for _, n := range c.nodes {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}

// StartRedisCluster starts n cluster-enabled redis-server processes under dir, splits the
// 16384 slots between them, joins them and waits until the cluster reports state ok.
func StartRedisCluster(ctx context.Context, dir string, n int) (*RedisCluster, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	c := &RedisCluster{}
	fail := func(err error) (*RedisCluster, error) {
		_ = c.Close()
		return nil, err
	}
	for i := range n {
		nodeDir := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			return fail(err)
		}
		// An attempt that failed to bind may have written its cluster config: each starts afresh.
		conf := filepath.Join(nodeDir, "nodes.conf")
		fresh := func() error {
			if err := os.Remove(conf); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		}
		node, err := startOnFreePort(ctx, bin, nodeDir, fresh, "--cluster-enabled", "yes",
			"--cluster-config-file", conf, "--cluster-node-timeout", "5000")
		if err != nil {
			return fail(err)
		}
		c.nodes = append(c.nodes, node)
		c.Addrs = append(c.Addrs, node.Addr)
	}
	const slots = 16384
	for i, addr := range c.Addrs {
		cl := redis.NewClient(&redis.Options{Addr: addr})
		from, to := i*slots/n, (i+1)*slots/n-1
		err := cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", from, to).Err()
		if err == nil && i > 0 {
			host, port, _ := net.SplitHostPort(c.Addrs[0])
			err = cl.ClusterMeet(ctx, host, port).Err()
		}
		_ = cl.Close()
		if err != nil {
			return fail(fmt.Errorf("forming cluster at %s: %w", addr, err))
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range c.Addrs {
		cl := redis.NewClient(&redis.Options{Addr: addr})
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)) {
				break
			}
			if time.Now().After(deadline) {
				_ = cl.Close()
				return fail(fmt.Errorf("cluster at %s not ok after 30s (%s): %w", addr, info, err))
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = cl.Close()
	}
	return c, nil
}
