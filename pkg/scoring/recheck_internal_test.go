package scoring

import (
	"testing"
	"time"
)

// LastRecheckCloses is checked against its definition, day by day: the latest re-check day
// whose closing wm has reached.
func TestLastRecheckClosesIsTheLatestRecheckDayClosed(t *testing.T) {
	for _, grid := range []struct{ maxDeadline, boundaries int }{{7, 7}, {3, 7}, {7, 28}, {1, 7}, {5, 14}} {
		p := DefaultPolicy()
		p.MaxDeadlineDays, p.Segments.CutpointsEveryDays = grid.maxDeadline, grid.boundaries
		isRecheck := func(d Day) bool {
			return int64(d)%int64(grid.maxDeadline) == 0 || IsBoundary(d, p)
		}
		start := Day(20000)
		for d := start; d < start+60; d++ {
			for _, into := range []time.Duration{0, time.Hour, 23 * time.Hour} {
				wm := DayCloses(d, p).Add(into)
				want := d
				for !isRecheck(want) {
					want--
				}
				if got := LastRecheckCloses(wm, p); !got.Equal(DayCloses(want, p)) {
					t.Fatalf("grid %+v, wm %s: got %s, want the closing of day %d (%s)", grid, wm, got, want, DayCloses(want, p))
				}
			}
			// Just before day d closes, the answer is a re-check day before d.
			if got := LastRecheckCloses(DayCloses(d, p).Add(-time.Nanosecond), p); !got.Before(DayCloses(d, p)) {
				t.Fatalf("grid %+v: before day %d closes got %s", grid, d, got)
			}
		}
	}
}
