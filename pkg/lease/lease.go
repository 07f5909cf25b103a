// Package lease hands out exclusive, expiring ownership of named work units (an outbox
// shard, a deadline shard) among the processes of one role, through Redis. A holder renews
// its leases on every pass; a crashed holder's leases expire and another process takes over.
// Leases are not fencing tokens: a paused holder may overlap a new one for at most one pass,
// which the work they guard tolerates (republishing an event with the same id).
package lease

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
)

var acquire = redisconn.NewScript("lease-acquire", `
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`)

var release = redisconn.NewScript("lease-release", `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// DefaultOwner names this process for leases: host, pid and start time, unique enough that
// a restarted process never inherits its predecessor's leases by name.
func DefaultOwner() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid()) + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// Set manages the leases of one owner over a fixed list of keys.
type Set struct {
	rdb   redis.UniversalClient
	owner string
	ttl   time.Duration
	keys  []string
}

// NewSet returns a lease set; owner must be unique per process (host, pid and a random part).
func NewSet(ctx context.Context, rdb redis.UniversalClient, owner string, ttl time.Duration, keys []string) (*Set, error) {
	if owner == "" || ttl <= 0 {
		return nil, fmt.Errorf("lease set: owner and a positive ttl are required")
	}
	if err := redisconn.LoadAll(ctx, rdb, acquire, release); err != nil {
		return nil, err
	}
	return &Set{rdb: rdb, owner: owner, ttl: ttl, keys: keys}, nil
}

// Acquire takes or renews every lease it can and returns the indexes of the keys it holds.
func (s *Set) Acquire(ctx context.Context) ([]int, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(s.keys))
	for i, k := range s.keys {
		cmds[i] = pipe.EvalSha(ctx, acquire.SHA(), []string{k}, s.owner, s.ttl.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return nil, fmt.Errorf("acquiring leases: %w", err)
		}
		if err := acquire.Load(ctx, s.rdb); err != nil {
			return nil, err
		}
		return s.Acquire(ctx)
	}
	var held []int
	for i, c := range cmds {
		if n, _ := c.Int(); n == 1 {
			held = append(held, i)
		}
	}
	return held, nil
}

// Release gives up every lease this owner holds, so a successor need not wait for expiry.
func (s *Set) Release(ctx context.Context) error {
	for _, k := range s.keys {
		if err := release.Run(ctx, s.rdb, []string{k}, s.owner).Err(); err != nil {
			return fmt.Errorf("releasing lease %s: %w", k, err)
		}
	}
	return nil
}
