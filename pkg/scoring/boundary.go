package scoring

import (
	"math"
	"time"
)

// Population cut points are a function of history: the pipeline derives them from every
// customer's RFM measures at the end of fixed boundary days (every
// Segments.CutpointsEveryDays), and the set derived at a boundary scores the days after it,
// up to and including the next boundary. A day therefore closes only once the cut points that
// score it are final (CloseBound). Boundary days are re-check days, so every customer is
// evaluated at each of them, whoever closes it (SweepSampled collects the measures).

// DefaultCutpointsEveryDays is the boundary distance when a policy omits it: weekly.
const DefaultCutpointsEveryDays = 7

// MaxCutpointsEveryDays bounds the boundary distance: cut points at most four weeks old.
const MaxCutpointsEveryDays = 28

// NotSealed is the Policy.Sealed of a namespace in which no boundary's cut points are final
// yet: no day closes until the first one is sealed.
const NotSealed Day = math.MinInt32

// IsBoundary reports whether d is a cut-point boundary day.
func IsBoundary(d Day, p *Policy) bool {
	n := int64(p.Segments.CutpointsEveryDays)
	return int64(d)-floorDiv(int64(d), n)*n == 0
}

// NextBoundary returns the first boundary day after d.
func NextBoundary(d Day, p *Policy) Day {
	n := int64(p.Segments.CutpointsEveryDays)
	return Day((floorDiv(int64(d), n) + 1) * n)
}

// CloseBound is the watermark up to which the policy lets days close: wm itself, or, under
// sealed population cut points, at most the closing of the first boundary day after the last
// sealed one (the days after that boundary need its cut points, which are not final yet).
// It is the zero time, closing nothing, while no boundary is sealed.
func CloseBound(wm time.Time, p *Policy) time.Time {
	if p.Sealed == nil {
		return wm
	}
	if *p.Sealed == NotSealed {
		return time.Time{}
	}
	if gate := DayCloses(NextBoundary(*p.Sealed, p), p); wm.After(gate) {
		return gate
	}
	return wm
}

// GateLead is how far in event time past the gate (CloseBound) records may be applied while
// the next boundary is being sealed. Every customer has been evaluated through the last sealed
// boundary, so a customer's open days then span at most the boundary distance, the day with
// its allowed lateness, and this lead: MaxOpenDays in all.
func GateLead(p *Policy) time.Duration {
	return time.Duration(MaxOpenDays-2-p.Segments.CutpointsEveryDays) * 24 * time.Hour
}

// Sample is a customer's RFM measures at the end of a boundary day: its share of the
// population cut points derived at that boundary, and at a refit boundary of the churn model
// fitted there.
type Sample struct {
	Boundary Day
	Values   RFMValues
	// Model is the customer's share of the churn model fitted at the boundary, at refit
	// boundaries (RefitPolicy.At) only.
	Model *ModelSample
	// Quality is the model-quality outcomes the boundary settled and, on a quality day, the
	// customer's new observation.
	Quality Quality
}

// Closes reports whether watermark wm closes a day s has not closed yet (under the cut-point
// gate, CloseBound). When it does not, Sweep and SweepSampled at wm return s as it is, with no
// changes and no samples: every deadline of s is the closing of a day after the ones it has
// closed. A caller that only wants the state skips their look-ahead with it; the consumers
// of a live pipeline, whose customers are closed through yesterday, find nothing to close on
// almost every write.
func Closes(s State, wm time.Time, p *Policy) bool {
	return s.started() && min(s.EvalDay, s.TierDay) < lastClosedDay(CloseBound(wm, p), p)
}

// SweepSampled is Sweep that also returns the customer's RFM measures at the end of every
// boundary day it closes. It sweeps to each of those boundaries in turn (a boundary day is
// always a deadline, so Sweep stops on it) and then on to wm, which gives the same changes as
// one Sweep to wm, and the same state but for the model-quality observations it records and
// settles at the boundaries (observeQuality); the pipeline closes days with it alone.
func SweepSampled(s State, wm time.Time, p *Policy) (State, []Change, time.Time, []Sample) {
	bound := CloseBound(wm, p)
	var out []Change
	var samples []Sample
	for s.started() {
		b := NextBoundary(s.EvalDay, p)
		if DayCloses(b, p).After(bound) {
			break
		}
		next, changes, _ := Sweep(s, DayCloses(b, p), p)
		s, out = next, append(out, changes...)
		if s.EvalDay != b {
			break // unreachable: every chain of deadlines stops on the boundary days
		}
		if v, ok := s.RFMValuesAt(b, p); ok {
			sm := Sample{Boundary: b, Values: v}
			if p.Churn.Refit.At(b) {
				if m, ok := s.ModelSampleAt(b, p); ok {
					sm.Model = &m
				}
			}
			sm.Quality = s.observeQuality(b, p)
			samples = append(samples, sm)
		}
	}
	s, changes, due := Sweep(s, bound, p)
	return s, append(out, changes...), due, samples
}
