package scoring

import (
	"errors"
	"fmt"
	"time"
)

// Kind says what an input event is.
type Kind uint8

// Input event kinds.
const (
	KindPurchase Kind = iota + 1
	KindRefund
	KindLogin
	KindFeedback
)

func (k Kind) String() string {
	switch k {
	case KindPurchase:
		return "PURCHASE"
	case KindRefund:
		return "REFUND"
	case KindLogin:
		return "LOGIN"
	case KindFeedback:
		return "FEEDBACK"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// FeedbackKind says what a feedback event is.
type FeedbackKind uint8

// Feedback kinds.
const (
	FeedbackNPS FeedbackKind = iota + 1
	FeedbackCSAT
	FeedbackComplaintOpened
	FeedbackComplaintClosed
)

func (k FeedbackKind) String() string {
	switch k {
	case FeedbackNPS:
		return "NPS"
	case FeedbackCSAT:
		return "CSAT"
	case FeedbackComplaintOpened:
		return "COMPLAINT_OPENED"
	case FeedbackComplaintClosed:
		return "COMPLAINT_CLOSED"
	}
	return fmt.Sprintf("FeedbackKind(%d)", uint8(k))
}

// Source identifies the input record an event came from. Derived changes
// carry the Source of the input that triggered them (the zero Source for
// changes found by Evaluate).
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Event is one input event for one customer, decoded by the pipeline from
// its topic. Only the fields of its Kind are read:
//
//   - purchase: AmountMinor (>= 0, minor units of Currency), Currency, OrderID
//   - refund: AmountMinor (> 0, the amount refunded), Currency, RefundOfOrderID
//   - login: LoginChannel (informational)
//   - feedback: FeedbackKind; Score (NPS 0–10, CSAT 1–5); CaseID (complaints)
//
// EventID and Source are used for duplicate detection.
type Event struct {
	Kind            Kind
	EventID         string
	CustomerID      string
	OccurredAt      time.Time
	AmountMinor     int64
	Currency        string
	OrderID         string
	RefundOfOrderID string
	FeedbackKind    FeedbackKind
	Score           int
	CaseID          string
	LoginChannel    string
	Source          Source
}

// ErrInvalidEvent is returned (wrapped) by Apply for an event it cannot
// score; the pipeline should dead-letter such events.
var ErrInvalidEvent = errors.New("invalid event")

// MaxCustomerIDLen bounds customer ids so the state's fields stay small.
const MaxCustomerIDLen = 60

var (
	minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Validate checks the fields the event's kind needs against the policy.
func (e Event) Validate(p *Policy) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidEvent, fmt.Sprintf(format, args...))
	}
	switch {
	case e.CustomerID == "":
		return bad("customer_id is empty")
	case len(e.CustomerID) > MaxCustomerIDLen:
		return bad("customer_id is longer than %d bytes", MaxCustomerIDLen)
	case e.EventID == "":
		return bad("event_id is empty")
	case e.OccurredAt.Before(minTime) || !e.OccurredAt.Before(maxTime):
		return bad("occurred_at %s is outside 2000–2199", e.OccurredAt.Format(time.RFC3339))
	case e.Source.Offset < 0:
		return bad("source offset %d is negative", e.Source.Offset)
	}
	switch e.Kind {
	case KindPurchase, KindRefund:
		if e.Currency != p.Currency {
			return bad("currency %q is not the store currency %q", e.Currency, p.Currency)
		}
		if e.AmountMinor < 0 || (e.Kind == KindRefund && e.AmountMinor == 0) {
			return bad("%s amount_minor %d must be positive", e.Kind, e.AmountMinor)
		}
		if e.AmountMinor > 1e13 {
			return bad("amount_minor %d is implausibly large", e.AmountMinor)
		}
	case KindLogin:
	case KindFeedback:
		switch e.FeedbackKind {
		case FeedbackNPS:
			if e.Score < 0 || e.Score > 10 {
				return bad("NPS score %d is outside 0–10", e.Score)
			}
		case FeedbackCSAT:
			if e.Score < 1 || e.Score > 5 {
				return bad("CSAT score %d is outside 1–5", e.Score)
			}
		case FeedbackComplaintOpened, FeedbackComplaintClosed:
		default:
			return bad("unknown feedback kind %d", e.FeedbackKind)
		}
	default:
		return bad("unknown kind %d", e.Kind)
	}
	return nil
}
