package scoring_test

import (
	"fmt"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

func Example() {
	policy := scoring.DefaultPolicy()
	purchase := func(id string, at time.Time, minor int64, offset int64) scoring.Event {
		return scoring.Event{Kind: scoring.KindPurchase, EventID: id, CustomerID: "c-1", OccurredAt: at,
			AmountMinor: minor, Currency: "USD", OrderID: "order-" + id,
			Source: scoring.Source{Topic: "loyalty.purchases.v1", Offset: offset}}
	}
	t := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

	var st scoring.State
	st, _, _ = scoring.Apply(st, purchase("e1", t, 30000, 1), policy)
	st, changes, _ := scoring.Apply(st, purchase("e2", t.Add(48*time.Hour), 25000, 2), policy)
	for _, c := range changes {
		if tc, ok := c.(*scoring.TierChange); ok {
			fmt.Println(tc.Direction, tc.From, "->", tc.To, "|", tc.Reasons[0].Message)
		}
	}
	// Redelivery of the same record changes nothing.
	_, again, _ := scoring.Apply(st, purchase("e2", t.Add(48*time.Hour), 25000, 2), policy)
	fmt.Println("changes on redelivery:", len(again))

	// With no further events, the sweeper asks at which watermark to look again: the end
	// of the first day whose evaluation changes something (here 2025-03-01, the first
	// purchase's, when the customer gets a segment), plus the allowed lateness.
	fmt.Println("next deadline:", scoring.NextDeadline(st, policy).Format(time.RFC3339))
	// Output:
	// UP BRONZE -> SILVER | net spend 550.00 USD over 365 days reached the SILVER threshold of 500.00 USD on 2025-03-03
	// changes on redelivery: 0
	// next deadline: 2025-03-02T01:00:00Z
}

func ExampleComputeCutpoints() {
	sample := []scoring.RFMValues{
		{RecencyDays: 3, Frequency: 9, MonetaryMinor: 90000},
		{RecencyDays: 20, Frequency: 4, MonetaryMinor: 30000},
		{RecencyDays: 45, Frequency: 2, MonetaryMinor: 12000},
		{RecencyDays: 120, Frequency: 1, MonetaryMinor: 4000},
		{RecencyDays: 300, Frequency: 1, MonetaryMinor: 1500},
	}
	c, _ := scoring.ComputeCutpoints("2025-03-01", sample)
	fmt.Println(c.Recency, c.Frequency, c.Monetary)
	rfm := c.Score(scoring.RFMValues{RecencyDays: 10, Frequency: 5, MonetaryMinor: 50000})
	fmt.Println(rfm, scoring.SegmentOf(rfm).Name(), scoring.LayerOf(rfm))
	// Output:
	// [3 20 45 120] [1 1 2 4] [1500 4000 12000 30000]
	// {4 5 5} Loyal HIGH_VALUE
}

func ExampleState_MarshalFields() {
	policy := scoring.DefaultPolicy()
	st, _, _ := scoring.Apply(scoring.State{}, scoring.Event{Kind: scoring.KindLogin, EventID: "l1", CustomerID: "c-1",
		OccurredAt: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC), Source: scoring.Source{Topic: "loyalty.logins.v1", Offset: 7}}, policy)
	fields := st.MarshalFields() // HSET these in one hash per customer
	back, err := scoring.UnmarshalFields(fields)
	fmt.Println(err, back.Offsets["loyalty.logins.v1#0"], scoring.FieldsSize(fields) < 400)
	// Output:
	// <nil> 7 true
}
