package event

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits used by a Validator. The zero value is not useful; start from DefaultLimits.
type Limits struct {
	// MaxFutureSkew is how far past the validator's "now" an occurred_at may lie before the
	// event is rejected (producers' clocks drift; a week-ahead timestamp is a bug).
	MaxFutureSkew time.Duration
	// Earliest is the oldest occurred_at accepted.
	Earliest time.Time
	// MaxAmountMinor is the largest purchase or refund amount accepted, in minor units.
	MaxAmountMinor int64
	// MaxIDLength bounds event, customer, order and case ids, in bytes.
	MaxIDLength int
}

// DefaultLimits are the limits the services start with.
func DefaultLimits() Limits {
	return Limits{
		MaxFutureSkew:  10 * time.Minute,
		Earliest:       time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		MaxAmountMinor: 100_000_000_00, // 100 million in major units: far above any real basket
		MaxIDLength:    128,
	}
}

// Validate reports the first inconsistent limit, naming it.
func (l Limits) Validate() error {
	switch {
	case l.MaxFutureSkew < 0:
		return errors.New("MaxFutureSkew: must not be negative")
	case l.Earliest.IsZero():
		return errors.New("Earliest: must be set")
	case l.MaxAmountMinor <= 0:
		return errors.New("MaxAmountMinor: must be positive")
	case l.MaxIDLength <= 0 || l.MaxIDLength > 1024:
		return errors.New("MaxIDLength: must be in 1..1024")
	}
	return nil
}

// ErrInvalid is matched by errors.Is for every validation failure.
var ErrInvalid = errors.New("invalid event")

// FieldError is one problem with one field.
type FieldError struct {
	Field   string
	Problem string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Problem }

// ValidationError lists every problem found in one event.
type ValidationError struct {
	Schema string
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return fmt.Sprintf("invalid %s: %s", e.Schema, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

type checker struct {
	limits Limits
	now    time.Time
	errs   []FieldError
}

func (c *checker) fail(field, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (c *checker) id(field, v string, required bool) {
	switch {
	case v == "" && required:
		c.fail(field, "is required")
	case len(v) > c.limits.MaxIDLength:
		c.fail(field, "is %d bytes long, more than the limit of %d", len(v), c.limits.MaxIDLength)
	case !utf8.ValidString(v):
		c.fail(field, "is not valid UTF-8")
	case strings.TrimSpace(v) != v:
		c.fail(field, "has leading or trailing white space")
	}
}

func (c *checker) occurredAt(t time.Time) {
	switch {
	case t.IsZero():
		c.fail("occurred_at", "is required")
	case t.Before(c.limits.Earliest):
		c.fail("occurred_at", "%s is before %s", t.UTC().Format(time.RFC3339), c.limits.Earliest.Format(time.DateOnly))
	case t.After(c.now.Add(c.limits.MaxFutureSkew)):
		c.fail("occurred_at", "%s is %s in the future, more than the allowed skew of %s",
			t.UTC().Format(time.RFC3339), t.Sub(c.now).Round(time.Second), c.limits.MaxFutureSkew)
	}
}

func (c *checker) done(schema string) error {
	if len(c.errs) == 0 {
		return nil
	}
	return &ValidationError{Schema: schema, Fields: c.errs}
}

// Validator checks input events against Limits.
type Validator struct {
	limits Limits
}

// NewValidator returns a Validator for limits, or the error of limits.Validate.
func NewValidator(limits Limits) (*Validator, error) {
	if err := limits.Validate(); err != nil {
		return nil, fmt.Errorf("validation limits: %w", err)
	}
	return &Validator{limits: limits}, nil
}

// Validate checks an input event, with now as the reference for the future-skew check (a
// replay of history passes the event's own ingestion time). It returns nil or a
// *ValidationError naming every bad field.
func (v *Validator) Validate(e Input, now time.Time) error {
	c := &checker{limits: v.limits, now: now}
	c.id("event_id", e.ID(), true)
	c.id("customer_id", e.Customer(), true)
	c.occurredAt(e.Time())
	switch in := e.(type) {
	case Purchase:
		c.purchase(in)
	case *Purchase:
		c.purchase(*in)
	case Login:
		c.login(in)
	case *Login:
		c.login(*in)
	case Feedback:
		c.feedback(in)
	case *Feedback:
		c.feedback(*in)
	default:
		c.fail("schema", "%T is not an input event", e)
	}
	return c.done(e.Schema())
}

func (c *checker) purchase(p Purchase) {
	c.id("order_id", p.OrderID, true)
	switch p.Kind {
	case KindPurchase:
		if p.RefundOfOrderID != "" {
			c.fail("refund_of_order_id", "must be empty for a PURCHASE")
		}
	case KindRefund:
		c.id("refund_of_order_id", p.RefundOfOrderID, false)
	default:
		c.fail("kind", "%q is not PURCHASE or REFUND", p.Kind)
	}
	switch {
	case p.AmountMinor <= 0:
		c.fail("amount_minor", "%d must be greater than zero (a refund's kind, not its sign, says it reduces spend)", p.AmountMinor)
	case p.AmountMinor > c.limits.MaxAmountMinor:
		c.fail("amount_minor", "%d exceeds the plausible maximum of %d", p.AmountMinor, c.limits.MaxAmountMinor)
	}
	if !IsCurrency(p.Currency) {
		c.fail("currency", "%q is not an ISO 4217 currency code", p.Currency)
	}
	if len(p.Channel) > 32 {
		c.fail("channel", "is longer than 32 bytes")
	}
}

func (c *checker) login(l Login) {
	switch l.Channel {
	case ChannelWeb, ChannelApp, ChannelStore:
	default:
		c.fail("channel", "%q is not WEB, APP or STORE", l.Channel)
	}
}

func (c *checker) feedback(f Feedback) {
	switch f.Kind {
	case FeedbackNPS:
		c.score(f.Score, 0, 10, "NPS")
	case FeedbackCSAT:
		c.score(f.Score, 1, 5, "CSAT")
	case FeedbackComplaintOpened, FeedbackComplaintClosed:
		if f.Score != nil {
			c.fail("score", "must be empty for %s", f.Kind)
		}
		c.id("case_id", f.CaseID, true)
	default:
		c.fail("kind", "%q is not NPS, CSAT, COMPLAINT_OPENED or COMPLAINT_CLOSED", f.Kind)
	}
}

func (c *checker) score(s *int32, lo, hi int32, what string) {
	switch {
	case s == nil:
		c.fail("score", "is required for %s", what)
	case *s < lo || *s > hi:
		c.fail("score", "%d is outside the %s range %d–%d", *s, what, lo, hi)
	}
}
