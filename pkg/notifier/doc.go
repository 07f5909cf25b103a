// Package notifier turns tier and churn-risk changes into actions for the teams that act on
// them — care (support), win-back (marketing), VIP welcome, downgrade warning — and makes
// sure each reaches its receiver once, signed, with every decision on record.
//
// # Flow
//
// A consumer group reads loyalty.tier-changes.v1 and loyalty.churn-risk.v1. For each trigger
// the notifier reads the customer's stored state (tier, open complaints, CLV), takes the first
// rule of the rules file (YAML, default_rules.yaml) that matches, and arbitrates with one Lua
// call (decide.lua) that, atomically for the customer:
//
//  1. skips a trigger already decided at the same Kafka position (a redelivery: nothing new),
//     and records a trigger whose event id was decided before at another position as
//     SUPPRESSED "duplicate" — so a redelivered trigger never produces a second action;
//  2. records a replay-marked trigger as SUPPRESSED "replay" and never acts on it;
//  3. records a WIN_BACK for a customer with an open complaint as SUPPRESSED "open_complaint";
//  4. enforces the cooldown: at most one action per customer per cooldown window across all
//     kinds (SUPPRESSED "cooldown"), except that CARE may follow a WIN_BACK inside the window
//     and withdraws it if it still waits for delivery (SUPPRESSED "preempted_by_care"); a
//     WIN_BACK never pre-empts a CARE;
//  5. records a customer of the hold-out group as HELD_OUT (the would-be action still starts
//     the cooldown, so the control group is comparable with the treated one);
//  6. otherwise queues the action for delivery (the shard's pending hash and due set).
//
// Every record of a decision is an event.ActionDecided appended, in the same atomic step, to
// the shard's outbox stream, which the relay publishes on loyalty.actions.v1: a decision and
// its record cannot part. Sent and failed actions get their record when delivery settles
// (settle.lua), again atomically with removing the action from the queue.
//
// # Time
//
// The cooldown runs on event time: an action's time is its trigger's occurred_at, and a new
// action is allowed when its trigger's time is at least the cooldown after the latest action's
// (a trigger older than the latest action is inside the window too). Event time makes the
// decisions deterministic — a redelivery, a restart or a backlog processed hours late decides
// exactly as the live run would have — and it is the clock the rest of the pipeline scores in;
// the wall clock would let a consumer outage shorten a customer's cooldown. The wall clock is
// used only for decided_at, delivery scheduling and signature timestamps.
//
// # CLV in the top 20%
//
// A customer's CLV (CLVMinor) is the BG/NBD expected purchases over the horizon, with the
// scoring policy's population parameters, times the Gamma-Gamma expected spend (rules file),
// discounted; it is computed from the stored state as of the trigger's day. The top threshold
// is the smallest CLV among the top fraction of a sample of stored customers, recomputed
// every clv.refresh and kept in Redis (loy:<ns>:notifier:clv-threshold) so every notifier uses
// the same figure; until min_sample customers exist nobody counts as top. A fixed
// clv.threshold_minor replaces the population threshold.
//
// # Delivery
//
// The deliverer claims due actions with a lease (claim.lua), delivers them on their kind's
// channel — a signed webhook, or the log for development — and settles each attempt: 2xx is
// SENT; 408, 425, 429, 5xx, timeouts and network errors are retried with exponential backoff
// and jitter until MaxAttempts, then DEAD_LETTERED; any other status is FAILED at once. Both
// failures go to loyalty.dlq.v1 (the envelope's value is the webhook body) before they are
// settled. A process that dies mid-delivery leaves its claim to expire, and the action is
// delivered again with the same Idempotency-Key (the action id, a hash of the trigger's event
// id and the kind): an action is never lost, and a receiver that honours the key never acts
// twice. docs/webhooks.md is the receivers' contract.
//
// # Keys
//
// Every notifier key carries the customer's shard hash tag (see keys.go), so each script runs
// on one Redis Cluster slot. Per customer: arbitration state, recent trigger ids (capped), and
// the decision history `loyaltyctl actions` prints (capped at HistoryCap). The keys and the
// consumer group (GroupID) belong to the deployment, not to a namespace, so a promote neither
// repeats nor orphans a decision or a queued delivery; Adopt moves what an earlier version
// kept per namespace.
package notifier
