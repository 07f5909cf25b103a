// Package kpi keeps the loyalty KPIs of a population in event time: revenue, orders, refunds,
// active, repurchasing and retained customers, lapses, NPS, CSAT, complaints, and the mix of
// tiers, churn levels, segments and value layers with the moves between them.
//
// It is pure: no I/O and no clock. The pipeline turns each customer write into counter
// increments (Deltas: OfEvent for an input event applied, OfChanges for the derived events) and
// adds them, in the same atomic write as the customer's state, to its shard's KPI counters in
// Redis; readers sum the shards (Counters) and derive the KPIs of any day and window (Report).
//
// Every counter belongs to a day of event time and holds no customer id, so the store grows by
// a bounded number of counters per day, never per customer. Quantities that are not additive
// over days (the distinct customers active in a rolling window, those who bought again, those
// retained from the window before, the count in each tier) are kept as difference arrays: a
// customer adds +1 on the day it enters the quantity and -1 on the day it leaves, and the value
// on day D is the sum of the increments up to D. A customer's increments are a function of its
// own history alone (its set of purchase days, its changes), so they do not depend on the order
// in which the topics were read, on batching or on restarts: a replay of the same history sums
// to the same counters. docs/metrics.md gives the formulas and edge cases.
package kpi

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// Windows are the rolling windows the KPIs are reported over, in days (1 is the day itself).
var Windows = []int{1, 7, 30, 90, 365}

// Counter codes: a stored counter is named "<day>:<code>", the day as a decimal scoring.Day.
const (
	codeOrders         = "o"  // purchases (orders)
	codeGross          = "g"  // purchase amounts, minor units
	codeRefunds        = "f"  // refunds
	codeRefundAmount   = "fa" // refund amounts, minor units
	codeLogins         = "lg" // logins
	codePromoters      = "np" // NPS answers 9–10
	codePassives       = "nn" // NPS answers 7–8
	codeDetractors     = "nd" // NPS answers 0–6
	codeCSATSum        = "cs" // CSAT scores summed
	codeCSATCount      = "cn" // CSAT answers
	codeComplaintsOpen = "co" // complaint cases opened
	codeComplaintsShut = "cc" // complaint cases closed
	codeNewCustomers   = "nw" // customers whose first event is on the day
	codeLapsed         = "lp" // customers passing their personal purchase horizon
	codeTierWarnings   = "tw" // tier review warnings
	prefixBuyers       = "b"  // b<W>: difference array of customers with a purchase day in the window
	prefixRepeaters    = "r"  // r<W>: ... with two or more purchase days in the window
	prefixRetained     = "k"  // k<W>: ... with a purchase day in the window and in the one before
	prefixTier         = "t:" // t:<tier>: difference array of customers in the tier
	prefixChurn        = "c:" // c:<level>
	prefixSegment      = "s:" // s:<segment>
	prefixLayer        = "l:" // l:<layer>
	prefixTierMove     = "tt:"
	prefixChurnMove    = "ct:"
	prefixSegmentMove  = "st:"
	prefixLayerMove    = "lt:"
	moveSep            = ">"
	// None names the segment and layer of a customer without one yet.
	None = "NONE"
)

// Deltas are counter increments: stored field name → amount.
type Deltas map[string]int64

// Field is the stored name of a counter of day d.
func Field(d scoring.Day, code string) string { return strconv.Itoa(int(d)) + ":" + code }

// ParseField splits a stored counter name into its day and code.
func ParseField(field string) (scoring.Day, string, bool) {
	day, code, ok := strings.Cut(field, ":")
	if !ok || code == "" {
		return 0, "", false
	}
	d, err := strconv.ParseInt(day, 10, 32)
	if err != nil {
		return 0, "", false
	}
	return scoring.Day(d), code, true
}

func (x Deltas) add(d scoring.Day, code string, n int64) {
	if n != 0 {
		x[Field(d, code)] += n
	}
}

// Compact drops the counters whose increments cancelled out.
func (x Deltas) Compact() Deltas {
	for k, v := range x {
		if v == 0 {
			delete(x, k)
		}
	}
	return x
}

// OfEvent adds to out the increments of applying e to before, which gave after. A duplicate
// (before unchanged) must not be passed.
func OfEvent(before, after scoring.State, e scoring.Event, p *scoring.Policy, out Deltas) {
	entry(before, after, p, out)
	d := scoring.DayOf(e.OccurredAt)
	switch e.Kind {
	case scoring.KindPurchase:
		out.add(d, codeOrders, 1)
		out.add(d, codeGross, e.AmountMinor)
		was := before.KnownPurchaseDays()
		if !containsDay(was.Days, d) {
			now := was
			now.Days = insertDay(was.Days, d)
			acc := spans{}
			acc.purchaseDays(now, p, 1)
			acc.purchaseDays(was, p, -1)
			acc.emit(out)
		}
	case scoring.KindRefund:
		out.add(d, codeRefunds, 1)
		out.add(d, codeRefundAmount, e.AmountMinor)
	case scoring.KindLogin:
		out.add(d, codeLogins, 1)
	case scoring.KindFeedback:
		switch e.FeedbackKind {
		case scoring.FeedbackNPS:
			switch {
			case e.Score >= 9:
				out.add(d, codePromoters, 1)
			case e.Score >= 7:
				out.add(d, codePassives, 1)
			default:
				out.add(d, codeDetractors, 1)
			}
		case scoring.FeedbackCSAT:
			out.add(d, codeCSATSum, int64(e.Score))
			out.add(d, codeCSATCount, 1)
		case scoring.FeedbackComplaintOpened:
			out.add(d, codeComplaintsOpen, 1)
		case scoring.FeedbackComplaintClosed:
			out.add(d, codeComplaintsShut, 1)
		}
	}
}

// entry counts a customer into the population on the day of its earliest event, in the lowest
// tier, churn level LOW and no segment or layer; the changes move it from there. An earlier
// event applied later (another topic's) moves the entry back to its day.
func entry(before, after scoring.State, p *scoring.Policy, out Deltas) {
	move := func(d scoring.Day, n int64) {
		out.add(d, codeNewCustomers, n)
		out.add(d, prefixTier+p.TierName(0), n)
		out.add(d, prefixChurn+scoring.LevelLow.String(), n)
		out.add(d, prefixSegment+None, n)
		out.add(d, prefixLayer+None, n)
	}
	switch {
	case before.ClockMs == 0:
		move(after.SeenDay, 1)
	case before.SeenDay != 0 && after.SeenDay != before.SeenDay:
		move(before.SeenDay, -1)
		move(after.SeenDay, 1)
	}
}

// OfChanges adds to out the moves between tiers, churn levels, segments and layers that
// changes report. An end-of-day change (at midnight, naming no input record) counts on the day
// it closed.
func OfChanges(changes []scoring.Change, out Deltas) {
	for _, c := range changes {
		switch ch := c.(type) {
		case *scoring.TierChange:
			d := changeDay(ch.OccurredAt, ch.Source)
			if ch.Direction == scoring.DirectionWarning {
				out.add(d, codeTierWarnings, 1)
				continue
			}
			moveBetween(out, d, prefixTier, prefixTierMove, ch.From, ch.To)
		case *scoring.ChurnRiskChange:
			d := changeDay(ch.OccurredAt, ch.Source)
			moveBetween(out, d, prefixChurn, prefixChurnMove, ch.FromLevel.String(), ch.ToLevel.String())
		case *scoring.SegmentChange:
			d := changeDay(ch.OccurredAt, ch.Source)
			if ch.FromSegment != ch.ToSegment {
				moveBetween(out, d, prefixSegment, prefixSegmentMove, orNone(ch.FromSegment.String()), orNone(ch.ToSegment.String()))
			}
			if ch.FromValueLayer != ch.ValueLayer {
				moveBetween(out, d, prefixLayer, prefixLayerMove, orNone(ch.FromValueLayer.String()), orNone(ch.ValueLayer.String()))
			}
		}
	}
}

func moveBetween(out Deltas, d scoring.Day, count, move, from, to string) {
	if from == to {
		return
	}
	out.add(d, count+from, -1)
	out.add(d, count+to, 1)
	out.add(d, move+from+moveSep+to, 1)
}

func orNone(s string) string {
	if s == "" {
		return None
	}
	return s
}

// changeDay is the day a change belongs to: an end-of-day evaluation's change occurs at the
// midnight after the day it evaluated.
func changeDay(at time.Time, src scoring.Source) scoring.Day {
	d := scoring.DayOf(at)
	if src == (scoring.Source{}) && at.Equal(d.Start()) {
		return d - 1
	}
	return d
}

func containsDay(days []scoring.Day, d scoring.Day) bool {
	i := sort.Search(len(days), func(i int) bool { return days[i] >= d })
	return i < len(days) && days[i] == d
}

func insertDay(days []scoring.Day, d scoring.Day) []scoring.Day {
	i := sort.Search(len(days), func(i int) bool { return days[i] >= d })
	out := make([]scoring.Day, 0, len(days)+1)
	out = append(out, days[:i]...)
	out = append(out, d)
	return append(out, days[i:]...)
}

// interval is the days [from, to], inclusive.
type interval struct{ from, to scoring.Day }

// spanCodes name the difference arrays of purchase days: for each window its buyers,
// retained and repeaters (in Windows order), then the lapse.
var spanCodes = func() []string {
	var out []string
	for _, w := range Windows {
		ws := strconv.Itoa(w)
		out = append(out, prefixBuyers+ws, prefixRetained+ws, prefixRepeaters+ws)
	}
	return append(out, codeLapsed)
}()

const lapseSpan = 3 * 5 // index of codeLapsed in spanCodes: after 3 codes for each of the 5 windows

// spanKey is one counter of spans: a day and an index into spanCodes.
type spanKey struct {
	day  scoring.Day
	code uint8
}

// spans accumulates difference-array increments by day and code without building counter
// names, so the increments of the set before and after a purchase cancel cheaply.
type spans map[spanKey]int64

// emit adds the increments that did not cancel to out.
func (x spans) emit(out Deltas) {
	for k, n := range x {
		if n != 0 {
			out.add(k.day, spanCodes[k.code], n)
		}
	}
}

// purchaseDays adds sign times the difference arrays a set of purchase days contributes:
// buyers, repeaters and retained customers per window, and the lapse. Called with the set
// after a new purchase day (+1) and before it (-1), it adds what that day changed.
func (x spans) purchaseDays(set scoring.PurchaseDaySet, p *scoring.Policy, sign int64) {
	days := set.Days
	if len(days) == 0 {
		return
	}
	span := func(code int, ivs []interval) {
		for _, iv := range ivs {
			x[spanKey{iv.from, uint8(code)}] += sign
			x[spanKey{iv.to + 1, uint8(code)}] -= sign
		}
	}
	buyers := make([]interval, 0, len(days))
	prior := make([]interval, 0, len(days))
	var rep, both []interval
	for wi, w := range Windows {
		wd := scoring.Day(w)
		// A customer is a buyer in the window ending D when a purchase day a has a ≤ D < a+W.
		buyers, prior = buyers[:0], prior[:0]
		for _, a := range days {
			buyers = appendMerged(buyers, interval{a, a + wd - 1})
			prior = appendMerged(prior, interval{a + wd, a + 2*wd - 1})
		}
		span(3*wi, buyers)
		// Retained: a purchase day in the window and one in the window before it.
		both = intersect(both[:0], buyers, prior)
		span(3*wi+1, both)
		if w > 1 {
			// Two purchase days a < b within the window ending D: b ≤ D < a+W.
			rep = rep[:0]
			for i := 1; i < len(days); i++ {
				if a, b := days[i-1], days[i]; b-a < wd {
					rep = appendMerged(rep, interval{b, a + wd - 1})
				}
			}
			span(3*wi+2, rep)
		}
	}
	// The lapse: a customer passes its personal horizon after a purchase day with no purchase
	// since.
	for i, a := range days {
		at := a + Horizon(set, i, p)
		if i+1 == len(days) || at < days[i+1] {
			x[spanKey{at, lapseSpan}] += sign
		}
	}
}

// Horizon is the personal purchase horizon after the i-th known purchase day of set, in days:
// gap_ratio_full_risk times the customer's usual gap between purchase days as of that day (the
// span since the first purchase over the repeat purchase days), or times fallback_gap_days
// while it has fewer than min_repeat_purchases repeats. It is where the churn rules' purchase
// gap risk reaches 1.
func Horizon(set scoring.PurchaseDaySet, i int, p *scoring.Policy) scoring.Day {
	c := &p.Churn
	a := set.Days[i]
	repeats := i
	if set.Hidden > 0 && a >= set.HiddenBefore {
		repeats += set.Hidden
	}
	usual := c.FallbackGapDays
	if repeats >= c.MinRepeatPurchases {
		usual = math.Max(float64(a-set.Days[0])/float64(repeats), 1)
	}
	return scoring.Day(math.Ceil(c.GapRatioFullRisk*usual - 1e-9))
}

// appendMerged appends iv to ivs, sorted by start, merging it with the last one when they
// overlap or touch.
func appendMerged(ivs []interval, iv interval) []interval {
	if n := len(ivs); n > 0 && iv.from <= ivs[n-1].to+1 {
		ivs[n-1].to = max(ivs[n-1].to, iv.to)
		return ivs
	}
	return append(ivs, iv)
}

// intersect appends to out the intersection of two sorted, disjoint interval lists.
func intersect(out, a, b []interval) []interval {
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].from, b[j].from), min(a[i].to, b[j].to)
		if lo <= hi {
			out = appendMerged(out, interval{lo, hi})
		}
		if a[i].to < b[j].to {
			i++
		} else {
			j++
		}
	}
	return out
}
