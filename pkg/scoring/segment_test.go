package scoring

import (
	"fmt"
	"testing"
)

func TestSegmentRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		r, f []int
		want Segment
	}{
		{"recent and frequent buyers are Champions", []int{5}, []int{4, 5}, SegmentChampions},
		{"fairly recent frequent buyers are Loyal", []int{3, 4}, []int{4, 5}, SegmentLoyal},
		{"recent buyers of middling frequency are Potential Loyalists", []int{4, 5}, []int{2, 3}, SegmentPotentialLoyalists},
		{"the most recent one-off buyers are New", []int{5}, []int{1}, SegmentNewCustomers},
		{"recent one-off buyers are Promising", []int{4}, []int{1}, SegmentPromising},
		{"middling recency and frequency Need Attention", []int{3}, []int{3}, SegmentNeedAttention},
		{"middling recency and low frequency are About to Sleep", []int{3}, []int{1, 2}, SegmentAboutToSleep},
		{"lapsing buyers of fair frequency are At Risk", []int{1, 2}, []int{3, 4}, SegmentAtRisk},
		{"lapsing top-frequency buyers are Can't Lose Them", []int{1, 2}, []int{5}, SegmentCannotLoseThem},
		{"lapsing infrequent buyers are Hibernating", []int{2}, []int{1, 2}, SegmentHibernating},
		{"the least recent buyers of frequency 2 are Hibernating", []int{1}, []int{2}, SegmentHibernating},
		{"the least recent one-off buyers are Lost", []int{1}, []int{1}, SegmentLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range tc.r {
				for _, f := range tc.f {
					if got := SegmentOf(RFM{R: r, F: f, M: 3}); got != tc.want {
						t.Errorf("R%d F%d: got %s, want %s", r, f, got, tc.want)
					}
				}
			}
		})
	}
	t.Run("every R×F cell has a segment and all eleven are used", func(t *testing.T) {
		used := map[Segment]bool{}
		for r := 1; r <= 5; r++ {
			for f := 1; f <= 5; f++ {
				s := SegmentOf(RFM{R: r, F: f})
				if s == SegmentNone || s.String() == "" || s.Name() == "" {
					t.Fatalf("R%d F%d has no segment", r, f)
				}
				used[s] = true
			}
		}
		if len(used) != 11 {
			t.Fatalf("%d segments used, want 11", len(used))
		}
	})
}

func TestValueLayerRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		rfm  RFM
		want ValueLayer
	}{
		{"recent, frequent, big spenders are high value", RFM{3, 4, 4}, LayerHighValue},
		{"recent good spenders who buy less often are growth", RFM{4, 2, 3}, LayerGrowth},
		{"recent repeat buyers with small baskets are active", RFM{3, 2, 1}, LayerActive},
		{"very recent one-off small buyers are potential", RFM{5, 1, 1}, LayerPotential},
		{"lapsing customers are low value or at risk, whatever they spent", RFM{2, 5, 5}, LayerLowValueAtRisk},
		{"fairly recent one-off small buyers are low value or at risk", RFM{3, 1, 2}, LayerLowValueAtRisk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := LayerOf(tc.rfm); got != tc.want {
				t.Fatalf("LayerOf(%+v) = %s, want %s", tc.rfm, got, tc.want)
			}
		})
	}
}

func TestCutpointsScore(t *testing.T) {
	c := Cutpoints{Version: "t", Recency: [4]float64{10, 20, 30, 40}, Frequency: [4]float64{1, 2, 3, 4}, Monetary: [4]float64{100, 200, 300, 400}}
	for _, tc := range []struct {
		v    RFMValues
		want RFM
	}{
		{RFMValues{RecencyDays: 0, Frequency: 9, MonetaryMinor: 1000}, RFM{5, 5, 5}},
		{RFMValues{RecencyDays: 10, Frequency: 1, MonetaryMinor: 100}, RFM{5, 1, 1}},
		{RFMValues{RecencyDays: 11, Frequency: 2.5, MonetaryMinor: 250}, RFM{4, 3, 3}},
		{RFMValues{RecencyDays: 400, Frequency: 0, MonetaryMinor: -50}, RFM{1, 1, 1}},
	} {
		if got := c.Score(tc.v); got != tc.want {
			t.Errorf("Score(%+v) = %+v, want %+v", tc.v, got, tc.want)
		}
	}
}

func TestComputeCutpointsIsOrderIndependentQuintiles(t *testing.T) {
	var sample []RFMValues
	for i := 100; i >= 1; i-- {
		sample = append(sample, RFMValues{RecencyDays: float64(i), Frequency: float64(i % 10), MonetaryMinor: float64(i * 100)})
	}
	c, err := ComputeCutpoints("pop-1", sample)
	if err != nil {
		t.Fatal(err)
	}
	if c.Recency != [4]float64{20, 40, 60, 80} || c.Monetary != [4]float64{2000, 4000, 6000, 8000} || c.Version != "pop-1" {
		t.Fatalf("cut points %+v, want quintiles 20/40/60/80 and 2000/.../8000", c)
	}
	rev := append([]RFMValues(nil), sample...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if c2, _ := ComputeCutpoints("pop-1", rev); c2 != c {
		t.Fatalf("order changed the cut points: %+v vs %+v", c2, c)
	}
	if _, err := ComputeCutpoints("x", nil); err == nil {
		t.Fatal("an empty sample gave cut points")
	}
}

func TestSegmentChangesCarryTheCutpointsVersion(t *testing.T) {
	p, err := DefaultPolicy().WithCutpoints(Cutpoints{Version: "pop-7", Recency: [4]float64{1, 2, 3, 4},
		Frequency: [4]float64{1, 2, 3, 4}, Monetary: [4]float64{1, 2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	var g evGen
	s, _ := mustApply(t, State{}, g.purchase(day(0), 500, "a"), p)
	_, ch := Close(s, day(1), p)
	segs := only[*SegmentChange](ch)
	if len(segs) != 1 {
		t.Fatalf("want one segment change, got %s", describe(ch))
	}
	sc := segs[0]
	if sc.CutpointsVersion != "pop-7" || sc.ToSegment != SegmentNewCustomers || sc.FromSegment != SegmentNone ||
		sc.RFM != (RFM{5, 1, 5}) || sc.ValueLayer != LayerGrowth {
		t.Fatalf("segment change %+v", sc)
	}
	if got := fmt.Sprint(sc.ToSegment, " ", sc.ToSegment.Name()); got != "NEW_CUSTOMERS New" {
		t.Fatalf("segment renders as %q", got)
	}
}
