package scoring

import (
	"sort"
	"testing"

	"pgregory.net/rapid"
)

// earliestQualificationRef is the obvious quadratic definition.
func earliestQualificationRef(s *State, min int64, from, to Day, p *Policy) (Day, bool) {
	for d := from; d <= to; d++ {
		if s.spend(d, p.Tiers.WindowDays) >= min {
			return d, true
		}
	}
	return 0, false
}

// upgradeTierRef is upgradeTier by its definition: the highest tier above the base whose
// threshold the rolling spend reached on a day from the floor to to, and its first such day.
func upgradeTierRef(s *State, to Day, p *Policy) (int, Day) {
	for t := len(p.Tiers.Levels) - 1; t > int(s.BaseTier); t-- {
		if d, ok := earliestQualificationRef(s, p.Tiers.Levels[t].MinSpendMinor, s.TierFloor, to, p); ok {
			return t, d
		}
	}
	return int(s.BaseTier), s.BaseReached
}

func TestUpgradeTierMatchesItsDefinition(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		days := rapid.SliceOfNDistinct(rapid.IntRange(0, 900), 0, 30, rapid.ID[int]).Draw(t, "days")
		sort.Ints(days)
		var s State
		for _, d := range days {
			s.Window = append(s.Window, DayNet{Day: Day(20000 + d), Net: rapid.Int64Range(-60000, 200000).Draw(t, "net")})
		}
		s.BaseTier = uint8(rapid.IntRange(0, len(p.Tiers.Levels)-1).Draw(t, "base"))
		s.BaseReached = Day(20000 + rapid.IntRange(0, 900).Draw(t, "reached"))
		s.TierFloor = Day(20000 + rapid.IntRange(0, 900).Draw(t, "floor"))
		to := s.TierFloor + Day(rapid.IntRange(-5, 900).Draw(t, "span"))
		gt, gd := s.upgradeTier(to, p)
		wt, wd := upgradeTierRef(&s, to, p)
		if gt != wt || gd != wd {
			t.Fatalf("upgradeTier = %d on %d; definition gives %d on %d", gt, gd, wt, wd)
		}
	})
}
