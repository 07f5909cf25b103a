package notifier

import "github.com/loyalty-scoring/loyalty/pkg/keyspace"

// keys names the notifier's Redis keys. Every key carries its customer's shard as the hash
// tag, the same tag as the customer's state hash and the shard's outbox stream
// (keyspace.Keyspace), so one Lua call can check and record a decision, queue its delivery
// and append its record to the outbox atomically on Redis Cluster too.
type keys struct {
	ks keyspace.Keyspace
}

// customer is the hash of a customer's arbitration state: the last action's event time, kind
// and id, the pending win-back (for pre-emption by care), and, per recent trigger, the Kafka
// position it was decided at ("t:<event id>").
func (k keys) customer(id string) string {
	return k.ks.CustomerKey("notify", id)
}

// triggers is the sorted set of a customer's recent trigger event ids by event time, capped,
// for idempotency.
func (k keys) triggers(id string) string {
	return k.ks.CustomerKey("notify-trig", id)
}

// history is the capped list of a customer's recent decisions, newest first, as JSON (what
// `loyaltyctl actions` prints).
func (k keys) history(id string) string {
	return k.ks.CustomerKey("notify-log", id)
}

// due is the shard's sorted set of action ids waiting for delivery, by the wall-clock time
// (ms) of their next attempt; a claimed action's score is its lease expiry.
func (k keys) due(shard int) string { return k.ks.ShardKey("notify-due", shard) }

// pending is the shard's hash of actions waiting for delivery: "<id>" the delivery payload,
// "<id>:a" attempts started, "<id>:f" 1 while an attempt is in flight, "<id>:p" the encoded
// record to publish if care pre-empts it.
func (k keys) pending(shard int) string { return k.ks.ShardKey("notify-pending", shard) }

// outbox is the shard's outbox stream, which the relay publishes (loyalty.actions.v1 records
// go through it like every other derived event).
func (k keys) outbox(shard int) string { return k.ks.Outbox(shard) }

// CustomerKeys lists the notifier's keys about one customer in a namespace — arbitration
// state, recent triggers, decision history — for erasure.
func CustomerKeys(ks keyspace.Keyspace, customerID string) []string {
	k := keys{ks: ks}
	return []string{k.customer(customerID), k.triggers(customerID), k.history(customerID)}
}
