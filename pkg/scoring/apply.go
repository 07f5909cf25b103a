package scoring

import (
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"
)

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func orderHash(id string) uint32 { return hash32(id) & 0xFFFFFF }

func hash32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// offsetKey names the offset a source is compared with: offsets are only ordered within one
// partition, and a customer moves partition when a topic's partition count grows, so the
// partition is part of the key.
func offsetKey(src Source) string {
	return src.Topic + "#" + strconv.Itoa(int(src.Partition))
}

// IsDuplicate reports whether e was already applied to s: its source offset
// is at or below the last one applied from its topic partition, or its event
// id is among the recent ones.
func IsDuplicate(s State, e Event) bool {
	if e.Source.Topic != "" {
		if last, ok := s.Offsets[offsetKey(e.Source)]; ok && e.Source.Offset <= last {
			return true
		}
	}
	h := hash32(e.EventID)
	for i, r := range s.Recent {
		if r == h && (r != 0 || i < int(s.RecentNext)) {
			return true
		}
	}
	return false
}

// Apply scores one input event. It returns the new state and the changes
// the event caused (tier upgrades at once; end-of-day evaluations for every
// day that the event's time, less the allowed lateness, has closed).
//
// A duplicate (see IsDuplicate) returns s unchanged and no changes. An event
// the policy cannot score returns an error wrapping ErrInvalidEvent and s
// unchanged. An event older than the allowed lateness is still applied to
// the accumulators; see docs/scoring.md for what it does to derived events.
func Apply(s State, e Event, p *Policy) (State, []Change, error) {
	if err := e.Validate(p); err != nil {
		return s, nil, fmt.Errorf("applying %s %s: %w", e.Kind, e.EventID, err)
	}
	if s.CustomerID != "" && s.CustomerID != e.CustomerID {
		return s, nil, fmt.Errorf("applying %s %s: %w: customer %q applied to the state of %q",
			e.Kind, e.EventID, ErrInvalidEvent, e.CustomerID, s.CustomerID)
	}
	if IsDuplicate(s, e) {
		return s, nil, nil
	}
	s = s.clone()
	s.CustomerID = e.CustomerID
	if e.Source.Topic != "" {
		if s.Offsets == nil {
			s.Offsets = make(map[string]int64, 1)
		}
		key := offsetKey(e.Source)
		for k := range s.Offsets { // the customer's former partition of this topic, if any
			if k != key && strings.HasPrefix(k, e.Source.Topic+"#") {
				delete(s.Offsets, k)
			}
		}
		s.Offsets[key] = e.Source.Offset
	}
	s.Recent[s.RecentNext%recentRing] = hash32(e.EventID)
	s.RecentNext = (s.RecentNext + 1) % recentRing

	d := DayOf(e.OccurredAt)
	firstOpen := DayOf(e.OccurredAt.Add(-p.AllowedLateness)) - 1
	switch {
	case !s.started():
		// No event within the allowed lateness of this one can fall on an
		// earlier day than this, so no earlier day needs an evaluation.
		s.EvalDay = firstOpen
	case !s.hasDataAsOf(s.EvalDay):
		// Nothing has been evaluated with data yet, so an earlier first event
		// (another topic's, consumed later) moves the start back: the first
		// evaluated day must not depend on which topic was read first.
		s.EvalDay = min(s.EvalDay, firstOpen)
	}
	// Days closed by the new event time are evaluated first, from what was
	// known before this event: an event within the allowed lateness is never
	// on such a day, and one later than that must not rewrite them.
	clock := max(s.ClockMs, e.OccurredAt.UnixMilli())
	out := s.advance(msTime(clock).Add(-p.AllowedLateness), e.Source, p, nil)
	s.ClockMs = clock

	switch e.Kind {
	case KindPurchase:
		s.addPurchase(d, e.AmountMinor, orderHash(e.OrderID))
	case KindRefund:
		s.addRefund(d, e.AmountMinor, e.RefundOfOrderID, p)
	case KindLogin:
		s.addLogin(d)
	case KindFeedback:
		s.addFeedback(e.FeedbackKind, d, e.Score)
	}
	s.prune(p)
	out = s.syncTier(s.clockDay(), func() (int64, Source) { return e.OccurredAt.UnixMilli(), e.Source }, p, out)
	return s, out, nil
}

// addRefund books a refund. One of an order bought within the returns
// window reverses that purchase's spend on the purchase day (so it can undo
// the upgrade the purchase caused); any other refund is booked on its own
// day and lowers future qualification only.
func (s *State) addRefund(d Day, amount int64, orderID string, p *Policy) {
	if orderID != "" {
		h := orderHash(orderID)
		for i := len(s.Orders) - 1; i >= 0; i-- {
			o := s.Orders[i]
			if o.Hash == h && o.Day <= d && d-o.Day <= Day(p.Tiers.ReturnsWindowDays) {
				s.book(o.Day, -amount, false)
				return
			}
		}
	}
	s.book(d, -amount, false)
}

// Evaluate runs the end-of-day evaluations for every day that has closed by
// at (the pipeline's watermark: event time less the allowed lateness) and
// returns the changes they cause. It is a no-op for a customer never seen
// and for any at before NextDeadline.
func Evaluate(s State, at time.Time, p *Policy) (State, []Change) {
	if !s.started() || (s.EvalDay + 1).Start().Add(24*time.Hour).After(at) {
		return s, nil
	}
	s = s.clone()
	out := s.advance(at, Source{}, p, nil)
	return s, out
}

// NextDeadline is the event time at which this customer's scores would next
// change if no new event arrived: the sweeper should call Evaluate once its
// watermark reaches it. When nothing would change before the next re-check
// day it returns that day's end: re-check days are the days divisible by the
// policy's max_deadline_days (at most that many days ahead), a fixed grid, so
// that the chain of deadlines does not depend on when earlier evaluations ran.
// The zero time means the customer has never been seen.
func NextDeadline(s State, p *Policy) time.Time {
	if !s.started() {
		return time.Time{}
	}
	recheck := recheckDay(s.EvalDay, p)
	sim := s.clone()
	var buf []Change
	for d := s.EvalDay + 1; d < recheck; d++ {
		buf = sim.step(d, Source{}, p, buf[:0])
		if len(buf) > 0 {
			return (d + 1).Start()
		}
	}
	return (recheck + 1).Start()
}

// recheckDay is the first re-check day after d: the next day divisible by max_deadline_days.
func recheckDay(d Day, p *Policy) Day {
	n := int64(p.MaxDeadlineDays)
	return Day((floorDiv(int64(d), n) + 1) * n)
}

// Sweep is the sweeper's evaluation at watermark at: it runs Evaluate at each of
// the customer's deadlines that at has reached, one after another, and stops at
// the last of them. It returns the new state, the changes and the next deadline
// (after at).
//
// Stopping at a deadline rather than at at itself is what makes the stored state
// independent of when the sweeper happened to run: the changes are the same
// either way (no day between two deadlines changes anything), but the
// evaluation day and the scores of the last evaluated day would otherwise record
// the sweeper's clock at that moment. Two pipelines over the same history, whose
// sweepers ran at different moments, hold identical states once their
// watermarks have passed the same deadlines.
func Sweep(s State, at time.Time, p *Policy) (State, []Change, time.Time) {
	var out []Change
	for {
		due := NextDeadline(s, p)
		if due.IsZero() || due.After(at) {
			return s, out, due
		}
		next, changes := Evaluate(s, due, p)
		if next.EvalDay <= s.EvalDay {
			return s, out, due // unreachable: a deadline always closes a day after EvalDay
		}
		s, out = next, append(out, changes...)
	}
}

// advance runs the end-of-day evaluation of every day that has ended by at.
func (s *State) advance(at time.Time, src Source, p *Policy, out []Change) []Change {
	if at.Before(time.Unix(0, 0)) {
		return out
	}
	last := DayOf(at) - 1 // the last day that has ended by at
	for d := s.EvalDay + 1; d <= last; d++ {
		out = s.step(d, src, p, out)
	}
	return out
}

// hasDataAsOf reports whether anything is known about the customer up to
// the end of day d; days before that are not evaluated.
func (s *State) hasDataAsOf(d Day) bool {
	if s.PurchaseDays > 0 && s.FirstDay <= d {
		return true
	}
	if s.LoginBits != [2]uint64{} && s.loginDays(d, loginBits) > 0 {
		return true
	}
	for _, h := range []*ScoreHistory{&s.NPS, &s.CSAT} {
		if _, ok := h.asOf(d); ok {
			return true
		}
	}
	c := &s.Complaints
	return (c.Day != 0 && c.Day <= d) || c.Opened+c.Closed > c.DayOpened+c.DayClosed
}

// step is the end-of-day evaluation of day d: tier settlement, reviews and
// warnings, churn level and segment, each from what is known up to d.
// Its changes occur at midnight UTC after d.
func (s *State) step(d Day, src Source, p *Policy, out []Change) []Change {
	s.EvalDay = d
	if !s.hasDataAsOf(d) {
		return out
	}
	at := (d + 1).Start()
	out = s.settleTier(d, src, p, out)
	out = s.syncTier(d, func() (int64, Source) { return at.UnixMilli(), src }, p, out)
	out = s.stepChurn(d, at, src, p, out)
	out = s.stepSegment(d, at, src, p, out)
	return out
}

func (s *State) stepChurn(d Day, at time.Time, src Source, p *Policy, out []Change) []Change {
	c := &p.Churn
	f := assessRisk(s, d, p)
	s.ChurnScore, s.ChurnModel = uint16(math.Round(f.score*1000)), f.model
	next := nextLevel(s.Churn, f.score, c)
	// ChurnSince 0 is the initial LOW level, which has no dwell time.
	if next == s.Churn || (s.ChurnSince != 0 && d+1-s.ChurnSince < Day(c.MinDwellDays)) {
		return out
	}
	ch := &ChurnRiskChange{CustomerID: s.CustomerID, FromLevel: s.Churn, ToLevel: next,
		Score: round3(f.score), PAlive: f.pAlive, ModelVersion: c.RulesVersion, OccurredAt: at, Source: src}
	if f.model {
		ch.ModelVersion = c.ModelVersion
		ch.PAlive = round3(f.pAlive)
	}
	ch.Reasons = f.reasons(p)
	if next < s.Churn {
		ch.Reasons = append([]Reason{{Code: ReasonRiskSubsided, Value: ch.Score,
			Message: fmt.Sprintf("risk score fell to %.2f, below the %s level's %.2f", f.score, s.Churn,
				map[Level]float64{LevelMedium: c.Medium.Leave, LevelHigh: c.High.Leave}[s.Churn])}}, ch.Reasons...)
	}
	ch.EventID = EventID(s.CustomerID, "churn", next.String(), at)
	s.Churn, s.ChurnSince = next, d+1
	return append(out, ch)
}

func (s *State) stepSegment(d Day, at time.Time, src Source, p *Policy, out []Change) []Change {
	v, ok := s.RFMValuesAt(d, p)
	if !ok {
		return out
	}
	rfm := p.Cutpoints.Score(v)
	seg, layer := SegmentOf(rfm), LayerOf(rfm)
	s.LastRFM = rfm
	if seg == s.Segment && layer == s.ValueLayer {
		return out
	}
	ch := &SegmentChange{CustomerID: s.CustomerID, FromSegment: s.Segment, ToSegment: seg, ValueLayer: layer,
		RFM: rfm, CutpointsVersion: p.Cutpoints.Version, OccurredAt: at, Source: src}
	ch.EventID = EventID(s.CustomerID, "segment", seg.String()+"/"+layer.String(), at)
	s.Segment, s.ValueLayer = seg, layer
	return append(out, ch)
}
