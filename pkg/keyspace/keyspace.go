// Package keyspace is the one place Redis key names are built: a namespace's keys (Keyspace)
// and a deployment's keys that span its namespaces (Deployment).
//
// Customers are spread over a fixed number of shards (crc32 of the id). Every key of a shard
// — its customers' state hashes, its outbox stream, its deadline set — carries the shard as
// its hash tag ("{s17}"), so on Redis Cluster they share a slot and one Lua call can update a
// customer's state, outbox and deadline atomically; a batch is split by shard. Keys live under
// a namespace, so a replay can build fresh state beside live state and be promoted by
// switching names.
package keyspace

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// DefaultShards is the shard count of new namespaces: enough slot groups to spread over a
// Redis Cluster of a dozen masters, few enough that the relay and the sweeper poll cheaply.
const DefaultShards = 64

// Keyspace builds key names under one namespace.
type Keyspace struct {
	ns     string
	shards int
}

// New returns the keyspace of namespace ns (letters, digits, '-' and '_', at most 32 bytes)
// with the given shard count. The shard count of a namespace must never change once it holds
// data: customers would move shards.
func New(ns string, shards int) (Keyspace, error) {
	if err := ValidateNamespace(ns); err != nil {
		return Keyspace{}, err
	}
	if shards < 1 || shards > maxShards {
		return Keyspace{}, fmt.Errorf("shards: %d is not in 1..%d", shards, maxShards)
	}
	return Keyspace{ns: ns, shards: shards}, nil
}

// Shards returns the shard count.
func (k Keyspace) Shards() int { return k.shards }

// Shard returns the shard of a customer.
func (k Keyspace) Shard(customerID string) int {
	return int(checksumIEEE(customerID) % uint32(k.shards))
}

// checksumIEEE is crc32.ChecksumIEEE of s, a byte at a time: without the conversion to a
// byte slice, which allocated on every key built (several per customer write).
func checksumIEEE(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ (crc >> 8)
	}
	return ^crc
}

// ValidateNamespace checks a namespace name.
func ValidateNamespace(ns string) error {
	if ns == "" || len(ns) > 32 {
		return errors.New("namespace: must be 1 to 32 bytes")
	}
	for _, r := range ns {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("namespace %q: only letters, digits, '-' and '_' are allowed", ns)
		}
	}
	return nil
}

// Namespace returns the namespace name.
func (k Keyspace) Namespace() string { return k.ns }

func tag(shard int) string {
	if shard >= 0 && shard < len(tags) {
		return tags[shard]
	}
	return "{s" + strconv.Itoa(shard) + "}"
}

// tags are the hash tags of every shard a keyspace may have, built once.
var tags = func() []string {
	out := make([]string, maxShards)
	for i := range out {
		out[i] = "{s" + strconv.Itoa(i) + "}"
	}
	return out
}()

// maxShards bounds a keyspace's shard count.
const maxShards = 4096

// Customer is the hash holding a customer's state. Only the shard is inside the hash tag, so
// braces in a customer id cannot move the key to another slot.
func (k Keyspace) Customer(id string) string {
	return "loy:" + k.ns + ":c:" + tag(k.Shard(id)) + ":" + id
}

// CustomerOfKey is the customer id of a key Customer returned ("" for another key).
func (k Keyspace) CustomerOfKey(key string) string {
	rest, ok := strings.CutPrefix(key, "loy:"+k.ns+":c:{s")
	if !ok {
		return ""
	}
	_, id, ok := strings.Cut(rest, "}:")
	if !ok {
		return ""
	}
	return id
}

// Outbox is the shard's stream of derived events waiting to be published.
func (k Keyspace) Outbox(shard int) string { return "loy:" + k.ns + ":outbox:" + tag(shard) }

// OutboxBell is the Pub/Sub channel (not a key) on which a write that appends outbox entries
// to any shard of the namespace publishes, so the relay wakes at once instead of at its next
// poll.
func (k Keyspace) OutboxBell() string { return "loy:" + k.ns + ":outbox-bell" }

// Deadlines is the shard's sorted set of customer ids by next inactivity deadline (ms).
func (k Keyspace) Deadlines(shard int) string { return "loy:" + k.ns + ":due:" + tag(shard) }

// Histogram is the shard's hash of population histogram counters (RFM cut points).
func (k Keyspace) Histogram(shard int) string { return "loy:" + k.ns + ":hist:" + tag(shard) }

// Journal is the stream of increments written to a counter hash (Histogram or KPI) and not
// yet folded into it, in the hash's slot: a write appends one entry instead of one HINCRBY
// per field, and readers add the entries to the hash (package state, "counter journal").
func (k Keyspace) Journal(counters string) string { return counters + ":journal" }

// Transitions is the customer's list of its latest tier, churn and segment changes, newest
// first, in the customer's slot.
func (k Keyspace) Transitions(id string) string { return k.CustomerKey("tx", id) }

// KPI is the shard's hash of KPI counters (package kpi).
func (k Keyspace) KPI(shard int) string { return "loy:" + k.ns + ":kpi:" + tag(shard) }

// Prefix returns the prefix of every key of the namespace, for SCAN-based maintenance.
func (k Keyspace) Prefix() string { return "loy:" + k.ns + ":" }

// Global is a namespace-wide key that belongs to no customer (cut points, watermarks,
// leases): "loy:<ns>:<name>".
func (k Keyspace) Global(name string) string { return "loy:" + k.ns + ":" + name }

// Policy holds the namespace's own scoring policy (YAML), set by a replay with its own
// policy and carried into live by promotion.
func (k Keyspace) Policy() string { return k.Global("policy") }

// CutpointBoundaries is the hash of the namespace's sealed cut-point boundaries.
func (k Keyspace) CutpointBoundaries() string { return k.Global("cutpoint-boundaries") }

// Watermarks is the namespace's hash of event-time positions per input partition.
func (k Keyspace) Watermarks() string { return k.Global("watermarks") }

// Replay holds the metadata of the replay that builds the namespace (JSON).
func (k Keyspace) Replay() string { return k.Global("replay") }

// Lease is the lease of one shard for one role ("relay", "sweeper"): the process holding it
// works that shard. It carries the shard's hash tag.
func (k Keyspace) Lease(role string, shard int) string {
	return k.Global("lease:"+role+":") + tag(shard)
}

// Leases returns the leases of every shard for a role, in shard order.
func (k Keyspace) Leases(role string) []string {
	out := make([]string, k.shards)
	for i := range out {
		out[i] = k.Lease(role, i)
	}
	return out
}

// CustomerKey is a per-customer key of another component (kind names it, e.g. "notify"),
// in the customer's shard: "loy:<ns>:<kind>:{s<shard>}:<id>".
func (k Keyspace) CustomerKey(kind, id string) string {
	return k.Prefix() + kind + ":" + tag(k.Shard(id)) + ":" + id
}

// ShardKey is a per-shard key of another component (kind names it, e.g. "notify-due"):
// "loy:<ns>:<kind>:{s<shard>}".
func (k Keyspace) ShardKey(kind string, shard int) string {
	return k.Prefix() + kind + ":" + tag(shard)
}

// Deployment builds the keys of one installation sharing a Redis, which span its namespaces.
type Deployment struct {
	name string
}

// NewDeployment returns the keys of deployment name (the same rules as a namespace name).
func NewDeployment(name string) (Deployment, error) {
	if err := ValidateNamespace(name); err != nil {
		return Deployment{}, fmt.Errorf("deployment: %w", err)
	}
	return Deployment{name: name}, nil
}

// Name returns the deployment name.
func (d Deployment) Name() string { return d.name }

// Prefix starts every key of the deployment: "loyd:<deployment>:".
func (d Deployment) Prefix() string { return "loyd:" + d.name + ":" }

// Active holds the name of the deployment's active namespace; absent means the configured
// LOYALTY_NAMESPACE.
func (d Deployment) Active() string { return "loyd:" + d.name + ":active" }

// Namespaces is the set of every namespace of the deployment that ever held state (for
// erasure).
func (d Deployment) Namespaces() string { return "loyd:" + d.name + ":namespaces" }

// Retired is the set of namespaces that were live before a promote and whose outboxes may
// still hold derived events and action records to publish on the live topics: the relay of
// the active namespace publishes them, then forgets the namespace. Its hash tag is the whole
// Active key, so both are in one slot and a promote switches them in one transaction on Redis
// Cluster too.
func (d Deployment) Retired() string { return "loyd:" + d.name + ":retired{" + d.Active() + "}" }

// LegacyRetired is where versions before the hash-tagged Retired recorded retired namespaces;
// they are still read and forgotten there.
func (d Deployment) LegacyRetired() string { return "loyd:" + d.name + ":retired" }

// Erased is the deployment's set of erased customer ids (the suppression list).
func (d Deployment) Erased() string { return "loyd:" + d.name + ":erased" }

// Global is a deployment-wide key of another component that belongs to no customer or shard:
// "loyd:<deployment>:<name>".
func (d Deployment) Global(name string) string { return "loyd:" + d.name + ":" + name }

// CustomerKey is a per-customer key that belongs to the deployment rather than to one
// namespace, so it survives a promote (the notifier's arbitration state, say):
// "loyd:<deployment>:<kind>:{s<shard>}:<id>". shard is the customer's shard in the
// deployment's namespaces (Keyspace.Shard), so the key shares its slot with the customer's
// namespace keys and one Lua call may touch both on Redis Cluster.
func (d Deployment) CustomerKey(kind string, shard int, id string) string {
	return "loyd:" + d.name + ":" + kind + ":" + tag(shard) + ":" + id
}

// ShardKey is a per-shard key that belongs to the deployment:
// "loyd:<deployment>:<kind>:{s<shard>}".
func (d Deployment) ShardKey(kind string, shard int) string {
	return "loyd:" + d.name + ":" + kind + ":" + tag(shard)
}

// HashTag returns the part of a key Redis Cluster hashes (the first "{...}" with content),
// or the whole key. It is exported for slot grouping and tests.
func HashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}
