package scoring

import (
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestPropertyProbingFindsTheSameDeadline: the deadline lookAhead finds when only the deadline
// is wanted (its copy's changes built without reasons or ids) is the one it finds when Sweep
// takes the copy, after every event of a history and after sweeps to random watermarks.
func TestPropertyProbingFindsTheSameDeadline(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		var s State
		for _, e := range withOffsets(genHistory(t, p)) {
			s, _ = mustApply(t, s, e, p)
			s = maybeSwept(t, s, p, 60)
			probed, _ := lookAhead(s, p, true)
			full, a := lookAhead(s, p, false)
			if !probed.Equal(full) {
				t.Fatalf("probing found %s, the full look-ahead %s", probed, full)
			}
			if a != nil && a.sim.probe {
				t.Fatal("the look-ahead Sweep takes is marked as a probe")
			}
		}
		if s.probe {
			t.Fatal("an applied state is marked as a probe")
		}
	})
}

// TestPropertyASweepThatClosesNoDayLeavesTheStateAsItIs: at a watermark that closes no day the
// state has left open (Closes false), SweepSampled returns the state unchanged, with no
// changes and no samples, so a caller may skip it.
func TestPropertyASweepThatClosesNoDayLeavesTheStateAsItIs(t *testing.T) {
	closable, unclosable := 0, 0
	defer func() {
		if !t.Failed() && (closable == 0 || unclosable == 0) {
			t.Errorf("the watermarks drawn closed a day %d times and none %d times: both cases must be checked", closable, unclosable)
		}
	}()
	rapid.Check(t, func(t *rapid.T) {
		p := DefaultPolicy()
		if rapid.Bool().Draw(t, "gated") { // cut points sealed through some day: the gate applies
			sealed := Day(rapid.IntRange(0, 400).Draw(t, "sealed"))
			if rapid.IntRange(0, 4).Draw(t, "never sealed") == 0 {
				sealed = NotSealed
			}
			p.Sealed = &sealed
		}
		var s State
		for _, e := range withOffsets(genHistory(t, p)) {
			s, _ = mustApply(t, s, e, p)
			s = maybeSwept(t, s, p, 40)
			wm := msTime(s.ClockMs).Add(time.Duration(rapid.IntRange(-72, 24*30).Draw(t, "hours")) * time.Hour)
			got, changes, _, samples := SweepSampled(s, wm, p)
			if Closes(s, wm, p) {
				closable++ // a sweep then may or may not reach a deadline: no claim
				continue
			}
			unclosable++
			if len(changes) > 0 || len(samples) > 0 || !reflect.DeepEqual(got, s) {
				t.Fatalf("wm %s closes no day of a state closed through %d/%d, but the sweep changed it: %d changes, %d samples, state %+v",
					wm, s.EvalDay, s.TierDay, len(changes), len(samples), got)
			}
		}
	})
}

// maybeSwept returns s, or, as drawn, s swept to a watermark up to maxDays after its clock.
func maybeSwept(t *rapid.T, s State, p *Policy, maxDays int) State {
	if rapid.Bool().Draw(t, "sweep") {
		wm := msTime(s.ClockMs).Add(time.Duration(rapid.IntRange(0, maxDays).Draw(t, "sweep days")) * 24 * time.Hour)
		s, _, _ = Sweep(s, wm, p)
	}
	return s
}

// The reasons' text is what the fmt verbs they replaced print.
func TestRFMReasonsText(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		v := RFMValues{
			RecencyDays:   rapid.Float64Range(0, 5000).Draw(t, "recency"),
			Frequency:     float64(rapid.IntRange(0, 400).Draw(t, "frequency")),
			MonetaryMinor: float64(rapid.Int64Range(-1e12, 1e12).Draw(t, "monetary")),
		}
		rfm := RFM{R: rapid.IntRange(1, 5).Draw(t, "r"), F: rapid.IntRange(1, 5).Draw(t, "f"), M: rapid.IntRange(1, 5).Draw(t, "m")}
		w := p.Segments.WindowDays
		want := []string{
			fmt.Sprintf("last purchase %.0f days ago: recency score %d of 5", v.RecencyDays, rfm.R),
			fmt.Sprintf("%.0f purchase days in the last %d: frequency score %d of 5", v.Frequency, w, rfm.F),
			fmt.Sprintf("net spend %s in the last %d days: monetary score %d of 5", moneyRef(int64(v.MonetaryMinor), p), w, rfm.M),
		}
		got := rfmReasons(v, rfm, p)
		for i, r := range got {
			if r.Message != want[i] {
				t.Fatalf("reason %d: %q, want %q", i, r.Message, want[i])
			}
		}
	})
}

func TestMoneyText(t *testing.T) {
	p := DefaultPolicy()
	for _, m := range []int64{0, 5, -5, 99, 100, -100, 101, 123456, -123456, math.MaxInt64, math.MinInt64 + 1} {
		if got, want := money(m, p), moneyRef(m, p); got != want {
			t.Errorf("money(%d) = %q, want %q", m, got, want)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		m := rapid.Int64Range(math.MinInt64+1, math.MaxInt64).Draw(t, "minor")
		if got, want := money(m, p), moneyRef(m, p); got != want {
			t.Fatalf("money(%d) = %q, want %q", m, got, want)
		}
	})
}

// moneyRef is money as it was first written.
func moneyRef(minor int64, p *Policy) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, minor/100, minor%100, p.Currency)
}
