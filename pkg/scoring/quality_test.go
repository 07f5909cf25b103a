package scoring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
)

// TestQualityObservationsAndOutcomesAreTheCustomersHistory: over two years of a customer's
// purchases, every quality day after the first purchase records one observation — the level of
// the state closed exactly to that day, the P(alive) decile and purchase probabilities of an
// independent BG/NBD computation — and each observation's outcome, reported exactly once, is
// whether the raw events show a purchase within 30 and 90 days; alike whether the days close
// as the events arrive or in a backlog.
func TestQualityObservationsAndOutcomesAreTheCustomersHistory(t *testing.T) {
	p := withFit(t, DefaultPolicy())
	model, _, _ := p.ChurnModel()
	rng := rand.New(rand.NewPCG(3, 17))
	end := day(800)
	totalObs, bought := 0, [2]int{}
	for trial := range 40 {
		var g evGen
		var evs []Event
		gap := []int{8, 30, 90}[trial%3]
		for d := rng.IntN(40); d < 760; d += 1 + rng.IntN(gap) {
			evs = append(evs, g.purchase(day(d).Add(time.Duration(rng.IntN(20))*time.Hour), int64(500+rng.IntN(20000)), fmt.Sprintf("o%d", d)))
			if trial%2 == 0 && rng.IntN(6) == 0 {
				evs = append(evs, g.login(day(d+1)))
			}
		}
		purchaseDays := map[Day]bool{}
		var purchases []Event
		for _, e := range evs {
			if e.Kind == KindPurchase {
				purchaseDays[DayOf(e.OccurredAt)] = true
				purchases = append(purchases, e)
			}
		}
		boughtWithin := func(d Day, h int) bool {
			for x := d + 1; x <= d+Day(h); x++ {
				if purchaseDays[x] {
					return true
				}
			}
			return false
		}
		// upTo is the customer's state from its events up to day d, closed through d.
		upTo := func(d Day) State {
			var s State
			for _, e := range evs {
				if DayOf(e.OccurredAt) <= d {
					s, _ = mustApply(t, s, e, p)
				}
			}
			s, _ = Close(s, DayCloses(d, p), p)
			return s
		}
		run := func(lag time.Duration, every int) []Sample {
			var s State
			var samples []Sample
			for i, e := range evs {
				if i%every == 0 {
					var sm []Sample
					s, _, _, sm = SweepSampled(s, e.OccurredAt.Add(-lag), p)
					samples = append(samples, sm...)
				}
				s, _ = mustApply(t, s, e, p)
			}
			_, _, _, sm := SweepSampled(s, end, p)
			return append(samples, sm...)
		}
		for name, samples := range map[string][]Sample{"live": run(2*time.Hour, 1), "backlog": run(GateLead(p), 4)} {
			observed := map[Day]Observation{}
			settled := map[Day]bool{}
			lastBoundary := Day(0)
			for _, sm := range samples {
				lastBoundary = sm.Boundary
				if o := sm.Quality.Observed; o != nil {
					if o.Day != sm.Boundary || !p.Churn.QualityAt(o.Day) {
						t.Fatalf("trial %d %s: observation %+v at boundary %d", trial, name, *o, sm.Boundary)
					}
					observed[o.Day] = *o
				}
				for _, out := range sm.Quality.Outcomes {
					o := out.Observation
					if observed[o.Day] != o || settled[o.Day] {
						t.Fatalf("trial %d %s: outcome of %+v: observed %+v, settled before %v", trial, name, o, observed[o.Day], settled[o.Day])
					}
					settled[o.Day] = true
					for i, h := range QualityHorizons {
						if out.Bought[i] != boughtWithin(o.Day, h) {
							t.Fatalf("trial %d %s: observation of day %d: bought within %d days %v, the events say %v", trial, name, o.Day, h, out.Bought[i], !out.Bought[i])
						}
					}
				}
			}
			for d := DayOf(evs[0].OccurredAt); d <= lastBoundary; d++ {
				if !p.Churn.QualityAt(d) {
					continue
				}
				o, ok := observed[d]
				if !ok {
					t.Fatalf("trial %d %s: no observation on quality day %d", trial, name, d)
				}
				at := upTo(d)
				want := Observation{Day: d, Level: at.Churn, Decile: -1, Within: [2]int16{-1, -1}}
				if ms, _ := modelSampleOf(purchases, d); int(ms.X) >= p.Churn.MinRepeatPurchases && int(ms.TDays) >= p.Churn.MinTenureDays {
					u := p.Churn.TimeUnitDays
					sum := btyd.Summary{X: float64(ms.X), TX: float64(ms.TXDays) / u, T: float64(ms.TDays) / u}
					want.Decile = int8(min(int(model.PAlive(sum)*10), 9))
					for i, h := range QualityHorizons {
						want.Within[i] = int16(math.Round(model.ProbPurchaseWithin(sum, float64(h)/u) * 10000))
					}
				}
				if o != want {
					t.Fatalf("trial %d %s: observation of day %d %+v, want %+v", trial, name, d, o, want)
				}
				if due := d+Day(QualityHorizons[1]) <= lastBoundary || boughtWithin(d, int(lastBoundary-d)); due != settled[d] {
					t.Fatalf("trial %d %s: observation of day %d settled %v, want %v (last boundary %d)", trial, name, d, settled[d], due, lastBoundary)
				}
				if name == "live" {
					totalObs++
					for i, h := range QualityHorizons {
						if boughtWithin(d, h) {
							bought[i]++
						}
					}
				}
			}
		}
	}
	if totalObs < 500 || bought[0] == 0 || bought[0] == totalObs || bought[1] == bought[0] {
		t.Fatalf("%d observations, %v bought within 30 and 90 days: the histories do not exercise both outcomes", totalObs, bought)
	}
	t.Logf("%d observations; %d bought within 30 days, %d within 90", totalObs, bought[0], bought[1])
}

func TestObservationsSurviveTheStoredFields(t *testing.T) {
	s := typicalCustomer(t, DefaultPolicy())
	s.Observations = []Observation{{Day: 20440, Level: LevelMedium, Decile: 3, Within: [2]int16{1204, 3310}}, {Day: 20468, Level: LevelHigh, Decile: -1, Within: [2]int16{-1, -1}}}
	got, err := UnmarshalFields(s.MarshalFields())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Observations) != 2 || got.Observations[0] != s.Observations[0] || got.Observations[1] != s.Observations[1] {
		t.Fatalf("observations %+v came back as %+v", s.Observations, got.Observations)
	}
	for _, bad := range []string{"ju8.3.4.xg.1a0", "ju8.1.0.xg.1a0", "ju8.1.4.xg", "ju8.1.4.xg.1a0.ju8.1.4.xg.1a0"} {
		f := s.MarshalFields()
		f["mq"] = bad
		if _, err := UnmarshalFields(f); err == nil {
			t.Errorf("observations %q decoded", bad)
		}
	}
}
