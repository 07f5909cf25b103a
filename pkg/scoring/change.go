package scoring

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Change is a derived event: *TierChange, *ChurnRiskChange or
// *SegmentChange. The pipeline type-switches on it to build the output
// record; every field maps one to one onto the output schema.
type Change interface {
	// ID is the deterministic event id (see EventID).
	ID() string
	// Customer is the customer the change is about.
	Customer() string
}

// Direction of a tier change.
type Direction string

// Tier change directions. A WARNING leaves the tier unchanged (From == To).
const (
	DirectionUp      Direction = "UP"
	DirectionDown    Direction = "DOWN"
	DirectionWarning Direction = "WARNING"
)

// Reason explains a change: a stable machine code, a sentence for people
// and the number behind it.
type Reason struct {
	Code    string
	Message string
	Value   float64
}

// Reason codes.
const (
	ReasonSpendQualifies = "SPEND_QUALIFIES"
	ReasonReviewMissed   = "REVIEW_SPEND_BELOW_THRESHOLD"
	ReasonReviewAtRisk   = "REVIEW_ON_PACE_TO_MISS"
	ReasonRefundReversal = "REFUND_REVERSED_QUALIFYING_SPEND"
	ReasonPAlive         = "P_ALIVE"
	ReasonPurchaseGap    = "PURCHASE_GAP"
	ReasonLoginDecline   = "LOGIN_DECLINE"
	ReasonNPSDetractor   = "NPS_DETRACTOR"
	ReasonLowCSAT        = "LOW_CSAT"
	ReasonOpenComplaint  = "OPEN_COMPLAINT"
	ReasonRiskSubsided   = "RISK_SUBSIDED"
	ReasonRulesFallback  = "RULES_FALLBACK"
	ReasonRecency        = "RECENCY"
	ReasonFrequency      = "FREQUENCY"
	ReasonMonetary       = "MONETARY"
)

// TierChange reports a tier upgrade, downgrade or review warning.
type TierChange struct {
	EventID       string
	CustomerID    string
	From, To      string // tier names from the policy
	Direction     Direction
	Reasons       []Reason
	PolicyVersion string
	OccurredAt    time.Time
	Source        Source
}

// ChurnRiskChange reports a change of churn-risk level. PAlive is -1 when
// the level came from the rules fallback (ModelVersion is the policy's
// rules_version).
type ChurnRiskChange struct {
	EventID      string
	CustomerID   string
	FromLevel    Level
	ToLevel      Level
	Score        float64
	PAlive       float64
	Reasons      []Reason
	ModelVersion string
	OccurredAt   time.Time
	Source       Source
}

// SegmentChange reports a change of RFM segment or value layer.
type SegmentChange struct {
	EventID     string
	CustomerID  string
	FromSegment Segment
	ToSegment   Segment
	ValueLayer  ValueLayer
	// FromValueLayer is the layer before the change (LayerNone before the first segment).
	FromValueLayer   ValueLayer
	RFM              RFM
	CutpointsVersion string
	// PolicyVersion is the policy the change was computed with.
	PolicyVersion string
	// Reasons are the raw recency, frequency and monetary measures behind the scores.
	Reasons    []Reason
	OccurredAt time.Time
	Source     Source
}

// ID implements Change.
func (c *TierChange) ID() string { return c.EventID }

// ID implements Change.
func (c *ChurnRiskChange) ID() string { return c.EventID }

// ID implements Change.
func (c *SegmentChange) ID() string { return c.EventID }

// Customer implements Change.
func (c *TierChange) Customer() string { return c.CustomerID }

// Customer implements Change.
func (c *ChurnRiskChange) Customer() string { return c.CustomerID }

// Customer implements Change.
func (c *SegmentChange) Customer() string { return c.CustomerID }

// TierEventID is the id (EventID) of a tier change in direction to tier to; ChurnEventID and
// SegmentEventID are those of the other kinds. A transition list entry holds the change's
// kind, values and time, so its reader derives the id again from them
// (pipeline.ParseTransition): these are the one definition both sides use.
func TierEventID(customerID, direction, to string, at time.Time) string {
	return EventID(customerID, "tier", direction+":"+to, at)
}

// ChurnEventID is the id of a change to churn level level (see TierEventID).
func ChurnEventID(customerID, level string, at time.Time) string {
	return EventID(customerID, "churn", level, at)
}

// SegmentEventID is the id of a change to segment and value layer (see TierEventID).
func SegmentEventID(customerID, segment, layer string, at time.Time) string {
	return EventID(customerID, "segment", segment+"/"+layer, at)
}

// EventID is the deterministic id of a derived event: the hex SHA-256 of
// the customer id, the change kind ("tier", "churn", "segment"), the new
// state value and the event time in Unix milliseconds, each
// length-prefixed so no two inputs collide. A replay reproduces it.
func EventID(customerID, kind, newValue string, at time.Time) string {
	h := sha256.New()
	var n [8]byte
	for _, s := range []string{customerID, kind, newValue} {
		binary.BigEndian.PutUint32(n[:4], uint32(len(s)))
		h.Write(n[:4])
		h.Write([]byte(s))
	}
	binary.BigEndian.PutUint64(n[:], uint64(at.UnixMilli()))
	h.Write(n[:])
	return hex.EncodeToString(h.Sum(nil))
}
