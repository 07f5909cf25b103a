package pipeline

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// Transition is one entry of a customer's transition list (state.MaxTransitions kept, newest
// first): a tier, churn-risk or segment change as support reads it, with its time and reasons.
// The list is written with the customer's state and erased with it.
type Transition struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"` // tier, churn or segment
	From    string    `json:"from"`
	To      string    `json:"to"`
	EventID string    `json:"event_id"`
	// Tier changes: UP, DOWN or WARNING.
	Direction string `json:"direction,omitempty"`
	// Churn-risk changes: the score, P(alive) (absent for the rules fallback) and the model.
	Score        *float64 `json:"score,omitempty"`
	PAlive       *float64 `json:"p_alive,omitempty"`
	ModelVersion string   `json:"model_version,omitempty"`
	// Segment changes: the value layers and the RFM scores.
	FromLayer string       `json:"from_layer,omitempty"`
	ToLayer   string       `json:"to_layer,omitempty"`
	RFM       *scoring.RFM `json:"rfm,omitempty"`
	Reasons   []Reason     `json:"reasons"`
}

// Reason is one reason behind a transition.
type Reason struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Value   float64 `json:"value"`
}

// TransitionOf describes a change as a transition entry.
func TransitionOf(c scoring.Change) Transition {
	reasons := func(rs []scoring.Reason) []Reason {
		out := make([]Reason, 0, len(rs))
		for _, r := range rs {
			out = append(out, Reason{Code: r.Code, Message: r.Message, Value: r.Value})
		}
		return out
	}
	switch ch := c.(type) {
	case *scoring.TierChange:
		return Transition{At: ch.OccurredAt, Kind: "tier", From: ch.From, To: ch.To, EventID: ch.EventID,
			Direction: string(ch.Direction), Reasons: reasons(ch.Reasons)}
	case *scoring.ChurnRiskChange:
		t := Transition{At: ch.OccurredAt, Kind: "churn", From: ch.FromLevel.String(), To: ch.ToLevel.String(), EventID: ch.EventID,
			Score: &ch.Score, ModelVersion: ch.ModelVersion, Reasons: reasons(ch.Reasons)}
		if ch.PAlive >= 0 {
			t.PAlive = &ch.PAlive
		}
		return t
	case *scoring.SegmentChange:
		rfm := ch.RFM
		return Transition{At: ch.OccurredAt, Kind: "segment", From: orNone(ch.FromSegment.String()), To: ch.ToSegment.String(),
			EventID: ch.EventID, FromLayer: orNone(ch.FromValueLayer.String()), ToLayer: ch.ValueLayer.String(), RFM: &rfm,
			Reasons: reasons(ch.Reasons)}
	}
	return Transition{Kind: fmt.Sprintf("%T", c)}
}

func orNone(s string) string {
	if s == "" {
		return "NONE"
	}
	return s
}

// appendTransitions appends the encoded transition entries of changes.
func appendTransitions(out []string, changes []scoring.Change) []string {
	for _, c := range changes {
		b, err := json.Marshal(TransitionOf(c))
		if err != nil {
			panic(fmt.Sprintf("encoding a transition: %v", err)) // plain data: cannot happen; guarded turns it into a rejection
		}
		out = append(out, string(b))
	}
	return out
}

// ParseTransition decodes an entry of a customer's transition list.
func ParseTransition(entry string) (Transition, error) {
	var t Transition
	if err := json.Unmarshal([]byte(entry), &t); err != nil {
		return Transition{}, fmt.Errorf("transition entry: %w", err)
	}
	return t, nil
}
