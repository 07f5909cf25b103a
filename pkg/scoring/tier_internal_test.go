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

func TestEarliestQualificationMatchesItsDefinition(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		days := rapid.SliceOfNDistinct(rapid.IntRange(0, 900), 0, 30, rapid.ID[int]).Draw(t, "days")
		sort.Ints(days)
		var s State
		for _, d := range days {
			s.Window = append(s.Window, DayNet{Day: Day(20000 + d), Net: rapid.Int64Range(-60000, 200000).Draw(t, "net")})
		}
		from := Day(20000 + rapid.IntRange(0, 900).Draw(t, "from"))
		to := from + Day(rapid.IntRange(-5, 900).Draw(t, "span"))
		min := rapid.Int64Range(1, 400000).Draw(t, "min")
		gd, gok := s.earliestQualification(min, from, to, p)
		wd, wok := earliestQualificationRef(&s, min, from, to, p)
		if gd != wd || gok != wok {
			t.Fatalf("earliestQualification = %d,%v; definition gives %d,%v", gd, gok, wd, wok)
		}
	})
}
