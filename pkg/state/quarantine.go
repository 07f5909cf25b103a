package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
)

// A customer whose stored state cannot be read (neither a compact value nor a hash, or a
// state the scoring core refuses) is quarantined rather than retried forever: its stored value is kept for an operator
// under its own key (CustomerKey("q", id)), its hash becomes a tombstone holding only
// QuarantinedField, its deadline goes, and the shard's quarantine index records why. The
// computation rejects the customer's records to the dead-letter topic, now and while the
// quarantine lasts, so the rest of the batch commits and the partition moves on; a release
// (ReleaseQuarantined) starts the customer afresh, and its records can be replayed from the
// dead-letter topic or the input topics.

// QuarantinedField marks the tombstone hash of a quarantined customer; its value is the reason.
const QuarantinedField = "_q"

// QuarantineMarkField counts the records turned away from a quarantined customer.
const QuarantineMarkField = "_qn"

// UnreadableField names what a customer key holds instead of a state in the text view of a
// stored value (Current.View, QuarantinedCopy).
const UnreadableField = "_unreadable"

// Quarantined is one quarantined customer.
type Quarantined struct {
	Customer string    `json:"customer"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

var quarantine = redisconn.NewScript("state-quarantine", versionLua+`
-- KEYS[1] customer, KEYS[2] kept copy, KEYS[3] deadline zset, KEYS[4] quarantine index
-- ARGV[1] id, ARGV[2] expected version ("" when the value was unreadable), ARGV[3] record JSON
local v = customer_version(KEYS[1])
local version = tonumber(v)
if ARGV[2] == '' then
  if version ~= nil and v ~= '0' then
    return 0 -- readable now: the caller reads it again
  end
  version = 0
elseif v ~= ARGV[2] then
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
end
redis.call('HSET', KEYS[1], '_q', ARGV[3], '_v', tostring(version + 1))
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
return 1`)

func newQuarantineCounter(reg prometheus.Registerer) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_quarantined_customers_total",
		Help: "Customers whose stored state could not be read, quarantined for an operator (loyaltyctl quarantine)."})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// quarantineCustomer moves a customer's unreadable state aside; ok is false when the state
// changed since it was read (the caller reads it again).
func (s *Store) quarantineCustomer(ctx context.Context, id, version, reason string) (bool, error) {
	rec, err := json.Marshal(Quarantined{Customer: id, Reason: reason, At: time.Now().UTC()})
	if err != nil {
		return false, err
	}
	shard := s.keys.Shard(id)
	keys := []string{s.keys.Customer(id), s.keys.CustomerKey("q", id), s.keys.Deadlines(shard), quarantineIndex(s.keys, shard)}
	n, err := quarantine.Run(ctx, s.rdb, keys, id, version, rec).Int()
	if err != nil {
		return false, fmt.Errorf("quarantining customer %s: %w", id, err)
	}
	if n == 1 {
		s.metrics.quarantined.Inc()
	}
	return n == 1, nil
}

func quarantineIndex(keys keyspace.Keyspace, shard int) string {
	return keys.ShardKey("quarantine", shard)
}

// ListQuarantined returns every quarantined customer of a namespace, oldest first.
func ListQuarantined(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) ([]Quarantined, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, keys.Shards())
	for i := range cmds {
		cmds[i] = pipe.HGetAll(ctx, quarantineIndex(keys, i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading the quarantine: %w", err)
	}
	var out []Quarantined
	for _, c := range cmds {
		for id, v := range c.Val() {
			q := Quarantined{Customer: id, Reason: v}
			_ = json.Unmarshal([]byte(v), &q)
			out = append(out, q)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].At.Before(out[j].At) || (out[i].At.Equal(out[j].At) && out[i].Customer < out[j].Customer)
	})
	return out, nil
}

// ErrNotQuarantined is returned by ReleaseQuarantined for a customer not in quarantine.
var ErrNotQuarantined = errors.New("customer is not quarantined")

// QuarantinedCopy returns what was stored for a quarantined customer when it was quarantined,
// as text fields (Current.View): a compact state decoded, a hash's fields, or a description
// of a value of another type.
func QuarantinedCopy(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, id string) (map[string]string, error) {
	key := keys.CustomerKey("q", id)
	t, err := rdb.Type(ctx, key).Result()
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading the kept copy: %w", err)
	case t == "none":
		return nil, nil
	case t == "string":
		raw, err := rdb.Get(ctx, key).Bytes()
		if err != nil {
			return nil, fmt.Errorf("reading the kept copy: %w", err)
		}
		if _, payload, ok := decodeValue(raw); ok {
			return Current{Value: payload}.View(), nil
		}
		return map[string]string{UnreadableField: fmt.Sprintf("a string of %d bytes, not a compact state", len(raw))}, nil
	case t != "hash":
		return map[string]string{UnreadableField: "a Redis " + t}, nil
	}
	return rdb.HGetAll(ctx, key).Result()
}

// ForgetQuarantine removes a customer's quarantine record and kept copy, once its state was
// rebuilt in place of the tombstone (the customer key itself is left alone).
func ForgetQuarantine(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, id string) error {
	if err := rdb.HDel(ctx, quarantineIndex(keys, keys.Shard(id)), id).Err(); err != nil {
		return fmt.Errorf("ending the quarantine of %s: %w", id, err)
	}
	if err := rdb.Del(ctx, keys.CustomerKey("q", id)).Err(); err != nil {
		return fmt.Errorf("ending the quarantine of %s: %w", id, err)
	}
	return nil
}

// ReleaseQuarantined ends a customer's quarantine: the tombstone, the kept copy and the index
// entry go, and the customer's next record starts it afresh (replay its history to rebuild it).
func ReleaseQuarantined(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, id string) error {
	shard := keys.Shard(id)
	n, err := rdb.HDel(ctx, quarantineIndex(keys, shard), id).Result()
	if err != nil {
		return fmt.Errorf("releasing %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", ErrNotQuarantined, id)
	}
	tomb, err := rdb.HGet(ctx, keys.Customer(id), QuarantinedField).Result()
	if err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "WRONGTYPE") {
		return fmt.Errorf("releasing %s: %w", id, err)
	}
	keep := []string{keys.CustomerKey("q", id)}
	if tomb != "" {
		keep = append(keep, keys.Customer(id))
	}
	if err := rdb.Del(ctx, keep...).Err(); err != nil {
		return fmt.Errorf("releasing %s: %w", id, err)
	}
	return nil
}
