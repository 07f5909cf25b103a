package pipeline

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"

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

// Transition entries are stored compressed: a version byte, then the entry's JSON as one S2
// block compressed against the transitions dictionary (transitions-v1.dict: sixteen typical
// entries of every kind, from a bench-e2e run of synthetic customers). A segment change's
// JSON, most of a list, is about 550 bytes, its block about 140, for about 2 µs of CPU; a
// customer's list of up to 20 entries had been most of the memory a customer costs in Redis
// (bench-e2e: 11 kB against 370 bytes of state).
//
// Version 2 (transitionsV2) leaves the event id out of the JSON: it is a function of the
// customer and the entry (scoring.EventID of the kind, the new value and the time), and the
// reader computes it again. The id is 64 hex digits that do not compress, 64 of a segment
// entry's 141 bytes in version 1. An entry whose id is not that function (none the scoring
// core writes) is stored as version 1, with its id. Entries of version 1, and entries written
// as plain JSON by earlier versions (they begin with '{'), are still read. The dictionary must
// never change: a new one takes a new version byte, and the old one stays for reading.
//
//go:embed transitions-v1.dict
var transitionsDictV1 []byte

const (
	transitionsV1 = 0x01
	transitionsV2 = 0x02
	// maxTransitionJSON bounds what a stored entry may claim to decode to (corrupt data).
	maxTransitionJSON = 64 << 10
)

var transitionsDict = s2.MakeDict(transitionsDictV1, []byte(`{"at":"`))

// appendTransitions appends the encoded transition entries of changes.
// The JSON and the compressed block are built in pooled buffers, so an entry costs one
// allocation: its string.
func appendTransitions(out []string, changes []scoring.Change) []string {
	if len(changes) == 0 {
		return out
	}
	buf := transitionBuffers.Get().(*[]byte)
	defer transitionBuffers.Put(buf)
	for _, c := range changes {
		t := TransitionOf(c)
		version := byte(transitionsV1)
		if id, ok := derivedEventID(c.Customer(), &t); ok && id == t.EventID {
			version, t.EventID = transitionsV2, ""
		}
		js, err := appendTransitionTo((*buf)[:0], &t)
		if err != nil {
			panic(fmt.Sprintf("encoding a transition: %v", err)) // plain data: cannot happen; guarded turns it into a rejection
		}
		*buf = js[:0]
		out = append(out, compressTransition(version, js))
	}
	return out
}

// derivedEventID is the event id of t's change when its customer is customerID, and whether
// t's kind has one.
func derivedEventID(customerID string, t *Transition) (string, bool) {
	switch t.Kind {
	case "tier":
		return scoring.TierEventID(customerID, t.Direction, t.To, t.At), true
	case "churn":
		return scoring.ChurnEventID(customerID, t.To, t.At), true
	case "segment":
		return scoring.SegmentEventID(customerID, t.To, t.ToLayer, t.At), true
	}
	return "", false
}

// transitionBuffers hold the JSON of a transition entry while it is compressed (*[]byte).
var transitionBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// compressTransition is the stored entry of a transition's JSON, under the version byte.
func compressTransition(version byte, b []byte) string {
	buf := transitionBuffers.Get().(*[]byte)
	defer transitionBuffers.Put(buf)
	dst := slices.Grow((*buf)[:0], 1+s2.MaxEncodedLen(len(b)))[:1]
	dst[0] = version
	block := transitionsDict.Encode(dst[1:cap(dst)], b)
	*buf = dst[:0]
	return string(dst[:1+len(block)])
}

// ParseTransition decodes an entry of customerID's transition list: a compressed entry of
// either version, or the plain JSON of an earlier version.
func ParseTransition(customerID, entry string) (Transition, error) {
	b := []byte(entry)
	version := byte(0)
	switch {
	case strings.HasPrefix(entry, "{"):
	case strings.HasPrefix(entry, string(rune(transitionsV1))), strings.HasPrefix(entry, string(rune(transitionsV2))):
		version = entry[0]
		n, err := s2.DecodedLen(b[1:])
		if err != nil {
			return Transition{}, fmt.Errorf("transition entry: %w", err)
		}
		if n > maxTransitionJSON {
			return Transition{}, fmt.Errorf("transition entry claims %d bytes, more than %d", n, maxTransitionJSON)
		}
		if b, err = transitionsDict.Decode(nil, b[1:]); err != nil {
			return Transition{}, fmt.Errorf("transition entry: %w", err)
		}
	default:
		return Transition{}, fmt.Errorf("transition entry of unknown format (first byte %#x)", entry[:min(len(entry), 1)])
	}
	var t Transition
	if err := json.Unmarshal(b, &t); err != nil {
		return Transition{}, fmt.Errorf("transition entry: %w", err)
	}
	if version == transitionsV2 {
		id, ok := derivedEventID(customerID, &t)
		if !ok || t.EventID != "" {
			return Transition{}, fmt.Errorf("transition entry of version 2 with kind %q and event id %q: want a tier, churn or segment change without one", t.Kind, t.EventID)
		}
		t.EventID = id
	}
	return t, nil
}
