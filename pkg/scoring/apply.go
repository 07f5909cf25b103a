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

// IsDuplicate reports whether e was already applied to s: its source offset is at or below
// the last one applied from its topic partition (a redelivery), or its event id is among the
// ids its topic applied recently (a producer's duplicate: within the policy's dedupe horizon
// and cap, see SeenID). Ids are compared by 64-bit digest, so a distinct id is taken for a
// duplicate with probability at most 64/2⁶⁴ (DigestSize): never in practice.
func IsDuplicate(s State, e Event) bool {
	if e.Source.Topic != "" {
		if last, ok := s.Offsets[offsetKey(e.Source)]; ok && e.Source.Offset <= last {
			return true
		}
	}
	return s.seen(e)
}

// Apply scores one input event: it accumulates the event's data and returns the new state and
// the changes the event caused. It never closes a churn or segment day on the strength of the
// event's own time: those days close only when the pipeline watermark passes them (Close,
// Sweep), because another topic may still hold data for them. Tier rules read the purchases
// topic alone, whose records for a customer arrive in order, so a purchase or refund first
// closes the tier days its own time has passed (by the same rule as the watermark: the end of
// the day plus the allowed lateness), then books itself; a tier upgrade is reported at once.
//
// A duplicate (see IsDuplicate) returns s unchanged and no changes. An event the policy cannot
// score returns an error wrapping ErrInvalidEvent and s unchanged. An event for a day already
// closed (later than the allowed lateness) is still applied to the accumulators and counts for
// every later day; see docs/scoring.md.
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
		// A new map: clones share the offsets (State.clone), so they are never written in place.
		key := offsetKey(e.Source)
		offsets := make(map[string]int64, len(s.Offsets)+1)
		for k, v := range s.Offsets { // less the customer's former partition of this topic, if any
			if k == key || !strings.HasPrefix(k, e.Source.Topic+"#") {
				offsets[k] = v
			}
		}
		offsets[key] = e.Source.Offset
		s.Offsets = offsets
	}
	s.remember(e, p)

	d := DayOf(e.OccurredAt)
	if !s.started() || (s.SeenDay != 0 && d < s.SeenDay) {
		s.SeenDay = d
	}
	switch {
	case !s.started():
		// Nothing before the first event's day needs an evaluation.
		s.EvalDay, s.TierDay = d-1, d-1
	default:
		// Nothing has been evaluated with data yet, so an earlier first event (another
		// topic's, consumed later) moves the start back: the first evaluated day must not
		// depend on which topic was read first.
		if !s.hasDataAsOf(s.EvalDay) {
			s.EvalDay = min(s.EvalDay, d-1)
		}
		// Likewise for the tier track, which reads purchases only: its start is the day
		// before the first purchase, whichever topic was read first.
		if tier := e.Kind == KindPurchase || e.Kind == KindRefund; tier && !s.hasPurchaseData() {
			s.TierDay = d - 1
		} else if tier && !s.hasPurchaseDataAsOf(s.TierDay) {
			s.TierDay = min(s.TierDay, d-1)
		}
	}
	if !s.hasPurchaseData() && e.Kind != KindPurchase && e.Kind != KindRefund {
		// Until the first purchase the tier track has nothing to close: it follows the
		// activity track, so that the stored state does not depend on the topic order.
		s.TierDay = s.EvalDay
	}
	s.ClockMs = max(s.ClockMs, e.OccurredAt.UnixMilli())

	var out []Change
	tierInput := e.Kind == KindPurchase || e.Kind == KindRefund
	if tierInput {
		// Tier days this purchase's time has closed are settled first, from what was known
		// before it: a purchase within the allowed lateness is never on such a day.
		s.TierClockMs = max(s.TierClockMs, e.OccurredAt.UnixMilli())
		out = s.closeTierDays(lastClosedDay(msTime(s.TierClockMs), p), p, out)
	}
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
	if tierInput {
		s.prune(p)
		out = s.syncTier(s.tierClockDay(), func() (int64, Source) { return e.OccurredAt.UnixMilli(), e.Source }, p, out)
	}
	return s, out, nil
}

// lastClosedDay is the last day a watermark at wm has closed: the last day whose end plus the
// allowed lateness is at or before wm.
func lastClosedDay(wm time.Time, p *Policy) Day {
	return DayOf(wm.Add(-p.AllowedLateness)) - 1
}

// DayCloses is the watermark at which day d closes: its end plus the allowed lateness.
func DayCloses(d Day, p *Policy) time.Time { return (d + 1).Start().Add(p.AllowedLateness) }

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
				if o.Day < d { // churn and segments see it on its own day (see DayNet)
					s.entry(o.Day, false).Shift += amount
					s.entry(d, false).Shift -= amount
				}
				return
			}
		}
	}
	s.book(d, -amount, false)
}

// Close runs the end-of-day evaluations of every day the pipeline watermark wm has closed
// (tier settlement, reviews and warnings, churn level and segment) and returns the changes
// they cause. A day closes once wm has passed its end plus the allowed lateness; its result
// depends only on the data up to that day, so it does not matter who closes it or when. It is
// a no-op for a customer never seen.
func Close(s State, wm time.Time, p *Policy) (State, []Change) {
	last := lastClosedDay(CloseBound(wm, p), p)
	if !s.started() || min(s.EvalDay, s.TierDay) >= last {
		return s, nil
	}
	s = s.clone()
	return s, s.close(last, p, nil)
}

// NextDeadline is the watermark at which this customer's scores would next change if no new
// event arrived: the sweeper should call Close once the watermark reaches it. When nothing
// would change before the next re-check day it returns that day's closing: re-check days are
// the days divisible by the policy's max_deadline_days (at most that many days ahead) and the
// cut-point boundary days, a fixed grid, so that the chain of deadlines does not depend on when earlier evaluations ran.
// The zero time means the customer has never been seen.
func NextDeadline(s State, p *Policy) time.Time {
	due, _ := lookAhead(s, p, true)
	return due
}

// ahead is what lookAhead learnt on its way to the deadline: a copy of the state with the
// days before the deadline's day closed (through day), and whether closing the deadline's
// day is left (rest) or was done (changes, its changes).
type ahead struct {
	sim     State
	day     Day
	rest    bool
	changes []Change
}

// lookAhead finds NextDeadline by closing days on a copy of s. The copy is returned too
// (nil when the deadline was not simulated): once closed through the deadline's day it is
// exactly what Close(s, deadline) returns, since no day before the deadline changes anything,
// so Sweep takes it instead of closing the same days a second time.
//
// With probe set only the deadline is wanted: the copy's changes may lack what is costly to
// build and nothing else is read (the copy is then not returned).
func lookAhead(s State, p *Policy, probe bool) (time.Time, *ahead) {
	if !s.started() {
		return time.Time{}, nil
	}
	from := min(s.EvalDay, s.TierDay)
	if p.Sealed != nil && *p.Sealed != NotSealed && s.EvalDay >= NextBoundary(*p.Sealed, p) {
		// The days after the gate are scored with cut points not sealed yet: look again as
		// soon as they are, rather than at a deadline simulated with the wrong ones.
		return DayCloses(from+1, p), nil
	}
	recheck := recheckDay(from, p)
	a := &ahead{sim: s.clone(), day: recheck, rest: true}
	a.sim.probe = probe
	var buf []Change
	for d := from + 1; d < recheck; d++ {
		buf = a.sim.closeDay(d, p, buf[:0])
		if len(buf) > 0 {
			if probe {
				return DayCloses(d, p), nil
			}
			a.day, a.rest, a.changes = d, false, buf
			return DayCloses(d, p), a
		}
	}
	if probe {
		return DayCloses(recheck, p), nil
	}
	return DayCloses(recheck, p), a
}

// closed returns the state closed through the deadline's day and that day's changes.
func (a *ahead) closed(p *Policy) (State, []Change) {
	if a.rest {
		a.changes, a.rest = a.sim.closeDay(a.day, p, nil), false
	}
	return a.sim, a.changes
}

// recheckDay is the first re-check day after d: the next day divisible by max_deadline_days,
// or the next cut-point boundary day if that comes first.
func recheckDay(d Day, p *Policy) Day {
	n := int64(p.MaxDeadlineDays)
	return min(Day((floorDiv(int64(d), n)+1)*n), NextBoundary(d, p))
}

// LastRecheckCloses is the closing of the latest re-check day (see NextDeadline) that wm has
// closed. Every customer has a deadline at each re-check day or before it, so a sweep at this
// watermark leaves each one evaluated through that day, as a sweep at wm would leave it
// evaluated through its last deadline before wm; a sweeper far behind the wall clock sweeps at
// it to take a customer's deadlines between two re-check days in one evaluation instead of one
// evaluation each. The days in between close the same either way (see Sweep).
func LastRecheckCloses(wm time.Time, p *Policy) time.Time {
	last := lastClosedDay(wm, p)
	r := recheckDay(last-Day(p.MaxDeadlineDays), p) // a multiple of max_deadline_days is within it
	for {
		next := recheckDay(r, p)
		if next > last {
			return DayCloses(r, p)
		}
		r = next
	}
}

// Sweep is the sweeper's evaluation at watermark wm: it runs Close at each of the customer's
// deadlines that wm has reached, one after another, and stops at the last of them. It returns
// the new state, the changes and the next deadline (after wm).
//
// Stopping at a deadline rather than at wm itself is what makes the stored state independent
// of when the sweeper happened to run: the changes are the same either way (no day between
// two deadlines changes anything), but the evaluation day and the scores of the last
// evaluated day would otherwise record the sweeper's clock at that moment.
func Sweep(s State, wm time.Time, p *Policy) (State, []Change, time.Time) {
	wm = CloseBound(wm, p)
	var out []Change
	for {
		due, a := lookAhead(s, p, false)
		if due.IsZero() || due.After(wm) {
			return s, out, due
		}
		var next State
		var changes []Change
		if a != nil {
			next, changes = a.closed(p)
		} else {
			next, changes = Close(s, due, p)
		}
		if min(next.EvalDay, next.TierDay) <= min(s.EvalDay, s.TierDay) {
			return s, out, due // unreachable: a deadline always closes a day
		}
		s, out = next, append(out, changes...)
	}
}

// close runs the end-of-day evaluation of every day up to last.
func (s *State) close(last Day, p *Policy, out []Change) []Change {
	for d := min(s.EvalDay, s.TierDay) + 1; d <= last; d++ {
		out = s.closeDay(d, p, out)
	}
	return out
}

// closeDay closes day d on whichever track has not closed it yet.
func (s *State) closeDay(d Day, p *Policy, out []Change) []Change {
	if d > s.TierDay {
		out = s.closeTierDay(d, p, out)
	}
	if d > s.EvalDay {
		out = s.closeActivityDay(d, p, out)
	}
	return out
}

// closeTierDays closes the tier days up to last.
func (s *State) closeTierDays(last Day, p *Policy, out []Change) []Change {
	for d := s.TierDay + 1; d <= last; d++ {
		out = s.closeTierDay(d, p, out)
	}
	return out
}

// closeTierDay is the end-of-day tier evaluation of day d: settlement, reviews and warnings,
// from the purchases known up to d. Its changes occur at midnight UTC after d and, like every
// end-of-day change, name no input record: whoever closes the day, the change is the same.
func (s *State) closeTierDay(d Day, p *Policy, out []Change) []Change {
	s.TierDay = d
	if !s.hasPurchaseDataAsOf(d) {
		return out
	}
	at := (d + 1).Start()
	out = s.settleTier(d, Source{}, p, out)
	return s.syncTier(d, func() (int64, Source) { return at.UnixMilli(), Source{} }, p, out)
}

// closeActivityDay is the end-of-day evaluation of churn level and segment for day d, from
// everything the three topics hold up to d.
func (s *State) closeActivityDay(d Day, p *Policy, out []Change) []Change {
	s.EvalDay = d
	s.NPS.trim(d)
	s.CSAT.trim(d)
	s.Complaints.trim(d)
	if !s.hasDataAsOf(d) {
		return out
	}
	at := (d + 1).Start()
	out = s.stepChurn(d, at, Source{}, p, out)
	return s.stepSegment(d, at, Source{}, p, out)
}

// hasPurchaseData reports whether any purchase or refund is booked.
func (s *State) hasPurchaseData() bool {
	return s.PurchaseDays > 0 || len(s.Window) > 0 || s.OldLastDay != 0
}

// hasPurchaseDataAsOf reports whether a purchase or refund is booked on or before day d.
func (s *State) hasPurchaseDataAsOf(d Day) bool {
	return (s.PurchaseDays > 0 && s.FirstDay <= d) || (len(s.Window) > 0 && s.Window[0].Day <= d) ||
		(s.OldLastDay != 0 && s.OldLastDay <= d)
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
	return s.Complaints.anyAsOf(d)
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
		ch.ModelVersion = f.version
		ch.PAlive = round3(f.pAlive)
	}
	ch.Reasons = f.reasons(p)
	if next < s.Churn {
		ch.Reasons = append([]Reason{{Code: ReasonRiskSubsided, Value: ch.Score,
			Message: fmt.Sprintf("risk score fell to %.2f, below the %s level's %.2f", f.score, s.Churn,
				map[Level]float64{LevelMedium: c.Medium.Leave, LevelHigh: c.High.Leave}[s.Churn])}}, ch.Reasons...)
	}
	ch.EventID = ChurnEventID(s.CustomerID, next.String(), at)
	s.Churn, s.ChurnSince = next, d+1
	return append(out, ch)
}

// rfmReasons explains a customer's RFM scores with the measures behind them.
func rfmReasons(v RFMValues, rfm RFM, p *Policy) []Reason {
	// Built with strconv rather than fmt.Sprintf: a segment change's reasons were a tenth of
	// a consumer's CPU. The text is what "%.0f" and "%d" print (TestRFMReasonsText).
	w := strconv.Itoa(p.Segments.WindowDays)
	var buf [256]byte // on the stack: the one allocation is the string
	b := append(buf[:0], "last purchase "...)
	b = strconv.AppendFloat(b, v.RecencyDays, 'f', 0, 64)
	b = append(b, " days ago: recency score "...)
	b = strconv.AppendInt(b, int64(rfm.R), 10)
	b = append(b, " of 5"...)
	recency := len(b)
	b = strconv.AppendFloat(b, v.Frequency, 'f', 0, 64)
	b = append(b, " purchase days in the last "...)
	b = append(b, w...)
	b = append(b, ": frequency score "...)
	b = strconv.AppendInt(b, int64(rfm.F), 10)
	b = append(b, " of 5"...)
	frequency := len(b)
	b = append(b, "net spend "...)
	b = appendMoney(b, int64(v.MonetaryMinor), p)
	b = append(b, " in the last "...)
	b = append(b, w...)
	b = append(b, " days: monetary score "...)
	b = strconv.AppendInt(b, int64(rfm.M), 10)
	b = append(b, " of 5"...)
	text := string(b) // one allocation for the three messages
	return []Reason{
		{Code: ReasonRecency, Value: v.RecencyDays, Message: text[:recency]},
		{Code: ReasonFrequency, Value: v.Frequency, Message: text[recency:frequency]},
		{Code: ReasonMonetary, Value: v.MonetaryMinor, Message: text[frequency:]},
	}
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
	if s.probe {
		// lookAhead only asks whether the day changes anything: no reasons, no event id.
		out = append(out, &SegmentChange{CustomerID: s.CustomerID, FromSegment: s.Segment, ToSegment: seg, OccurredAt: at})
		s.Segment, s.ValueLayer = seg, layer
		return out
	}
	ch := &SegmentChange{CustomerID: s.CustomerID, FromSegment: s.Segment, ToSegment: seg, ValueLayer: layer,
		FromValueLayer: s.ValueLayer, RFM: rfm, CutpointsVersion: p.Cutpoints.Version, PolicyVersion: p.Version,
		Reasons: rfmReasons(v, rfm, p), OccurredAt: at, Source: src}
	ch.EventID = SegmentEventID(s.CustomerID, seg.String(), layer.String(), at)
	s.Segment, s.ValueLayer = seg, layer
	return append(out, ch)
}
