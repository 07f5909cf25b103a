package event_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func score(n int32) *int32 { return &n }

func validator(t testing.TB) *event.Validator {
	v, err := event.NewValidator(event.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func goodPurchase() event.Purchase {
	return event.Purchase{EventID: "e1", CustomerID: "c1", OccurredAt: now.Add(-time.Hour), OrderID: "o1",
		Kind: event.KindPurchase, AmountMinor: 2500, Currency: "GBP"}
}

func TestValidEventsPass(t *testing.T) {
	v := validator(t)
	for _, e := range []event.Input{
		goodPurchase(),
		event.Purchase{EventID: "e2", CustomerID: "c1", OccurredAt: now, OrderID: "o2", Kind: event.KindRefund, AmountMinor: 1, Currency: "JPY", RefundOfOrderID: "o1"},
		event.Login{EventID: "e3", CustomerID: "c1", OccurredAt: now.Add(5 * time.Minute), Channel: event.ChannelWeb},
		event.Feedback{EventID: "e4", CustomerID: "c1", OccurredAt: now, Kind: event.FeedbackNPS, Score: score(0)},
		event.Feedback{EventID: "e5", CustomerID: "c1", OccurredAt: now, Kind: event.FeedbackCSAT, Score: score(5)},
		event.Feedback{EventID: "e6", CustomerID: "c1", OccurredAt: now, Kind: event.FeedbackComplaintOpened, CaseID: "k"},
	} {
		if err := v.Validate(e, now); err != nil {
			t.Errorf("%+v: %v", e, err)
		}
	}
}

func TestInvalidEventsAreRejectedNamingTheField(t *testing.T) {
	mod := func(f func(*event.Purchase)) event.Purchase { p := goodPurchase(); f(&p); return p }
	tests := []struct {
		name  string
		in    event.Input
		field string
	}{
		{"a missing event id is rejected", mod(func(p *event.Purchase) { p.EventID = "" }), "event_id"},
		{"an empty customer id is rejected", mod(func(p *event.Purchase) { p.CustomerID = "" }), "customer_id"},
		{"an over-long customer id is rejected", mod(func(p *event.Purchase) { p.CustomerID = strings.Repeat("x", 129) }), "customer_id"},
		{"a customer id with padding is rejected", mod(func(p *event.Purchase) { p.CustomerID = " c1" }), "customer_id"},
		{"a negative amount is rejected", mod(func(p *event.Purchase) { p.AmountMinor = -100 }), "amount_minor"},
		{"a zero amount is rejected", mod(func(p *event.Purchase) { p.AmountMinor = 0 }), "amount_minor"},
		{"an absurd amount is rejected", mod(func(p *event.Purchase) { p.AmountMinor = 1 << 60 }), "amount_minor"},
		{"an unknown currency is rejected", mod(func(p *event.Purchase) { p.Currency = "XYZ" }), "currency"},
		{"a lower-case currency is rejected", mod(func(p *event.Purchase) { p.Currency = "eur" }), "currency"},
		{"an unknown purchase kind is rejected", mod(func(p *event.Purchase) { p.Kind = "GIFT" }), "kind"},
		{"a purchase that names a refunded order is rejected", mod(func(p *event.Purchase) { p.RefundOfOrderID = "o0" }), "refund_of_order_id"},
		{"a missing order id is rejected", mod(func(p *event.Purchase) { p.OrderID = "" }), "order_id"},
		{"an event before 2000 is rejected", mod(func(p *event.Purchase) { p.OccurredAt = time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC) }), "occurred_at"},
		{"an event too far in the future is rejected", mod(func(p *event.Purchase) { p.OccurredAt = now.Add(11 * time.Minute) }), "occurred_at"},
		{"a missing timestamp is rejected", mod(func(p *event.Purchase) { p.OccurredAt = time.Time{} }), "occurred_at"},
		{"an unknown login channel is rejected", event.Login{EventID: "e", CustomerID: "c", OccurredAt: now, Channel: "FAX"}, "channel"},
		{"an NPS above 10 is rejected", event.Feedback{EventID: "e", CustomerID: "c", OccurredAt: now, Kind: event.FeedbackNPS, Score: score(11)}, "score"},
		{"an NPS below 0 is rejected", event.Feedback{EventID: "e", CustomerID: "c", OccurredAt: now, Kind: event.FeedbackNPS, Score: score(-1)}, "score"},
		{"an NPS without a score is rejected", event.Feedback{EventID: "e", CustomerID: "c", OccurredAt: now, Kind: event.FeedbackNPS}, "score"},
		{"a CSAT of 0 is rejected", event.Feedback{EventID: "e", CustomerID: "c", OccurredAt: now, Kind: event.FeedbackCSAT, Score: score(0)}, "score"},
		{"a complaint without a case id is rejected", event.Feedback{EventID: "e", CustomerID: "c", OccurredAt: now, Kind: event.FeedbackComplaintOpened}, "case_id"},
		{"a complaint with a score is rejected", event.Feedback{EventID: "e", CustomerID: "c", OccurredAt: now, Kind: event.FeedbackComplaintClosed, CaseID: "k", Score: score(3)}, "score"},
	}
	v := validator(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Validate(tt.in, now)
			var ve *event.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("want a *ValidationError, got %v", err)
			}
			for _, f := range ve.Fields {
				if f.Field == tt.field {
					return
				}
			}
			t.Fatalf("error %q does not name %s", err, tt.field)
		})
	}
}

func TestEveryProblemOfAnEventIsReportedAtOnce(t *testing.T) {
	err := validator(t).Validate(event.Purchase{Kind: "X", Currency: "??"}, now)
	var ve *event.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) < 6 {
		t.Fatalf("want all problems listed, got %v", err)
	}
}

func TestBadLimitsAreRefusedAtStartUp(t *testing.T) {
	l := event.DefaultLimits()
	l.MaxAmountMinor = 0
	if _, err := event.NewValidator(l); err == nil || !strings.Contains(err.Error(), "MaxAmountMinor") {
		t.Fatalf("got %v", err)
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("e1", "c1", int64(1700000000000), "o1", "PURCHASE", int64(100), "EUR", "", int32(5), "NPS")
	f.Add("", " ", int64(-1), "", "REFUND", int64(-3), "eur", "o", int32(11), "CSAT")
	v := validator(f)
	f.Fuzz(func(t *testing.T, id, customer string, ms int64, order, kind string, amount int64, currency, refundOf string, sc int32, fkind string) {
		at := time.UnixMilli(ms).UTC()
		inputs := []event.Input{
			event.Purchase{EventID: id, CustomerID: customer, OccurredAt: at, OrderID: order, Kind: event.PurchaseKind(kind), AmountMinor: amount, Currency: currency, RefundOfOrderID: refundOf},
			event.Login{EventID: id, CustomerID: customer, OccurredAt: at, Channel: event.LoginChannel(kind)},
			event.Feedback{EventID: id, CustomerID: customer, OccurredAt: at, Kind: event.FeedbackKind(fkind), Score: &sc, CaseID: order},
		}
		for _, in := range inputs {
			err := v.Validate(in, now)
			if err == nil {
				// Accepted events must satisfy the invariants the scoring core relies on.
				if in.ID() == "" || in.Customer() == "" || in.Time().Year() < 2000 || in.Time().After(now.Add(10*time.Minute)) {
					t.Fatalf("accepted %+v", in)
				}
				if p, ok := in.(event.Purchase); ok && (p.AmountMinor <= 0 || !event.IsCurrency(p.Currency)) {
					t.Fatalf("accepted purchase %+v", p)
				}
				continue
			}
			if !errors.Is(err, event.ErrInvalid) || err.Error() == "" {
				t.Fatalf("unexpected error shape %v", err)
			}
		}
	})
}
