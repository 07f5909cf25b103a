// Package event defines the typed contracts of the pipeline: the input events it consumes
// (purchases, logins, feedback), the derived events it emits (tier, churn-risk and segment
// changes), the notifier's decisions, the dead-letter envelope, and the versioned topic names
// they travel on. Field names follow the Avro schemas in schemas/, which are the public
// contract; this package is their Go face and has no I/O.
package event

import "time"

// Topic names, versioned by suffix. This is the one place they are defined in code; Streams
// maps them to their schemas and consumers. The schema manifest names the same topics and a
// test keeps the two in step.
const (
	TopicPurchases      = "loyalty.purchases.v1"
	TopicLogins         = "loyalty.logins.v1"
	TopicFeedback       = "loyalty.feedback.v1"
	TopicTierChanges    = "loyalty.tier-changes.v1"
	TopicChurnRisk      = "loyalty.churn-risk.v1"
	TopicSegmentChanges = "loyalty.segment-changes.v1"
	TopicActions        = "loyalty.actions.v1"
	TopicDeadLetter     = "loyalty.dlq.v1"
	TopicErasures       = "loyalty.erasures.v1"
)

// Event is any record with an Avro contract. Schema names the schema in the manifest.
type Event interface {
	Schema() string
}

// Input is an event a customer caused; every input carries the same three identifying fields.
type Input interface {
	Event
	ID() string
	Customer() string
	Time() time.Time
}

// PurchaseKind says whether a purchase record adds or removes spend.
type PurchaseKind string

// Purchase kinds.
const (
	KindPurchase PurchaseKind = "PURCHASE"
	KindRefund   PurchaseKind = "REFUND"
)

// Purchase is a completed order or a refund of one. Amounts are integer minor units (cents)
// of Currency and always positive; Kind says which way they count.
type Purchase struct {
	EventID         string       `json:"event_id"`
	CustomerID      string       `json:"customer_id"`
	OccurredAt      time.Time    `json:"occurred_at"`
	OrderID         string       `json:"order_id"`
	Kind            PurchaseKind `json:"kind"`
	AmountMinor     int64        `json:"amount_minor"`
	Currency        string       `json:"currency"`
	RefundOfOrderID string       `json:"refund_of_order_id,omitempty"` // optional; empty means absent
	Channel         string       `json:"channel,omitempty"`            // optional; empty means absent
}

// LoginChannel is where a customer signed in.
type LoginChannel string

// Login channels.
const (
	ChannelWeb   LoginChannel = "WEB"
	ChannelApp   LoginChannel = "APP"
	ChannelStore LoginChannel = "STORE"
)

// Login is a customer signing in.
type Login struct {
	EventID    string       `json:"event_id"`
	CustomerID string       `json:"customer_id"`
	OccurredAt time.Time    `json:"occurred_at"`
	Channel    LoginChannel `json:"channel"`
}

// FeedbackKind is the kind of a feedback record.
type FeedbackKind string

// Feedback kinds.
const (
	FeedbackNPS             FeedbackKind = "NPS"
	FeedbackCSAT            FeedbackKind = "CSAT"
	FeedbackComplaintOpened FeedbackKind = "COMPLAINT_OPENED"
	FeedbackComplaintClosed FeedbackKind = "COMPLAINT_CLOSED"
)

// Feedback is an NPS or CSAT answer, or a complaint case opened or closed.
type Feedback struct {
	EventID    string       `json:"event_id"`
	CustomerID string       `json:"customer_id"`
	OccurredAt time.Time    `json:"occurred_at"`
	Kind       FeedbackKind `json:"kind"`
	Score      *int32       `json:"score,omitempty"`   // NPS 0–10 or CSAT 1–5; nil for complaints
	CaseID     string       `json:"case_id,omitempty"` // complaint case; empty means absent
}

// Schema implements Event.
func (Purchase) Schema() string { return "Purchase" }

// Schema implements Event.
func (Login) Schema() string { return "Login" }

// Schema implements Event.
func (Feedback) Schema() string { return "Feedback" }

// ID implements Input.
func (p Purchase) ID() string { return p.EventID }

// ID implements Input.
func (l Login) ID() string { return l.EventID }

// ID implements Input.
func (f Feedback) ID() string { return f.EventID }

// Customer implements Input.
func (p Purchase) Customer() string { return p.CustomerID }

// Customer implements Input.
func (l Login) Customer() string { return l.CustomerID }

// Customer implements Input.
func (f Feedback) Customer() string { return f.CustomerID }

// Time implements Input.
func (p Purchase) Time() time.Time { return p.OccurredAt }

// Time implements Input.
func (l Login) Time() time.Time { return l.OccurredAt }

// Time implements Input.
func (f Feedback) Time() time.Time { return f.OccurredAt }
