package state

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// migrateHash replaces a state hash in the former layout by its compact value, if the hash
// still has the version it was read at and is not a tombstone.
// KEYS[1] customer; ARGV[1] expected version, ARGV[2] the compact value (at the next version).
var migrateHash = redisconn.NewScript("state-migrate", `
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' or redis.call('HEXISTS', KEYS[1], '_q') == 1 then
  return 0
end
if (redis.call('HGET', KEYS[1], '_v') or '0') ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1`)

// Migration counts what MigrateHashes did.
type Migration struct {
	// Migrated hashes now hold the compact value; Compact customers had it already.
	Migrated, Compact int
	// Tombstones of quarantined customers stay hashes.
	Tombstones int
	// Changed hashes were written by a service between the read and the migration (that
	// write stored the compact value); Unreadable ones are left for the pipeline to
	// quarantine at the customer's next record or deadline.
	Changed, Unreadable int
}

// MigrateHashes converts every customer of a namespace still stored as a hash of text fields
// (the layout before the compact state) to its compact value, in place and version-checked,
// while the services run: a service writing a customer in between wins, and writes the compact
// value itself. Each customer's next write migrates it too; this makes the namespace uniform
// at once. It reads with SCAN, on every master: an operator command, not a hot path.
func MigrateHashes(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) (Migration, error) {
	var total Migration
	var mu sync.Mutex
	if err := redisconn.LoadAll(ctx, rdb, migrateHash); err != nil {
		return total, err
	}
	prefix := keys.Prefix() + "c:"
	err := ForEachMaster(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		store := &Store{rdb: c, keys: keys}
		var m Migration
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			defer func() { batch = batch[:0] }()
			states, versions, err := store.readKeys(ctx, batch)
			if err != nil {
				return err
			}
			pipe := c.Pipeline()
			var cmds []*redis.Cmd
			for i, cur := range states {
				if _, tomb := cur.Tombstone(); tomb {
					m.Tombstones++
					continue
				}
				switch {
				case cur.Unreadable != "":
					m.Unreadable++
					continue
				case cur.Fields == nil:
					m.Compact++
					continue
				}
				st, err := scoring.UnmarshalFields(cur.Fields)
				if err != nil {
					m.Unreadable++
					continue
				}
				payload, err := st.AppendBinary(nil)
				if err != nil {
					m.Unreadable++
					continue
				}
				cmds = append(cmds, pipe.EvalSha(ctx, migrateHash.SHA(), []string{batch[i]},
					strconv.FormatUint(versions[i], 10), encodeValue(versions[i]+1, payload)))
			}
			if len(cmds) == 0 {
				return nil
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("migrating customers: %w", err)
			}
			for _, cmd := range cmds {
				if n, _ := cmd.Int(); n == 1 {
					m.Migrated++
				} else {
					m.Changed++
				}
			}
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
		if err := flush(); err != nil {
			return err
		}
		mu.Lock()
		total.Migrated += m.Migrated
		total.Compact += m.Compact
		total.Tombstones += m.Tombstones
		total.Changed += m.Changed
		total.Unreadable += m.Unreadable
		mu.Unlock()
		return nil
	})
	return total, err
}
