package scoring

import (
	"fmt"
	"strings"
	"time"
)

const cust = "cust-42"

var t0 = time.Date(2024, 1, 10, 12, 0, 0, 0, time.UTC)

func day(n int) time.Time { return t0.Add(time.Duration(n) * 24 * time.Hour) }

type evGen struct{ n int }

func (g *evGen) next(kind Kind, at time.Time) Event {
	g.n++
	topic := "loyalty.purchases.v1"
	switch kind {
	case KindLogin:
		topic = "loyalty.logins.v1"
	case KindFeedback:
		topic = "loyalty.feedback.v1"
	}
	return Event{Kind: kind, EventID: fmt.Sprintf("ev-%d", g.n), CustomerID: cust, OccurredAt: at,
		Currency: "USD", Source: Source{Topic: topic, Offset: int64(g.n)}}
}

func (g *evGen) purchase(at time.Time, minor int64, order string) Event {
	e := g.next(KindPurchase, at)
	e.AmountMinor, e.OrderID = minor, order
	return e
}

func (g *evGen) refund(at time.Time, minor int64, order string) Event {
	e := g.next(KindRefund, at)
	e.AmountMinor, e.RefundOfOrderID = minor, order
	return e
}

func (g *evGen) login(at time.Time) Event { return g.next(KindLogin, at) }

func (g *evGen) feedback(at time.Time, k FeedbackKind, score int) Event {
	e := g.next(KindFeedback, at)
	e.FeedbackKind, e.Score = k, score
	return e
}

// tb is the part of testing.TB that rapid.T also implements.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

func mustApply(t tb, s State, e Event, p *Policy) (State, []Change) {
	t.Helper()
	s2, ch, err := Apply(s, e, p)
	if err != nil {
		t.Fatalf("Apply(%+v): %v", e, err)
	}
	return s2, ch
}

// describe renders changes compactly for assertions and failure messages.
func describe(chs []Change) string {
	var parts []string
	for _, c := range chs {
		switch c := c.(type) {
		case *TierChange:
			parts = append(parts, fmt.Sprintf("tier %s %s->%s @%s", c.Direction, c.From, c.To, c.OccurredAt.Format("2006-01-02")))
		case *ChurnRiskChange:
			parts = append(parts, fmt.Sprintf("churn %s->%s @%s", c.FromLevel, c.ToLevel, c.OccurredAt.Format("2006-01-02")))
		case *SegmentChange:
			parts = append(parts, fmt.Sprintf("segment %s/%s @%s", c.ToSegment, c.ValueLayer, c.OccurredAt.Format("2006-01-02")))
		}
	}
	return strings.Join(parts, "; ")
}

func only[T Change](chs []Change) []T {
	var out []T
	for _, c := range chs {
		if t, ok := c.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
