package scoring

import (
	"fmt"
	"strconv"
)

// spendBetween is the net spend booked on days from..to inclusive.
func (s *State) spendBetween(from, to Day) int64 {
	var sum int64
	for _, e := range s.Window {
		if e.Day >= from && e.Day <= to {
			sum += e.Net
		}
	}
	return sum
}

// qualifiedTier is the highest tier whose threshold spend meets.
func qualifiedTier(spend int64, p *Policy) int {
	t := 0
	for i, l := range p.Tiers.Levels {
		if spend >= l.MinSpendMinor {
			t = i
		}
	}
	return t
}

// upgradeTier is the tier the customer holds by the data known up to day to:
// the highest tier above the settled base whose threshold was reached on
// or after the floor day, with that day, or the base tier itself.
//
// It finds the first day in [floor, to] on which the rolling window spend reaches each
// tier's threshold in one sweep over the window, for every tier at once (the end-of-day
// evaluation asks up to twice a day). The window sum is piecewise constant: it changes only
// on a day with a booking and on the day a booking leaves the window.
func (s *State) upgradeTier(to Day, p *Policy) (tier int, reached Day) {
	base, top := int(s.BaseTier), len(p.Tiers.Levels)-1
	from := s.TierFloor
	if top <= base || from > to {
		return base, s.BaseReached
	}
	const never = Day(1<<31 - 1)
	w := Day(p.Tiers.WindowDays)
	// A window ending on a day of [from, to] holds bookings of days after from−w and up to to
	// at most, so their positive nets bound every such window's sum. Most customers, on most
	// days they are evaluated, are far from the next threshold (the tier above the base: the
	// policy's thresholds rise with the tiers): one pass without the sweep.
	var bound int64
	for _, e := range s.Window {
		if e.Day > from-w && e.Day <= to && e.Net > 0 {
			bound += e.Net
		}
	}
	if bound < p.Tiers.Levels[base+1].MinSpendMinor {
		return base, s.BaseReached
	}
	var found [maxTierLevels]bool
	var first [maxTierLevels]Day
	// check records, for each tier not yet reached whose threshold sum meets, day d as its
	// earliest; it reports whether the top tier, which ends the search, is reached.
	check := func(sum int64, d Day) bool {
		for t := top; t > base; t-- {
			if !found[t] && sum >= p.Tiers.Levels[t].MinSpendMinor {
				found[t], first[t] = true, d
			}
		}
		return found[top]
	}
	n := len(s.Window)
	i, j := 0, 0 // next booking to add; next booking to remove (on its Day+w)
	var sum int64
	checkedFrom := false
	for {
		next := never
		if i < n {
			next = s.Window[i].Day
		}
		if j < n && s.Window[j].Day+w < next {
			next = s.Window[j].Day + w
		}
		if !checkedFrom && next > from {
			if check(sum, from) {
				break
			}
			checkedFrom = true
		}
		if next == never || next > to {
			break
		}
		for i < n && s.Window[i].Day == next {
			sum += s.Window[i].Net
			i++
		}
		for j < i && s.Window[j].Day+w == next {
			sum -= s.Window[j].Net
			j++
		}
		if next >= from && check(sum, next) {
			break
		}
	}
	for t := top; t > base; t-- {
		if found[t] {
			return t, first[t]
		}
	}
	return base, s.BaseReached
}

// maxTierLevels bounds a policy's tiers (validated).
const maxTierLevels = 9

func money(minor int64, p *Policy) string {
	return string(appendMoney(nil, minor, p))
}

// appendMoney appends money(minor, p).
func appendMoney(b []byte, minor int64, p *Policy) []byte {
	u := uint64(minor)
	if minor < 0 {
		b, u = append(b, '-'), uint64(-minor) // -MinInt64 wraps to its magnitude as a uint64
	}
	b = strconv.AppendUint(b, u/100, 10)
	b = append(b, '.', byte('0'+u%100/10), byte('0'+u%10), ' ')
	return append(b, p.Currency...)
}

// syncTier reports the current tier as the data now supports it: an
// upgrade as soon as the spend qualifies, or the reversal of an upgrade
// whose qualifying spend was refunded within the returns window.
//
// Upgrades count only spend booked up to day upTo (an end-of-day evaluation
// must not announce an upgrade earned on a later day); reversals look at
// everything known.
func (s *State) syncTier(upTo Day, occurred func() (int64, Source), p *Policy, out []Change) []Change {
	t, reached := s.upgradeTier(upTo, p)
	if t <= int(s.Tier) {
		// A reversal needs the qualifying spend gone from every day up to the latest one
		// known — the newest purchase's day, or the evaluated day when the sweeper closes days
		// after the last event (old spend leaving the window is not a reversal).
		if t, reached = s.upgradeTier(max(upTo, s.tierClockDay()), p); t >= int(s.Tier) {
			return out
		}
	}
	at := upTo
	from := int(s.Tier)
	s.Tier = uint8(t)
	ms, src := occurred()
	c := &TierChange{CustomerID: s.CustomerID, From: p.TierName(from), To: p.TierName(t),
		PolicyVersion: p.Version, Source: src, OccurredAt: msTime(ms)}
	spend := s.spend(at, p.Tiers.WindowDays)
	if t > from {
		c.Direction = DirectionUp
		c.Reasons = []Reason{{Code: ReasonSpendQualifies, Value: float64(spend),
			Message: fmt.Sprintf("net spend %s over %d days reached the %s threshold of %s on %s", money(spend, p),
				p.Tiers.WindowDays, p.TierName(t), money(p.Tiers.Levels[t].MinSpendMinor, p), reached.Start().Format("2006-01-02"))}}
	} else {
		c.Direction = DirectionDown
		c.Reasons = []Reason{{Code: ReasonRefundReversal, Value: float64(spend),
			Message: fmt.Sprintf("a refund within the %d-day returns window brought qualifying spend below the %s threshold of %s",
				p.Tiers.ReturnsWindowDays, p.TierName(from), money(p.Tiers.Levels[from].MinSpendMinor, p))}}
	}
	c.EventID = TierEventID(s.CustomerID, string(c.Direction), c.To, c.OccurredAt)
	return append(out, c)
}

// settleTier runs the end-of-day tier rules for day d using only what is
// known up to d: an upgrade older than the returns window becomes the
// settled base; a review that is due lowers the base by at most one tier
// when the spend no longer qualifies; a warning goes out warning_days
// before a review the customer is on pace to miss.
func (s *State) settleTier(d Day, src Source, p *Policy, out []Change) []Change {
	tp := &p.Tiers
	t, reached := s.upgradeTier(d, p)
	if t > int(s.BaseTier) && d-reached >= Day(tp.ReturnsWindowDays) {
		s.BaseTier, s.BaseReached, s.BaseReview, s.TierFloor = uint8(t), reached, reached+Day(tp.ReviewAfterDays), reached
		t = int(s.BaseTier)
	}
	if t != int(s.BaseTier) || s.BaseTier == 0 {
		return out // a pending upgrade supersedes the base's review
	}
	base := int(s.BaseTier)
	at := (d + 1).Start()
	threshold := tp.Levels[base].MinSpendMinor
	switch {
	case d+1 >= s.BaseReview:
		// The review day's window: the window_days ending on the review
		// day, of which everything up to the day before is known.
		spend := s.spendBetween(d+1-Day(tp.WindowDays)+1, d)
		if q := qualifiedTier(spend, p); q >= base {
			s.BaseReview += Day(tp.ReviewAfterDays)
		} else {
			nt := max(q, base-1)
			s.BaseTier, s.BaseReached, s.BaseReview, s.TierFloor = uint8(nt), d+1, d+1+Day(tp.ReviewAfterDays), d+1
			if int(s.Tier) == base {
				s.Tier = uint8(nt)
				c := &TierChange{CustomerID: s.CustomerID, From: p.TierName(base), To: p.TierName(nt),
					Direction: DirectionDown, PolicyVersion: p.Version, OccurredAt: at, Source: src,
					Reasons: []Reason{{Code: ReasonReviewMissed, Value: float64(spend),
						Message: fmt.Sprintf("at the review, net spend over %d days was %s, below the %s threshold of %s",
							tp.WindowDays, money(spend, p), p.TierName(base), money(threshold, p))}}}
				c.EventID = TierEventID(s.CustomerID, string(c.Direction), c.To, at)
				out = append(out, c)
			}
		}
	case tp.WarningDays > 0 && d+1 == s.BaseReview-Day(tp.WarningDays):
		// Projected spend at the review: what will still be in the review
		// day's window, plus the current window's daily pace until then.
		review := s.BaseReview
		remaining := s.spendBetween(review-Day(tp.WindowDays)+1, d)
		daysLeft := int64(review - 1 - d)
		projected := remaining + s.spend(d, tp.WindowDays)*daysLeft/int64(tp.WindowDays)
		if projected < threshold {
			c := &TierChange{CustomerID: s.CustomerID, From: p.TierName(base), To: p.TierName(base),
				Direction: DirectionWarning, PolicyVersion: p.Version, OccurredAt: at, Source: src,
				Reasons: []Reason{{Code: ReasonReviewAtRisk, Value: float64(projected),
					Message: fmt.Sprintf("on pace for %s at the %s review on %s, below the %s threshold of %s",
						money(projected, p), p.TierName(base), review.Start().Format("2006-01-02"), p.TierName(base), money(threshold, p))}}}
			c.EventID = TierEventID(s.CustomerID, string(c.Direction), c.To, at)
			out = append(out, c)
		}
	}
	return out
}
