package state

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
)

// ForEachMaster runs fn on the client of every master: each master of a Cluster, or the one
// server otherwise. SCAN-based maintenance of a namespace goes through it.
func ForEachMaster(ctx context.Context, rdb redis.UniversalClient, fn func(ctx context.Context, c *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	default:
		return fmt.Errorf("unsupported redis client %T", rdb)
	}
}

// ForEachCustomer calls fn with the stored value of every customer of the namespace (SCAN
// over its customer keys on every master: an operator path, not a hot one). On Redis Cluster
// fn runs concurrently for different masters.
func ForEachCustomer(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, fn func(id string, cur Current)) error {
	prefix := keys.Prefix() + "c:"
	return ForEachMaster(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		store := &Store{rdb: c, keys: keys}
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			states, _, err := store.readKeys(ctx, batch)
			if err != nil {
				return fmt.Errorf("reading customers: %w", err)
			}
			for i, cur := range states {
				if !cur.Empty() {
					fn(keys.CustomerOfKey(batch[i]), cur)
				}
			}
			batch = batch[:0]
			return nil
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scanning customers: %w", err)
		}
		return flush()
	})
}

// HasCustomers reports whether the namespace has a customer key, on any master.
func HasCustomers(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) (bool, error) {
	var found atomic.Bool
	err := ForEachMaster(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, keys.Prefix()+"c:*", 1000).Iterator()
		if iter.Next(ctx) {
			found.Store(true)
		}
		return iter.Err()
	})
	if err != nil {
		return false, fmt.Errorf("scanning customers: %w", err)
	}
	return found.Load(), nil
}

// Pending reports whether the namespace has outbox entries not yet published or, when
// checkDue is set, customers whose inactivity deadline is at or before until.
func Pending(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, until time.Time, checkDue bool) (bool, error) {
	pipe := rdb.Pipeline()
	var cmds []*redis.IntCmd
	for s := range keys.Shards() {
		cmds = append(cmds, pipe.XLen(ctx, keys.Outbox(s)))
	}
	if checkDue {
		for s := range keys.Shards() {
			cmds = append(cmds, pipe.ZCount(ctx, keys.Deadlines(s), "-inf", strconv.FormatInt(until.UnixMilli(), 10)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("reading outbox and deadlines: %w", err)
	}
	for _, c := range cmds {
		if c.Val() > 0 {
			return true, nil
		}
	}
	return false, nil
}
