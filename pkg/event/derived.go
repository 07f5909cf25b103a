package event

import "time"

// Tier is a loyalty tier, lowest first.
type Tier string

// Tiers.
const (
	TierBronze   Tier = "BRONZE"
	TierSilver   Tier = "SILVER"
	TierGold     Tier = "GOLD"
	TierPlatinum Tier = "PLATINUM"
)

// TierDirection says what a tier change is.
type TierDirection string

// Tier directions. WARNING announces a coming review the customer is on pace to miss; the
// tier itself does not change (from and to are equal).
const (
	DirectionUp      TierDirection = "UP"
	DirectionDown    TierDirection = "DOWN"
	DirectionWarning TierDirection = "WARNING"
)

// ChurnLevel is a churn-risk level.
type ChurnLevel string

// Churn levels.
const (
	ChurnLow    ChurnLevel = "LOW"
	ChurnMedium ChurnLevel = "MEDIUM"
	ChurnHigh   ChurnLevel = "HIGH"
)

// Reason explains a derived event: a machine code, a sentence for people, and the number
// behind it (days, a ratio, a score).
type Reason struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Value   float64 `json:"value"`
}

// Source is the input record that triggered a derived event.
type Source struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// TierChanged is published on TopicTierChanges.
type TierChanged struct {
	EventID       string        `json:"event_id"`
	CustomerID    string        `json:"customer_id"`
	OccurredAt    time.Time     `json:"occurred_at"`
	FromTier      Tier          `json:"from_tier"`
	ToTier        Tier          `json:"to_tier"`
	Direction     TierDirection `json:"direction"`
	Reasons       []Reason      `json:"reasons"`
	PolicyVersion string        `json:"policy_version"`
	Replay        bool          `json:"replay"`
	Source        Source        `json:"source"`
}

// ChurnRiskChanged is published on TopicChurnRisk.
type ChurnRiskChanged struct {
	EventID      string     `json:"event_id"`
	CustomerID   string     `json:"customer_id"`
	OccurredAt   time.Time  `json:"occurred_at"`
	FromLevel    ChurnLevel `json:"from_level"`
	ToLevel      ChurnLevel `json:"to_level"`
	Score        float64    `json:"score"`
	PAlive       float64    `json:"p_alive"`
	Reasons      []Reason   `json:"reasons"`
	ModelVersion string     `json:"model_version"`
	Replay       bool       `json:"replay"`
	Source       Source     `json:"source"`
}

// RFM holds recency, frequency and monetary scores, each 1–5.
type RFM struct {
	R int32 `json:"r"`
	F int32 `json:"f"`
	M int32 `json:"m"`
}

// SegmentChanged is published on TopicSegmentChanges.
type SegmentChanged struct {
	EventID     string    `json:"event_id"`
	CustomerID  string    `json:"customer_id"`
	OccurredAt  time.Time `json:"occurred_at"`
	FromSegment string    `json:"from_segment"`
	ToSegment   string    `json:"to_segment"`
	ValueLayer  string    `json:"value_layer"`
	// FromValueLayer is the layer before the change ("" before the first segment).
	FromValueLayer   string `json:"from_value_layer"`
	RFM              RFM    `json:"rfm"`
	CutpointsVersion string `json:"cutpoints_version"`
	// PolicyVersion is the scoring policy the change was computed with.
	PolicyVersion string `json:"policy_version"`
	// Reasons explain the RFM scores (RECENCY, FREQUENCY, MONETARY with their raw values).
	Reasons []Reason `json:"reasons"`
	Replay  bool     `json:"replay"`
	Source  Source   `json:"source"`
}

// ActionKind is what the notifier decided to do.
type ActionKind string

// Action kinds.
const (
	ActionCare             ActionKind = "CARE"
	ActionWinBack          ActionKind = "WIN_BACK"
	ActionVIPWelcome       ActionKind = "VIP_WELCOME"
	ActionDowngradeWarning ActionKind = "DOWNGRADE_WARNING"
)

// ActionOutcome is what became of a decided action.
type ActionOutcome string

// Action outcomes.
const (
	OutcomeSent         ActionOutcome = "SENT"
	OutcomeSuppressed   ActionOutcome = "SUPPRESSED"
	OutcomeHeldOut      ActionOutcome = "HELD_OUT"
	OutcomeFailed       ActionOutcome = "FAILED"
	OutcomeDeadLettered ActionOutcome = "DEAD_LETTERED"
)

// ActionDecided records one notifier decision on TopicActions.
type ActionDecided struct {
	ActionID       string        `json:"action_id"`
	CustomerID     string        `json:"customer_id"`
	DecidedAt      time.Time     `json:"decided_at"`
	Kind           ActionKind    `json:"kind"`
	Outcome        ActionOutcome `json:"outcome"`
	Reason         string        `json:"reason"`
	TriggerEventID string        `json:"trigger_event_id"`
	Channel        string        `json:"channel"`
}

// DeadLetter wraps a record that could not be processed, on TopicDeadLetter.
type DeadLetter struct {
	SourceTopic     string    `json:"source_topic"`
	SourcePartition int32     `json:"source_partition"`
	SourceOffset    int64     `json:"source_offset"`
	Key             []byte    `json:"key"`
	Value           []byte    `json:"value"`
	ErrorCode       string    `json:"error_code"`
	ErrorMessage    string    `json:"error_message"`
	Service         string    `json:"service"`
	FailedAt        time.Time `json:"failed_at"`
	// ValueTruncated says Value holds only the first bytes of the original value (the
	// envelope had to fit the dead-letter topic's record size limit); ValueSize and
	// ValueSHA256 (lowercase hex) then describe the original, so an operator can find it on
	// its source topic. Envelopes of schema version 1 read as not truncated.
	ValueTruncated bool   `json:"value_truncated"`
	ValueSize      int64  `json:"value_size"`
	ValueSHA256    string `json:"value_sha256"`
	// KeyTruncated says Key holds only the first bytes of the original key.
	KeyTruncated bool `json:"key_truncated"`
}

// Schema implements Event.
func (TierChanged) Schema() string { return "TierChanged" }

// Schema implements Event.
func (ChurnRiskChanged) Schema() string { return "ChurnRiskChanged" }

// Schema implements Event.
func (SegmentChanged) Schema() string { return "SegmentChanged" }

// Schema implements Event.
func (ActionDecided) Schema() string { return "ActionDecided" }

// Schema implements Event.
func (DeadLetter) Schema() string { return "DeadLetter" }

// CustomerErased announces a GDPR erasure on TopicErasures.
type CustomerErased struct {
	EventID     string    `json:"event_id"`
	CustomerID  string    `json:"customer_id"`
	ErasedAt    time.Time `json:"erased_at"`
	RequestedBy string    `json:"requested_by"`
	KeysRemoved int32     `json:"keys_removed"`
}

// Schema implements Event.
func (CustomerErased) Schema() string { return "CustomerErased" }
