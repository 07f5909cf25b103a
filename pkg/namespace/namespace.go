// Package namespace manages the Redis key namespaces of a deployment: live state lives in one
// namespace, a replay builds another beside it, and promotion switches the deployment's
// active pointer. It also keeps what belongs to a namespace or a deployment beyond customer
// state: the namespace's stored policy and RFM cut points, the registry of namespaces, and the
// erasure (suppression) list the consumers honour. Key names come from pkg/keyspace.
package namespace

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// ErrPromoted is returned by WatchActive when the active namespace changed.
var ErrPromoted = errors.New("active namespace changed")

// ActiveNamespace returns the deployment's promoted namespace, or fallback when none was
// promoted.
func ActiveNamespace(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment, fallback string) (string, error) {
	ns, err := rdb.Get(ctx, d.Active()).Result()
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
func WatchActive(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment, current, fallback string, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ns, err := ActiveNamespace(ctx, rdb, d, fallback)
		if err == nil && ns != current {
			return fmt.Errorf("%w: %s → %s", ErrPromoted, current, ns)
		}
	}
}

// Activate makes ns the deployment's active namespace instead of previous; services following
// the pointer notice within seconds and restart on it. previous is recorded as retired, in
// the same transaction, so the relay of ns publishes what previous's services derived and did
// not publish before they stopped (see Retired).
func Activate(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment, previous, ns string) error {
	pipe := rdb.TxPipeline()
	pipe.Set(ctx, d.Active(), ns, 0)
	pipe.SRem(ctx, d.Retired(), ns)
	if previous != "" && previous != ns {
		pipe.SAdd(ctx, d.Retired(), previous)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("switching the active namespace: %w", err)
	}
	if err := rdb.SRem(ctx, d.LegacyRetired(), ns).Err(); err != nil {
		return fmt.Errorf("switching the active namespace: %w", err)
	}
	return nil
}

// Retired lists the namespaces that were live before a promote and may still hold
// unpublished outbox entries.
func Retired(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment) ([]string, error) {
	var all []string
	for _, key := range []string{d.Retired(), d.LegacyRetired()} {
		ns, err := rdb.SMembers(ctx, key).Result()
		if err != nil {
			return nil, fmt.Errorf("reading the retired namespaces of %s: %w", d.Name(), err)
		}
		for _, n := range ns {
			if !slices.Contains(all, n) {
				all = append(all, n)
			}
		}
	}
	return all, nil
}

// Forget removes ns from the retired namespaces once its outboxes are published, or when it
// is dropped.
func Forget(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment, ns string) error {
	for _, key := range []string{d.Retired(), d.LegacyRetired()} {
		if err := rdb.SRem(ctx, key, ns).Err(); err != nil {
			return fmt.Errorf("forgetting retired namespace %s: %w", ns, err)
		}
	}
	return nil
}

// Register records that ns holds state of the deployment, so erasure reaches it.
func Register(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment, ns string) error {
	if err := rdb.SAdd(ctx, d.Namespaces(), ns).Err(); err != nil {
		return fmt.Errorf("registering namespace %s: %w", ns, err)
	}
	return nil
}

// Unregister forgets ns (after its keys were dropped).
func Unregister(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment, ns string) error {
	if err := rdb.SRem(ctx, d.Namespaces(), ns).Err(); err != nil {
		return fmt.Errorf("unregistering namespace %s: %w", ns, err)
	}
	return nil
}

// List returns every registered namespace of the deployment.
func List(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment) ([]string, error) {
	ns, err := rdb.SMembers(ctx, d.Namespaces()).Result()
	if err != nil {
		return nil, fmt.Errorf("reading the namespaces of %s: %w", d.Name(), err)
	}
	return ns, nil
}

// StorePolicy records a namespace's policy.
func StorePolicy(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, yaml []byte) error {
	if err := rdb.Set(ctx, keys.Policy(), yaml, 0).Err(); err != nil {
		return fmt.Errorf("storing the namespace policy: %w", err)
	}
	return nil
}

// StoredPolicy returns a namespace's own policy YAML, if it has one.
func StoredPolicy(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) ([]byte, bool, error) {
	b, err := rdb.Get(ctx, keys.Policy()).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the namespace policy: %w", err)
	}
	return b, true, nil
}
