// Package lease hands out exclusive, expiring ownership of named work units (an outbox
// shard, a deadline shard) among the processes of one role, through Redis. A holder renews
// its leases while it works; a crashed or paused holder's leases expire and another process
// takes over.
//
// Every acquisition carries a fencing token: the next value of a per-lease counter that never
// expires, taken in the same Lua call that takes the lease and stored with it, so tokens only
// grow and no two acquisitions of a lease share one. A holder that writes through a script
// starting with FenceCheck (on keys with the lease's hash tag, so it works on Redis Cluster)
// is refused with ErrFenced once its lease expired or passed to another token: what a paused
// holder does after it lost the lease never reaches the keys the lease guards.
package lease

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
)

// A lease key holds "<token> <owner>" while it is held. KEYS[1] is the lease, KEYS[2] its
// fence counter; ARGV[1] the owner, ARGV[2] the TTL in ms. It returns the token of the lease
// the owner holds after the call, or 0 when another owner holds it. A value of another format
// (an owner without a token, from an older binary) is held by someone else until it expires.
var acquire = redisconn.NewScript("lease-acquire", `
local v = redis.call('GET', KEYS[1])
if v then
  local token, owner = string.match(v, '^(%d+) (.*)$')
  if token and owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token`)

// renew extends the lease only while it still holds the grant's value (same token): an owner
// whose lease expired gets 0 rather than a new token, so its work in flight stays fenced.
var renew = redisconn.NewScript("lease-renew", `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`)

var release = redisconn.NewScript("lease-release", `
local v = redis.call('GET', KEYS[1])
if v then
  local _, owner = string.match(v, '^(%d+) (.*)$')
  if owner == ARGV[1] then
    return redis.call('DEL', KEYS[1])
  end
end
return 0`)

// FenceCheck is the Lua a fenced script starts with. It expects KEYS[1] to be the lease key
// (Grant.Key) and ARGV[1] the grant's value (Grant.Value), and returns an error reply that
// Fenced recognizes unless the lease still holds that value. The script's other keys must
// share the lease key's hash tag.
const FenceCheck = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease is no longer held with this token')
end
`

// ErrFenced reports that Redis refused a grant: its lease expired or is held with another
// token.
var ErrFenced = errors.New("lease no longer held with this token")

// Fenced reports whether err is FenceCheck's refusal.
func Fenced(err error) bool { return redis.HasErrorPrefix(err, "FENCED") }

// clockAllowance is the share of the TTL a grant's Until keeps back for the holder's clock
// running slower than Redis's.
const clockAllowance = 10

// DefaultOwner names this process for leases: host, pid and start time, unique enough that
// a restarted process never inherits its predecessor's leases by name.
func DefaultOwner() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid()) + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// Grant is one lease held, as of the acquisition or renewal that returned it.
type Grant struct {
	// Index is the lease's position in the set's keys (the shard).
	Index int
	// Key is the lease key, the first key of a fenced script.
	Key string
	// Token is the lease's fencing token: greater than that of every earlier acquisition of
	// the lease, the same across renewals.
	Token int64
	// Value is what the lease key holds while this grant is current, the first argument of a
	// fenced script.
	Value string
	// Until is the local time before which the lease certainly still holds: the TTL from the
	// moment the request was sent, less a tenth for clock rate differences. Past it a holder
	// must stop acting on the lease unless a renewal succeeded.
	Until time.Time
}

// Set manages the leases of one owner over a fixed list of keys.
//
// AcquireFenced goes to Redis at most once a third of the TTL: in between it returns what the
// last acquisition took. A relay or sweeper calls it on every pass, up to fifty times a
// second when caught up, and each call is a script per key (bench-e2e, live at 10,000 events/s:
// 115k of 129k script calls in 30 s). A lease another owner frees is taken up to a third of
// the TTL later than before; what a holder does on a lease it lost is fenced as ever, and a
// renewal that finds one lost, Release and Forget make the next call go to Redis.
type Set struct {
	rdb    redis.UniversalClient
	owner  string
	ttl    time.Duration
	keys   []string
	fences []string

	mu       sync.Mutex
	held     []Grant   // what the last acquisition returned
	heldSent time.Time // when it was sent; zero: go to Redis next time
}

// NewSet returns a lease set; owner must be unique per process (host, pid and a random part).
// Every key must carry a hash tag: its fence counter is the key plus ":fence", in the same
// slot.
func NewSet(ctx context.Context, rdb redis.UniversalClient, owner string, ttl time.Duration, keys []string) (*Set, error) {
	if owner == "" || ttl <= 0 {
		return nil, errors.New("lease set: owner and a positive ttl are required")
	}
	fences := make([]string, len(keys))
	for i, k := range keys {
		if keyspace.HashTag(k) == k {
			return nil, fmt.Errorf("lease set: key %q has no hash tag for its fence counter to share", k)
		}
		fences[i] = k + ":fence"
	}
	if err := redisconn.LoadAll(ctx, rdb, acquire, renew, release); err != nil {
		return nil, fmt.Errorf("lease set: %w", err)
	}
	return &Set{rdb: rdb, owner: owner, ttl: ttl, keys: keys, fences: fences}, nil
}

// Acquire takes or renews every lease it can and returns the indexes of the keys it holds.
// Holders that fence their writes use AcquireFenced.
func (s *Set) Acquire(ctx context.Context) ([]int, error) {
	grants, err := s.AcquireFenced(ctx)
	if err != nil {
		return nil, err
	}
	held := make([]int, len(grants))
	for i, g := range grants {
		held[i] = g.Index
	}
	return held, nil
}

// AcquireFenced takes or renews every lease it can and returns what it holds. A lease this
// owner still holds keeps its token; one taken afresh (free, expired, or released) gets a new
// one, greater than all before it.
func (s *Set) AcquireFenced(ctx context.Context) ([]Grant, error) {
	s.mu.Lock()
	if !s.heldSent.IsZero() && time.Since(s.heldSent) < s.ttl/3 {
		held := slices.Clone(s.held)
		s.mu.Unlock()
		return held, nil
	}
	s.mu.Unlock()
	sent := time.Now()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(s.keys))
	for i, k := range s.keys {
		cmds[i] = pipe.EvalSha(ctx, acquire.SHA(), []string{k, s.fences[i]}, s.owner, s.ttl.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return nil, fmt.Errorf("acquiring leases: %w", err)
		}
		if err := acquire.Load(ctx, s.rdb); err != nil {
			return nil, fmt.Errorf("acquiring leases: %w", err)
		}
		return s.AcquireFenced(ctx)
	}
	var held []Grant
	for i, c := range cmds {
		if token, _ := c.Int64(); token > 0 {
			held = append(held, Grant{Index: i, Key: s.keys[i], Token: token,
				Value: strconv.FormatInt(token, 10) + " " + s.owner, Until: s.until(sent)})
		}
	}
	s.mu.Lock()
	s.held, s.heldSent = slices.Clone(held), sent
	s.mu.Unlock()
	return held, nil
}

// Forget makes the next AcquireFenced go to Redis: a holder calls it when Redis refused one
// of its grants.
func (s *Set) Forget() {
	s.mu.Lock()
	s.held, s.heldSent = nil, time.Time{}
	s.mu.Unlock()
}

// Renew extends the given grants' leases and returns those still held, with Until moved on;
// a grant missing from the result lost its lease (expired, or taken with a newer token) and
// is not taken back. It never acquires a lease.
func (s *Set) Renew(ctx context.Context, grants []Grant) ([]Grant, error) {
	if len(grants) == 0 {
		return nil, nil
	}
	sent := time.Now()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(grants))
	for i, g := range grants {
		cmds[i] = pipe.EvalSha(ctx, renew.SHA(), []string{g.Key}, g.Value, s.ttl.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return nil, fmt.Errorf("renewing leases: %w", err)
		}
		if err := renew.Load(ctx, s.rdb); err != nil {
			return nil, fmt.Errorf("renewing leases: %w", err)
		}
		return s.Renew(ctx, grants)
	}
	var held []Grant
	for i, c := range cmds {
		if n, _ := c.Int(); n == 1 {
			g := grants[i]
			g.Until = s.until(sent)
			held = append(held, g)
		}
	}
	if len(held) < len(grants) {
		s.Forget() // a lease was lost: the next acquisition asks Redis what is held
	}
	return held, nil
}

// TTL is how long a lease lasts without renewal.
func (s *Set) TTL() time.Duration { return s.ttl }

func (s *Set) until(sent time.Time) time.Time {
	return sent.Add(s.ttl - s.ttl/clockAllowance)
}

// Release gives up every lease this owner holds, so a successor need not wait for expiry.
// The fence counters stay: the successor's token is greater.
func (s *Set) Release(ctx context.Context) error {
	s.Forget()
	for _, k := range s.keys {
		if err := release.Run(ctx, s.rdb, []string{k}, s.owner).Err(); err != nil {
			return fmt.Errorf("releasing lease %s: %w", k, err)
		}
	}
	return nil
}
