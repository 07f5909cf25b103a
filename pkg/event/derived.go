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
	Code    string
	Message string
	Value   float64
}

// Source is the input record that triggered a derived event.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

// TierChanged is published on TopicTierChanges.
type TierChanged struct {
	EventID       string
	CustomerID    string
	OccurredAt    time.Time
	FromTier      Tier
	ToTier        Tier
	Direction     TierDirection
	Reasons       []Reason
	PolicyVersion string
	Replay        bool
	Source        Source
}

// ChurnRiskChanged is published on TopicChurnRisk.
type ChurnRiskChanged struct {
	EventID      string
	CustomerID   string
	OccurredAt   time.Time
	FromLevel    ChurnLevel
	ToLevel      ChurnLevel
	Score        float64
	PAlive       float64
	Reasons      []Reason
	ModelVersion string
	Replay       bool
	Source       Source
}

// RFM holds recency, frequency and monetary scores, each 1–5.
type RFM struct {
	R, F, M int32
}

// SegmentChanged is published on TopicSegmentChanges.
type SegmentChanged struct {
	EventID          string
	CustomerID       string
	OccurredAt       time.Time
	FromSegment      string
	ToSegment        string
	ValueLayer       string
	RFM              RFM
	CutpointsVersion string
	Replay           bool
	Source           Source
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
	ActionID       string
	CustomerID     string
	DecidedAt      time.Time
	Kind           ActionKind
	Outcome        ActionOutcome
	Reason         string
	TriggerEventID string
	Channel        string
}

// DeadLetter wraps a record that could not be processed, on TopicDeadLetter.
type DeadLetter struct {
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	Key             []byte
	Value           []byte
	ErrorCode       string
	ErrorMessage    string
	Service         string
	FailedAt        time.Time
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
