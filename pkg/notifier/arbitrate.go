package notifier

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

var (
	//go:embed decide.lua
	decideLua    string
	decideScript = redisconn.NewScript("notifier-decide", decideLua)
)

// Limits of the per-customer arbitration state.
const (
	// triggerCap is how many recent trigger ids a customer's idempotency set keeps. Triggers
	// are level and tier changes (days apart), so this covers years; a redelivery is minutes
	// or hours late.
	triggerCap = 256
	// HistoryCap is how many decision entries `loyaltyctl actions` can show per customer.
	HistoryCap = 50
)

// Suppression reasons, the reason field of SUPPRESSED records.
const (
	ReasonDuplicate     = "duplicate"
	ReasonReplay        = "replay"
	ReasonOpenComplaint = "open_complaint"
	ReasonCooldown      = "cooldown"
	ReasonPreempted     = "preempted_by_care"
	ReasonHoldout       = "holdout"
)

// ActionID is the stable id of the action a trigger leads to: the first 32 hex digits of the
// SHA-256 of the trigger's event id and the action kind. It is also the webhook's
// Idempotency-Key, so every delivery attempt of one action, before or after a restart,
// carries the same key.
func ActionID(triggerEventID string, kind event.ActionKind) string {
	return hashID("action", triggerEventID, string(kind))
}

func hashID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// HeldOut reports whether a customer is in the hold-out group: the first 8 bytes of
// SHA-256(salt, customer id) modulo one million, below percent × 10,000. The same customer is
// always in or always out for a given salt; change the salt to draw a new group.
func HeldOut(salt, customerID string, percent float64) bool {
	if percent <= 0 {
		return false
	}
	sum := sha256.Sum256([]byte(salt + "\x00" + customerID))
	return float64(binary.BigEndian.Uint64(sum[:8])%1_000_000) < percent*10_000
}

// Status is what arbitration decided for one trigger.
type Status string

// Statuses of a decision.
const (
	// StatusRepeat: the same Kafka record was decided before (a redelivery after a crash or
	// rebalance); nothing new happens.
	StatusRepeat     Status = "REPEAT"
	StatusSuppressed Status = "SUPPRESSED"
	StatusHeldOut    Status = "HELD_OUT"
	// StatusSend: the action is queued for delivery.
	StatusSend Status = "SEND"
)

// Decision is the outcome of arbitrating one trigger.
type Decision struct {
	ActionID string
	Kind     event.ActionKind
	Status   Status
	Reason   string
	// Preempted is the id of a pending win-back this care action withdrew, if any.
	Preempted string
}

// Encoder turns events into record values (codec.Codec).
type Encoder interface {
	Encode(e event.Event) ([]byte, error)
}

// arbiter runs the decide script.
type arbiter struct {
	rdb   redis.UniversalClient
	keys  keys
	enc   Encoder
	rules *Rules
	now   func() time.Time
	// policy is the scoring policy in force (its allowed lateness dates the exposures' outcomes).
	policy func() *scoring.Policy
}

// pendingAction is what the delivery queue stores for an action: everything a delivery
// attempt and the final record need, and the exact webhook body, so every attempt sends the
// same bytes.
type pendingAction struct {
	ActionID       string           `json:"action_id"`
	Kind           event.ActionKind `json:"kind"`
	CustomerID     string           `json:"customer_id"`
	TriggerEventID string           `json:"trigger_event_id"`
	Position       event.Source     `json:"position"`
	Rule           string           `json:"rule"`
	Channel        string           `json:"channel"`
	DecidedAt      time.Time        `json:"decided_at"`
	Body           []byte           `json:"body"`
}

// decide arbitrates one trigger whose matched rule gives kind, atomically in Redis.
func (a *arbiter) decide(ctx context.Context, t Trigger, f Facts, rule *Rule, channel string) (Decision, error) {
	customer := t.CustomerID()
	trigger := t.EventID()
	action := ActionID(trigger, rule.Kind)
	decidedAt := a.now().UTC()
	pos := fmt.Sprintf("%s/%d/%d", t.Position.Topic, t.Position.Partition, t.Position.Offset)
	dupID := hashID("duplicate", trigger, string(rule.Kind), pos)

	rec := func(id string, outcome event.ActionOutcome, reason string) ([]byte, error) {
		v, err := a.enc.Encode(event.ActionDecided{ActionID: id, CustomerID: customer, DecidedAt: decidedAt,
			Kind: rule.Kind, Outcome: outcome, Reason: reason, TriggerEventID: trigger, Channel: channel})
		if err != nil {
			return nil, fmt.Errorf("encoding action record: %w", err)
		}
		return v, nil
	}
	records := make([]any, 0, 6)
	for _, r := range []struct {
		id      string
		outcome event.ActionOutcome
		reason  string
	}{
		{dupID, event.OutcomeSuppressed, ReasonDuplicate},
		{action, event.OutcomeSuppressed, ReasonReplay},
		{action, event.OutcomeSuppressed, ReasonOpenComplaint},
		{action, event.OutcomeSuppressed, ReasonCooldown},
		{action, event.OutcomeHeldOut, ReasonHoldout},
		{action, event.OutcomeSuppressed, ReasonPreempted},
	} {
		v, err := rec(r.id, r.outcome, r.reason)
		if err != nil {
			return Decision{}, err
		}
		records = append(records, v)
	}
	body, err := json.Marshal(webhookBody(t, f, rule, a.rules.Version, action, decidedAt))
	if err != nil {
		return Decision{}, fmt.Errorf("encoding webhook body: %w", err)
	}
	payload, err := json.Marshal(pendingAction{ActionID: action, Kind: rule.Kind, CustomerID: customer,
		TriggerEventID: trigger, Position: t.Position, Rule: rule.Name, Channel: channel, DecidedAt: decidedAt, Body: body})
	if err != nil {
		return Decision{}, fmt.Errorf("encoding pending action: %w", err)
	}
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	shard := a.keys.ks.Shard(customer)
	ks := []string{a.keys.customer(customer), a.keys.triggers(customer), a.keys.history(customer),
		a.keys.due(shard), a.keys.pending(shard), a.keys.outbox(shard), a.keys.exposures(shard)}
	exposure, due30, due90 := exposureOf(rule.Kind, customer, t.OccurredAt(), a.policy())
	args := []any{trigger, t.OccurredAt().UnixMilli(), pos, string(rule.Kind), action, a.rules.Cooldown.Milliseconds(),
		flag(t.Replay()), flag(f.OpenComplaints > 0), flag(HeldOut(a.rules.HoldoutSalt, customer, a.rules.HoldoutPercent)),
		decidedAt.UnixMilli(), payload, customer, event.TopicActions, dupID}
	args = append(args, records...)
	args = append(args, rule.Name, channel, decidedAt.Format(time.RFC3339Nano), triggerCap, HistoryCap, exposure, due30, due90, a.keys.ks.OutboxBell())
	res, err := decideScript.Run(ctx, a.rdb, ks, args...).StringSlice()
	if err != nil {
		return Decision{}, fmt.Errorf("arbitrating trigger %s: %w", trigger, err)
	}
	if len(res) != 3 {
		return Decision{}, fmt.Errorf("arbitrating trigger %s: unexpected script reply %q", trigger, res)
	}
	d := Decision{ActionID: action, Kind: rule.Kind, Status: Status(res[0]), Reason: res[1], Preempted: res[2]}
	if d.Reason == ReasonDuplicate {
		d.ActionID = dupID
	}
	return d, nil
}

// WebhookBody is the JSON body of every webhook (see docs/webhooks.md).
type WebhookBody struct {
	ActionID       string           `json:"action_id"`
	IdempotencyKey string           `json:"idempotency_key"`
	Kind           event.ActionKind `json:"kind"`
	CustomerID     string           `json:"customer_id"`
	DecidedAt      time.Time        `json:"decided_at"`
	Rule           string           `json:"rule"`
	RulesVersion   string           `json:"rules_version"`
	Trigger        WebhookTrigger   `json:"trigger"`
	Customer       WebhookCustomer  `json:"customer"`
}

// WebhookTrigger describes the derived event that caused the action. Churn is set for a
// churn-risk change, Tier for a tier change.
type WebhookTrigger struct {
	EventID    string         `json:"event_id"`
	Type       string         `json:"type"` // churn_risk or tier_change
	OccurredAt time.Time      `json:"occurred_at"`
	Reasons    []event.Reason `json:"reasons"`
	Churn      *WebhookChurn  `json:"churn,omitempty"`
	Tier       *WebhookTier   `json:"tier,omitempty"`
}

// WebhookChurn is a churn-risk level change.
type WebhookChurn struct {
	FromLevel event.ChurnLevel `json:"from_level"`
	ToLevel   event.ChurnLevel `json:"to_level"`
	Score     float64          `json:"score"`
	PAlive    float64          `json:"p_alive"` // -1 when the rules fallback scored the customer
}

// WebhookTier is a tier change or review warning.
type WebhookTier struct {
	FromTier  event.Tier          `json:"from_tier"`
	ToTier    event.Tier          `json:"to_tier"`
	Direction event.TierDirection `json:"direction"`
}

// WebhookCustomer is what the notifier knew about the customer when it decided.
type WebhookCustomer struct {
	Tier           string `json:"tier,omitempty"`
	CLVMinor       int64  `json:"clv_minor"`
	CLVTop         bool   `json:"clv_top"`
	OpenComplaints int    `json:"open_complaints"`
}

func webhookBody(t Trigger, f Facts, rule *Rule, version, action string, decidedAt time.Time) WebhookBody {
	b := WebhookBody{ActionID: action, IdempotencyKey: action, Kind: rule.Kind, CustomerID: t.CustomerID(),
		DecidedAt: decidedAt, Rule: rule.Name, RulesVersion: version,
		Trigger:  WebhookTrigger{EventID: t.EventID(), Type: t.On(), OccurredAt: t.OccurredAt().UTC()},
		Customer: WebhookCustomer{Tier: f.Tier, CLVMinor: int64(f.CLVMinor + 0.5), CLVTop: f.CLVTop, OpenComplaints: f.OpenComplaints}}
	if c := t.Churn; c != nil {
		b.Trigger.Reasons = c.Reasons
		b.Trigger.Churn = &WebhookChurn{FromLevel: c.FromLevel, ToLevel: c.ToLevel, Score: c.Score, PAlive: c.PAlive}
	} else {
		b.Trigger.Reasons = t.Tier.Reasons
		b.Trigger.Tier = &WebhookTier{FromTier: t.Tier.FromTier, ToTier: t.Tier.ToTier, Direction: t.Tier.Direction}
	}
	if b.Trigger.Reasons == nil {
		b.Trigger.Reasons = []event.Reason{}
	}
	return b
}

// HistoryEntry is one line of a customer's decision history.
type HistoryEntry struct {
	ActionID       string           `json:"action_id"`
	Kind           event.ActionKind `json:"kind"`
	Outcome        string           `json:"outcome"` // an event.ActionOutcome, or PENDING
	Reason         string           `json:"reason"`
	TriggerEventID string           `json:"trigger_event_id"`
	Rule           string           `json:"rule"`
	Channel        string           `json:"channel"`
	DecidedAt      string           `json:"decided_at"`
	SettledAt      string           `json:"settled_at,omitempty"`
	Attempts       int              `json:"attempts"`
}

// History returns up to n of a customer's most recent decision entries, newest first. An
// action that was queued and then delivered appears twice: PENDING, then its outcome.
func History(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, d keyspace.Deployment, customerID string, n int) ([]HistoryEntry, error) {
	k := keys{ks: ks, d: d}
	raw, err := rdb.LRange(ctx, k.history(customerID), 0, int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("reading decision history: %w", err)
	}
	out := make([]HistoryEntry, 0, len(raw))
	for i, r := range raw {
		var e HistoryEntry
		if err := json.Unmarshal([]byte(r), &e); err != nil {
			return nil, fmt.Errorf("decoding history entry %d: %w", i, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// HistoryKey is the Redis list holding a customer's decision history, newest first (JSON
// HistoryEntry values, capped at HistoryCap) in deployment d, whose namespaces have ks's
// shard count.
func HistoryKey(ks keyspace.Keyspace, d keyspace.Deployment, customerID string) string {
	return keys{ks: ks, d: d}.history(customerID)
}
