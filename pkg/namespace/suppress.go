package namespace

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
)

// RedisSuppressor is the erasure suppression list: customer ids that were erased (GDPR) and
// must not be recreated by later events or by a replay of history. It belongs to the
// deployment, not to a namespace, so a promoted replay namespace honours it too.
type RedisSuppressor struct {
	rdb redis.UniversalClient
	key string
}

// NewSuppressor returns the deployment's suppression list reader.
func NewSuppressor(rdb redis.UniversalClient, d keyspace.Deployment) *RedisSuppressor {
	return &RedisSuppressor{rdb: rdb, key: d.Erased()}
}

// Suppress adds a customer id to the deployment's suppression list.
func Suppress(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment, customerID string) error {
	if err := rdb.SAdd(ctx, d.Erased(), customerID).Err(); err != nil {
		return fmt.Errorf("adding to the erasure list: %w", err)
	}
	return nil
}

// SuppressAll adds customer ids to the deployment's suppression list (restoring it from the
// erasures topic), in chunks of 1,000.
func SuppressAll(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment, ids []string) error {
	for i := 0; i < len(ids); i += 1000 {
		chunk := ids[i:min(i+1000, len(ids))]
		members := make([]any, len(chunk))
		for j, id := range chunk {
			members[j] = id
		}
		if err := rdb.SAdd(ctx, d.Erased(), members...).Err(); err != nil {
			return fmt.Errorf("restoring the erasure list: %w", err)
		}
	}
	return nil
}

// Suppressed returns which of ids are on the list, in one round trip.
func (s *RedisSuppressor) Suppressed(ctx context.Context, ids []string) (map[string]bool, error) {
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = id
	}
	flags, err := s.rdb.SMIsMember(ctx, s.key, members...).Result()
	if err != nil {
		return nil, fmt.Errorf("reading the erasure list: %w", err)
	}
	var out map[string]bool
	for i, f := range flags {
		if f {
			if out == nil {
				out = map[string]bool{}
			}
			out[ids[i]] = true
		}
	}
	return out, nil
}
