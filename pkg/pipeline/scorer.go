// Package pipeline wires the pure scoring core to the customer store: it turns decoded input
// records into scoring events, applies them to each customer's state inside the store's
// compare-and-set, encodes the resulting changes as output events for the outbox, schedules
// the next inactivity deadline, and keeps the population histograms behind the RFM cut
// points. The consumer services, the sweeper, replay and the demo all use it.
package pipeline

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// Encoder turns output events into record values (codec.Codec).
type Encoder interface {
	Encode(e event.Event) ([]byte, error)
}

// Scorer applies scoring to stored customer states. It is safe for concurrent use; the
// policy (with its cut points) can be swapped at any time.
type Scorer struct {
	policy atomic.Pointer[scoring.Policy]
	enc    Encoder
	// replay marks every derived event as produced by a replay or backfill.
	replay bool
}

// NewScorer returns a scorer for policy.
func NewScorer(policy *scoring.Policy, enc Encoder, replay bool) *Scorer {
	s := &Scorer{enc: enc, replay: replay}
	s.policy.Store(policy)
	return s
}

// Policy returns the policy in force.
func (s *Scorer) Policy() *scoring.Policy { return s.policy.Load() }

// SetPolicy swaps the policy (a promoted namespace, refreshed cut points).
func (s *Scorer) SetPolicy(p *scoring.Policy) { s.policy.Store(p) }

// ScoringEvent maps a decoded input record onto the scoring core's event.
func ScoringEvent(r ingest.Record) scoring.Event {
	src := scoring.Source{Topic: r.Message.Topic, Partition: int32(r.Message.Partition), Offset: r.Message.Offset}
	switch e := r.Event.(type) {
	case event.Purchase:
		kind := scoring.KindPurchase
		if e.Kind == event.KindRefund {
			kind = scoring.KindRefund
		}
		return scoring.Event{Kind: kind, EventID: e.EventID, CustomerID: e.CustomerID, OccurredAt: e.OccurredAt,
			AmountMinor: e.AmountMinor, Currency: e.Currency, OrderID: e.OrderID, RefundOfOrderID: e.RefundOfOrderID, Source: src}
	case event.Login:
		return scoring.Event{Kind: scoring.KindLogin, EventID: e.EventID, CustomerID: e.CustomerID, OccurredAt: e.OccurredAt,
			LoginChannel: string(e.Channel), Source: src}
	case event.Feedback:
		fk := map[event.FeedbackKind]scoring.FeedbackKind{
			event.FeedbackNPS: scoring.FeedbackNPS, event.FeedbackCSAT: scoring.FeedbackCSAT,
			event.FeedbackComplaintOpened: scoring.FeedbackComplaintOpened, event.FeedbackComplaintClosed: scoring.FeedbackComplaintClosed,
		}[e.Kind]
		score := 0
		if e.Score != nil {
			score = int(*e.Score)
		}
		return scoring.Event{Kind: scoring.KindFeedback, EventID: e.EventID, CustomerID: e.CustomerID, OccurredAt: e.OccurredAt,
			FeedbackKind: fk, Score: score, CaseID: e.CaseID, Source: src}
	}
	return scoring.Event{}
}

// update builds the store update from the state read (cur), the new state and its changes.
// deadline is NextDeadline(after), when the caller already knows it (zero: compute it).
func (s *Scorer) update(cur map[string]string, before, after scoring.State, changes []scoring.Change, deadline time.Time, p *scoring.Policy) (state.Update, error) {
	fields := after.MarshalFields()
	if len(changes) == 0 && maps.Equal(fields, cur) {
		return state.Update{}, nil // a duplicate or a no-op: write nothing
	}
	outbox := make([]state.OutboxEntry, 0, len(changes))
	for _, c := range changes {
		out, err := s.OutputEvent(c)
		if err != nil {
			return state.Update{}, err
		}
		value, err := s.enc.Encode(out)
		if err != nil {
			return state.Update{}, fmt.Errorf("encoding %s: %w", out.Schema(), err)
		}
		outbox = append(outbox, state.OutboxEntry{Topic: event.TopicOf(out), Key: c.Customer(), EventID: c.ID(), Value: value})
	}
	if deadline.IsZero() {
		deadline = scoring.NextDeadline(after, p)
	}
	return state.Update{
		Fields:    fields,
		Outbox:    outbox,
		Deadline:  deadline,
		Histogram: histogramDelta(before, after, p),
	}, nil
}

// ApplyCompute returns the store computation that applies a customer's records in order.
// First it closes the customer's days the watermark wm has closed (zero: unknown, close
// nothing), exactly as the sweeper would at wm (scoring.Sweep): closing is a function of the
// data up to each day, so it does not matter which of them observes a day closable first.
// Records the scoring core refuses are rejected for the dead-letter topic.
func (s *Scorer) ApplyCompute(byCustomer map[string][]ingest.Record, wm time.Time) state.ComputeFunc {
	return func(id string, cur map[string]string) (state.Update, error) {
		p := s.Policy()
		before, err := scoring.UnmarshalFields(cur)
		if err != nil {
			return state.Update{}, fmt.Errorf("customer %s: %w", id, err)
		}
		st := before
		var changes []scoring.Change
		if !wm.IsZero() && before.CustomerID != "" {
			st, changes, _ = scoring.Sweep(st, wm, p)
		}
		for _, r := range byCustomer[id] {
			next, ch, err := scoring.Apply(st, ScoringEvent(r), p)
			if errors.Is(err, scoring.ErrInvalidEvent) {
				r.Reject("invalid", err) // deterministic: a rerun rejects the same record again
				continue
			}
			if err != nil {
				return state.Update{}, err
			}
			st = next
			changes = append(changes, ch...)
		}
		return s.update(cur, before, st, changes, time.Time{}, p)
	}
}

// EvaluateCompute returns the sweeper's computation: the passage of event time up to at,
// through each deadline at has reached (scoring.Sweep), so the stored state does not depend
// on the moment the sweeper ran.
func (s *Scorer) EvaluateCompute(at time.Time) state.ComputeFunc {
	return func(id string, cur map[string]string) (state.Update, error) {
		p := s.Policy()
		before, err := scoring.UnmarshalFields(cur)
		if err != nil {
			return state.Update{}, fmt.Errorf("customer %s: %w", id, err)
		}
		if before.CustomerID == "" {
			return state.Update{}, nil // erased or never seen: nothing to evaluate
		}
		after, changes, deadline := scoring.Sweep(before, at, p)
		u, err := s.update(cur, before, after, changes, deadline, p)
		if err != nil {
			return u, err
		}
		if u.Fields == nil {
			// Nothing changed (a deadline scheduled under another policy), but the
			// deadline must still move past at, or the sweeper would pick the customer up
			// again at once.
			u.Fields = after.MarshalFields()
			u.Deadline = deadline
			u.Histogram = nil
		}
		return u, nil
	}
}

// OutputEvent maps a scoring change onto its public contract.
func (s *Scorer) OutputEvent(c scoring.Change) (event.Event, error) {
	switch ch := c.(type) {
	case *scoring.TierChange:
		return event.TierChanged{EventID: ch.EventID, CustomerID: ch.CustomerID, OccurredAt: ch.OccurredAt,
			FromTier: event.Tier(ch.From), ToTier: event.Tier(ch.To), Direction: event.TierDirection(ch.Direction),
			Reasons: reasons(ch.Reasons), PolicyVersion: ch.PolicyVersion, Replay: s.replay, Source: source(ch.Source)}, nil
	case *scoring.ChurnRiskChange:
		return event.ChurnRiskChanged{EventID: ch.EventID, CustomerID: ch.CustomerID, OccurredAt: ch.OccurredAt,
			FromLevel: event.ChurnLevel(ch.FromLevel.String()), ToLevel: event.ChurnLevel(ch.ToLevel.String()),
			Score: ch.Score, PAlive: ch.PAlive, Reasons: reasons(ch.Reasons), ModelVersion: ch.ModelVersion,
			Replay: s.replay, Source: source(ch.Source)}, nil
	case *scoring.SegmentChange:
		return event.SegmentChanged{EventID: ch.EventID, CustomerID: ch.CustomerID, OccurredAt: ch.OccurredAt,
			FromSegment: ch.FromSegment.String(), ToSegment: ch.ToSegment.String(), ValueLayer: ch.ValueLayer.String(),
			FromValueLayer:   ch.FromValueLayer.String(),
			RFM:              event.RFM{R: int32(ch.RFM.R), F: int32(ch.RFM.F), M: int32(ch.RFM.M)},
			CutpointsVersion: ch.CutpointsVersion, PolicyVersion: ch.PolicyVersion, Reasons: reasons(ch.Reasons),
			Replay: s.replay, Source: source(ch.Source)}, nil
	}
	return nil, fmt.Errorf("unknown change type %T", c)
}

func reasons(rs []scoring.Reason) []event.Reason {
	out := make([]event.Reason, len(rs))
	for i, r := range rs {
		out[i] = event.Reason{Code: r.Code, Message: r.Message, Value: r.Value}
	}
	return out
}

// source maps the trigger of a change; changes found by the sweeper have no input record and
// carry topic "sweeper" with offset -1.
func source(s scoring.Source) event.Source {
	if s.Topic == "" {
		return event.Source{Topic: "sweeper", Partition: 0, Offset: -1}
	}
	return event.Source{Topic: s.Topic, Partition: s.Partition, Offset: s.Offset}
}

// Histogram buckets. Recency and frequency are exact up to a bound and logarithmic beyond;
// money is logarithmic (about 19% wide buckets), so quantiles are within a bucket's width.
func bucketR(days float64) int { return logBucket(days, 400) }
func bucketF(n float64) int    { return logBucket(n, 64) }
func bucketM(minor float64) int {
	if minor <= 0 {
		return 0
	}
	return 1 + int(math.Floor(4*math.Log2(minor)))
}

func logBucket(v float64, exact int) int {
	if v < float64(exact) {
		return int(math.Max(0, math.Floor(v)))
	}
	return exact + int(math.Floor(8*math.Log2(v/float64(exact))))
}

// histogramDelta moves a customer between histogram buckets when their RFM values changed.
func histogramDelta(before, after scoring.State, p *scoring.Policy) map[string]int64 {
	d := map[string]int64{}
	add := func(s scoring.State, sign int64) {
		if s.ClockMs == 0 {
			return
		}
		v, ok := s.RFMValuesAt(scoring.DayOf(time.UnixMilli(s.ClockMs)), p)
		if !ok {
			return
		}
		d["r:"+strconv.Itoa(bucketR(v.RecencyDays))] += sign
		d["f:"+strconv.Itoa(bucketF(v.Frequency))] += sign
		d["m:"+strconv.Itoa(bucketM(v.MonetaryMinor))] += sign
	}
	add(before, -1)
	add(after, +1)
	for k, v := range d {
		if v == 0 {
			delete(d, k)
		}
	}
	return d
}
