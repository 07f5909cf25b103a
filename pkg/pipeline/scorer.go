// Package pipeline wires the pure scoring core to the customer store: it turns decoded input
// records into scoring events, applies them to each customer's state inside the store's
// compare-and-set, encodes the resulting changes as output events for the outbox, schedules
// the next inactivity deadline, and adds each customer's RFM measures at the cut-point
// boundary days to the population histograms (package population), from which it derives
// and seals the cut points of each boundary (CutpointDeriver). The consumer services, the
// sweeper, replay and the demo all use it.
package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/population"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// Encoder turns output events into record values (codec.Codec).
type Encoder interface {
	Encode(e event.Event) ([]byte, error)
}

// Scorer applies scoring to stored customer states. It is safe for concurrent use; the
// sealed cut points it scores with move on while it runs (Follow).
type Scorer struct {
	policy atomic.Pointer[scoring.Policy]
	// base is the policy as configured, before any sealed cut points.
	base *scoring.Policy
	enc  Encoder
	// replay marks every derived event as produced by a replay or backfill.
	replay bool
}

// NewScorer returns a scorer for policy, with its cut points fixed until Follow is called.
func NewScorer(policy *scoring.Policy, enc Encoder, replay bool) *Scorer {
	s := &Scorer{base: policy, enc: enc, replay: replay}
	s.policy.Store(policy)
	return s
}

// Policy returns the policy in force.
func (s *Scorer) Policy() *scoring.Policy { return s.policy.Load() }

// Follow puts the scorer under a namespace's sealed cut points (ok false: none sealed yet, so
// no day closes) and reports whether the boundary moved.
func (s *Scorer) Follow(sealed namespace.SealedCutpoints, ok bool) (bool, error) {
	cur := s.Policy().Sealed
	if cur != nil && ((!ok && *cur == scoring.NotSealed) || (ok && *cur == sealed.Boundary)) {
		return false, nil
	}
	p, err := namespace.PolicyUnder(s.base, sealed, ok)
	if err != nil {
		return false, err
	}
	s.policy.Store(p)
	return true, nil
}

// Gate is the watermark beyond which no day can close until the next boundary's cut points
// are sealed (scoring.CloseBound), and how far past it records may be applied meanwhile
// (scoring.GateLead); ok is false when there is none (fixed cut points, or nothing sealed yet).
func (s *Scorer) Gate() (gate time.Time, lead time.Duration, ok bool) {
	p := s.Policy()
	if p.Sealed == nil || *p.Sealed == scoring.NotSealed {
		return time.Time{}, 0, false
	}
	return scoring.DayCloses(scoring.NextBoundary(*p.Sealed, p), p), scoring.GateLead(p), true
}

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

// update builds the store update from the state read (cur), the new state, the outbox entries
// of its changes and its samples at boundary days. deadline is NextDeadline(after), when the caller already knows
// it (zero: compute it).
func (s *Scorer) update(cur state.Current, after scoring.State, outbox []state.OutboxEntry, samples []scoring.Sample, counters kpi.Deltas, transitions []string, deadline time.Time, p *scoring.Policy) (state.Update, error) {
	value, err := encodeState(after)
	if err != nil {
		return state.Update{}, err
	}
	if len(samples) > 0 {
		if counters == nil {
			counters = kpi.Deltas{}
		}
		kpi.OfSamples(samples, counters) // model quality: observations and settled outcomes
	}
	counters = counters.Compact()
	unchanged := bytes.Equal(value, cur.Value) && (cur.Value != nil || (len(value) == 0 && cur.Empty()))
	if len(outbox) == 0 && len(samples) == 0 && len(counters) == 0 && unchanged {
		return state.Update{}, nil // a duplicate or a no-op: write nothing
	}
	if deadline.IsZero() {
		deadline = scoring.NextDeadline(after, p)
	}
	return state.Update{
		Value:       value,
		Outbox:      outbox,
		Deadline:    deadline,
		Histogram:   histogramCounts(samples),
		KPI:         counters,
		Transitions: transitions,
	}, nil
}

// encodeState is the stored value of a state (never nil, so the store writes it).
func encodeState(st scoring.State) ([]byte, error) {
	value, err := st.AppendBinary(make([]byte, 0, 256))
	if err != nil {
		return nil, fmt.Errorf("encoding the state of %s: %w", st.CustomerID, err)
	}
	return value, nil
}

// outboxOf encodes changes as outbox entries.
func (s *Scorer) outboxOf(changes []scoring.Change) ([]state.OutboxEntry, error) {
	outbox := make([]state.OutboxEntry, 0, len(changes))
	for _, c := range changes {
		out, err := s.OutputEvent(c)
		if err != nil {
			return nil, err
		}
		value, err := s.enc.Encode(out)
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", out.Schema(), err)
		}
		outbox = append(outbox, state.OutboxEntry{Topic: event.TopicOf(out), EventID: c.ID(), Value: value})
	}
	return outbox, nil
}

// errScoring marks a failure of the scoring computation itself (a panic in the core, a change
// whose derived event cannot be encoded), which no retry can cure.
var errScoring = errors.New("scoring failed")

// guarded runs one step of a customer's computation, turning a panic into an errScoring error
// and wrapping the step's own error as errScoring, so one customer's failure is isolated (its
// record rejected, or the customer quarantined) instead of failing, and then retrying
// forever, the whole batch or sweep.
func guarded(what string, step func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s panicked: %v", errScoring, what, r)
		}
	}()
	if err := step(); err != nil {
		return fmt.Errorf("%w: %s: %w", errScoring, what, err)
	}
	return nil
}

// histogramCounts are the histogram increments of a customer's samples.
func histogramCounts(samples []scoring.Sample) map[string]int64 {
	if len(samples) == 0 {
		return nil
	}
	d := make(map[string]int64, 3*len(samples))
	for _, sm := range samples {
		for _, f := range population.Fields(sm) {
			d[f]++
		}
	}
	return d
}

// ApplyCompute returns the store computation that applies a customer's records in order.
// First it closes the customer's days the watermark wm has closed (zero: unknown, close
// nothing), exactly as the sweeper would at wm (scoring.Sweep): closing is a function of the
// data up to each day, so it does not matter which of them observes a day closable first.
// Records the scoring core refuses are rejected for the dead-letter topic.
//
// One customer's failure never fails the batch: a record whose application panics or whose
// derived events cannot be encoded is rejected ("scoring_failed") and the customer goes on from
// the state before it, record by record, so a replay rejects the same record; a failure of
// closing the customer's days quarantines the customer (its stored state cannot advance).
func (s *Scorer) ApplyCompute(byCustomer map[string][]ingest.Record, wm time.Time) state.ComputeFunc {
	return func(id string, cur state.Current) (state.Update, error) {
		p := s.Policy()
		before, err := storedState(id, cur)
		if err != nil {
			// Quarantined, or to be: its records go to the dead-letter topic, the rest of the
			// batch goes on.
			code := "quarantined"
			if !errors.Is(err, errQuarantined) {
				code = "corrupt_state"
			}
			for _, r := range byCustomer[id] {
				r.Reject(code, err)
			}
			if errors.Is(err, errQuarantined) && len(byCustomer[id]) > 0 {
				return turnedAway(cur.Fields, len(byCustomer[id])), nil
			}
			return quarantineUpdate(err)
		}
		st := before
		var outbox []state.OutboxEntry
		var samples []scoring.Sample
		counters := kpi.Deltas{}
		var transitions []string
		if !wm.IsZero() && before.CustomerID != "" && scoring.Closes(before, wm, p) {
			if err := guarded("closing days", func() error {
				var changes []scoring.Change
				st, changes, _, samples = scoring.SweepSampled(st, wm, p)
				kpi.OfChanges(changes, counters)
				transitions = appendTransitions(transitions, changes)
				var err error
				outbox, err = s.outboxOf(changes)
				return err
			}); err != nil {
				return s.isolate(id, byCustomer[id], err)
			}
		}
		for _, r := range byCustomer[id] {
			var next scoring.State
			var entries []state.OutboxEntry
			eventCounters := kpi.Deltas{}
			var eventTransitions []string
			err := guarded("applying "+r.Event.ID(), func() error {
				var ch []scoring.Change
				var err error
				ev := ScoringEvent(r)
				if next, ch, err = scoring.Apply(st, ev, p); err != nil {
					return err
				}
				if !scoring.IsDuplicate(st, ev) {
					kpi.OfEvent(st, next, ev, p, eventCounters)
					kpi.OfChanges(ch, eventCounters)
				}
				eventTransitions = appendTransitions(nil, ch)
				entries, err = s.outboxOf(ch)
				return err
			})
			switch {
			case errors.Is(err, scoring.ErrInvalidEvent):
				r.Reject("invalid", err) // deterministic: a rerun rejects the same record again
				continue
			case err != nil:
				r.Reject("scoring_failed", err)
				continue
			}
			st = next
			if !s.replay { // a replay's records are history: no latency to measure
				for i := range entries {
					entries[i].SourceTime = r.Message.Time
				}
			}
			outbox = append(outbox, entries...)
			for f, n := range eventCounters {
				counters[f] += n
			}
			transitions = append(transitions, eventTransitions...)
		}
		u, err := s.update(cur, st, outbox, samples, counters, transitions, time.Time{}, p)
		if err != nil {
			return s.isolate(id, byCustomer[id], err)
		}
		return u, nil
	}
}

// turnedAway is the tombstone of a quarantined customer with n more records turned away: a
// rebuild from a replay that chose its records before them sees the tombstone changed.
func turnedAway(tomb map[string]string, n int) state.Update {
	count, _ := strconv.ParseInt(tomb[state.QuarantineMarkField], 10, 64)
	return state.Update{Fields: map[string]string{
		state.QuarantinedField:    tomb[state.QuarantinedField],
		state.QuarantineMarkField: strconv.FormatInt(count+int64(n), 10),
	}}
}

// isolate quarantines a customer whose days could not be closed, and rejects its records.
func (s *Scorer) isolate(id string, records []ingest.Record, err error) (state.Update, error) {
	err = fmt.Errorf("customer %s: %w", id, err)
	for _, r := range records {
		r.Reject("scoring_failed", err)
	}
	return state.Update{Quarantine: err.Error()}, nil
}

// EvaluateCompute returns the sweeper's computation: the passage of event time up to at,
// through each deadline at has reached (scoring.Sweep), so the stored state does not depend
// on the moment the sweeper ran.
func (s *Scorer) EvaluateCompute(at time.Time) state.ComputeFunc {
	return func(id string, cur state.Current) (state.Update, error) {
		p := s.Policy()
		before, err := storedState(id, cur)
		if err != nil {
			return quarantineUpdate(err)
		}
		if before.CustomerID == "" {
			return state.Update{}, nil // erased or never seen: nothing to evaluate
		}
		var (
			after       scoring.State
			outbox      []state.OutboxEntry
			deadline    time.Time
			samples     []scoring.Sample
			counters    = kpi.Deltas{}
			transitions []string
		)
		if err := guarded("closing days", func() error {
			var changes []scoring.Change
			after, changes, deadline, samples = scoring.SweepSampled(before, at, p)
			kpi.OfChanges(changes, counters)
			transitions = appendTransitions(transitions, changes)
			var err error
			outbox, err = s.outboxOf(changes)
			return err
		}); err != nil {
			return s.isolate(id, nil, err) // quarantined: the sweeper's other customers go on
		}
		u, err := s.update(cur, after, outbox, samples, counters, transitions, deadline, p)
		if err != nil {
			return s.isolate(id, nil, err)
		}
		if u.Value == nil {
			// Nothing changed (a deadline scheduled under another policy), but the
			// deadline must still move past at, or the sweeper would pick the customer up
			// again at once.
			if u.Value, err = encodeState(after); err != nil {
				return s.isolate(id, nil, err)
			}
			u.Deadline = deadline
			u.Histogram, u.KPI, u.Transitions = nil, nil, nil
		}
		return u, nil
	}
}

// errQuarantined is storedState's error for a customer in quarantine already.
var errQuarantined = errors.New("customer is quarantined")

// storedState decodes a customer's stored state. A quarantined customer is errQuarantined; a
// state that cannot be decoded is scoring.ErrCorruptState.
func storedState(id string, cur state.Current) (scoring.State, error) {
	if reason, ok := cur.Tombstone(); ok {
		return scoring.State{}, fmt.Errorf("%w (see loyaltyctl quarantine): %s: %s", errQuarantined, id, reason)
	}
	st, err := cur.State()
	if err != nil {
		return scoring.State{}, fmt.Errorf("customer %s: %w", id, err)
	}
	return st, nil
}

// quarantineUpdate is the store update for a customer storedState refused: nothing for one
// in quarantine, a quarantine for a corrupt state.
func quarantineUpdate(err error) (state.Update, error) {
	if errors.Is(err, errQuarantined) {
		return state.Update{}, nil
	}
	return state.Update{Quarantine: err.Error()}, nil
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
