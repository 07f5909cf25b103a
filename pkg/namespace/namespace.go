package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
)

// Namespaces: live state lives in one Redis key namespace; a replay builds another beside it;
// promote switches the active pointer. Services follow the pointer: they read it at start-up
// and exit (code ExitPromoted) when it changes, so their supervisor restarts them on the new
// namespace — a rolling restart, one service at a time, never two namespaces in one process.
const (
	// ExitPromoted is the exit code of a service that stopped because the active namespace
	// changed; supervisors restart it.
	ExitPromoted = 3
)

// ActiveKey holds the name of a deployment's active namespace; absent means
// LOYALTY_NAMESPACE.
func ActiveKey(deployment string) string { return "loyd:" + deployment + ":active" }

// NamespacesKey is the set of every namespace of a deployment that ever held state (for
// erasure).
func NamespacesKey(deployment string) string { return "loyd:" + deployment + ":namespaces" }

// SuppressionKey is a deployment's set of erased customer ids.
func SuppressionKey(deployment string) string { return "loyd:" + deployment + ":erased" }

// ErrPromoted is returned by WatchActive when the active namespace changed.
var ErrPromoted = errors.New("active namespace changed")

// ActiveNamespace returns the deployment's promoted namespace, or fallback when none was
// promoted.
func ActiveNamespace(ctx context.Context, rdb redis.UniversalClient, deployment, fallback string) (string, error) {
	ns, err := rdb.Get(ctx, ActiveKey(deployment)).Result()
	if errors.Is(err, redis.Nil) {
		return fallback, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the active namespace: %w", err)
	}
	return ns, nil
}

// WatchActive polls the active namespace and returns ErrPromoted when it is no longer
// current, or nil when ctx ends.
func WatchActive(ctx context.Context, rdb redis.UniversalClient, deployment, current, fallback string, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ns, err := ActiveNamespace(ctx, rdb, deployment, fallback)
		if err == nil && ns != current {
			return fmt.Errorf("%w: %s → %s", ErrPromoted, current, ns)
		}
	}
}

// policyKey holds a namespace's own scoring policy (YAML), set by replay --policy and carried
// into live by promote.
func policyKey(keys keyspace.Keyspace) string { return keys.Global("policy") }

// StorePolicy records a namespace's policy.
func StorePolicy(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, yaml []byte) error {
	return rdb.Set(ctx, policyKey(keys), yaml, 0).Err()
}

// StoredPolicy returns a namespace's own policy YAML, if it has one.
func StoredPolicy(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) ([]byte, bool, error) {
	b, err := rdb.Get(ctx, policyKey(keys)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the namespace policy: %w", err)
	}
	return b, true, nil
}
