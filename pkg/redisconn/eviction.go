package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// NoEviction is the only maxmemory-policy under which Redis never drops a key on its own:
// when memory runs out, writes fail (and the batch is retried) instead of customer state
// silently disappearing.
const NoEviction = "noeviction"

// CheckNoEviction fails when a Redis server the client writes to has a maxmemory-policy
// other than noeviction, naming the policy and the fix. It reads CONFIG GET maxmemory-policy;
// where CONFIG is not permitted (managed Redis renames or blocks it; an ACL answers NOPERM) it
// reads the maxmemory_policy field of INFO memory instead, and when neither answers it logs a
// warning and returns nil: the operator then has to make sure of the policy themselves. On
// Redis Cluster every master is checked. Errors other than a refusal by the server (the
// connection failing) are returned.
func CheckNoEviction(ctx context.Context, c redis.UniversalClient, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return checkNode(ctx, m, m.Options().Addr, log)
		})
	}
	return checkNode(ctx, c, "", log)
}

// node is what checkNode needs of a client: one server's CONFIG and INFO.
type node interface {
	ConfigGet(ctx context.Context, parameter string) *redis.MapStringStringCmd
	Info(ctx context.Context, section ...string) *redis.StringCmd
}

func checkNode(ctx context.Context, c node, addr string, log *zap.Logger) error {
	where := "redis"
	if addr != "" {
		where = "redis " + addr
	}
	policy, source, err := evictionPolicy(ctx, c)
	if err != nil {
		return fmt.Errorf("%s: reading maxmemory-policy: %w", where, err)
	}
	if policy == "" {
		log.Warn("cannot read Redis's maxmemory-policy (CONFIG GET and INFO memory are not permitted); "+
			"make sure it is noeviction, or keys holding customer state may be evicted",
			zap.String("redis", addr))
		return nil
	}
	if policy != NoEviction {
		return fmt.Errorf("%s: maxmemory-policy is %s (read with %s), which lets Redis evict keys holding customer state; "+
			"run CONFIG SET maxmemory-policy noeviction and set it in redis.conf (or the managed service's parameters)",
			where, policy, source)
	}
	return nil
}

// evictionPolicy returns the server's policy and the command it was read with, or "" when
// the server refuses both CONFIG GET and INFO.
func evictionPolicy(ctx context.Context, c node) (policy, source string, err error) {
	cfg, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil && !refused(err) {
		return "", "", fmt.Errorf("CONFIG GET: %w", err)
	}
	if p := strings.TrimSpace(cfg["maxmemory-policy"]); err == nil && p != "" {
		return p, "CONFIG GET", nil
	}
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		if refused(err) {
			return "", "", nil
		}
		return "", "", fmt.Errorf("INFO memory: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok && v != "" {
			return v, "INFO memory", nil
		}
	}
	return "", "", nil
}

// refused reports whether err is the server's error reply (unknown or renamed command,
// NOPERM, ...) rather than a failure to talk to it.
func refused(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}
