package notifier

import "github.com/loyalty-scoring/loyalty/pkg/keyspace"

// keys names the notifier's Redis keys.
//
// The notifier's state belongs to the deployment, not to a namespace: what was decided and
// sent, the cooldowns, the delivery queues and the consumer group's position on the derived
// topics must all survive a promote, or the promoted namespace's notifier would decide and
// send everything again (see Adopt for the move from the per-namespace keys of earlier
// versions). Only the decision records' outbox is the namespace's, because its relay
// publishes them.
//
// Every key carries its customer's shard as the hash tag, the same tag as the customer's state
// hash and the shard's outbox stream in every namespace of the deployment (they share the shard
// count), so one Lua call can check and record a decision, queue its delivery and append its
// record to the outbox atomically on Redis Cluster too.
type keys struct {
	ks keyspace.Keyspace
	d  keyspace.Deployment
}

// customer is the hash of a customer's arbitration state: the last action's event time, kind
// and id, the pending win-back (for pre-emption by care), and, per recent trigger, the Kafka
// position it was decided at ("t:<event id>").
func (k keys) customer(id string) string {
	return k.d.CustomerKey("notify", k.ks.Shard(id), id)
}

// triggers is the sorted set of a customer's recent trigger event ids by event time, capped,
// for idempotency.
func (k keys) triggers(id string) string {
	return k.d.CustomerKey("notify-trig", k.ks.Shard(id), id)
}

// history is the capped list of a customer's recent decisions, newest first, as JSON (what
// `loyaltyctl actions` prints).
func (k keys) history(id string) string {
	return k.d.CustomerKey("notify-log", k.ks.Shard(id), id)
}

// due is the shard's sorted set of action ids waiting for delivery, by the wall-clock time
// (ms) of their next attempt; a claimed action's score is its lease expiry.
func (k keys) due(shard int) string { return k.d.ShardKey("notify-due", shard) }

// pending is the shard's hash of actions waiting for delivery: "<id>" the delivery payload,
// "<id>:a" attempts started, "<id>:f" 1 while an attempt is in flight, "<id>:p" the encoded
// record to publish if care pre-empts it.
func (k keys) pending(shard int) string { return k.d.ShardKey("notify-pending", shard) }

// outbox is the active namespace's outbox stream of the shard, which its relay publishes
// (loyalty.actions.v1 records go through it like every other derived event).
func (k keys) outbox(shard int) string { return k.ks.Outbox(shard) }

// kinds are the key kinds above that the notifier keeps (Adopt moves them).
var (
	customerKinds = []string{"notify", "notify-trig", "notify-log"}
	shardKinds    = []string{"notify-due", "notify-pending"}
)

// CustomerKeys lists the notifier's keys about one customer in deployment d, whose namespaces
// have ks's shard count — arbitration state, recent triggers, decision history — for erasure.
func CustomerKeys(ks keyspace.Keyspace, d keyspace.Deployment, customerID string) []string {
	k := keys{ks: ks, d: d}
	return []string{k.customer(customerID), k.triggers(customerID), k.history(customerID)}
}

// GroupID is the notifier's consumer group on the derived topics: one per deployment, so a
// promote does not move it. Namespace names cannot contain a full stop, so it never collides
// with a per-namespace group ("loyalty-<namespace>-<service>").
func GroupID(d keyspace.Deployment) string { return "loyalty." + d.Name() + "." + Service }
