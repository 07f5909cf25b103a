package population

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

func TestHistogramQuantilesAreTheExactQuantilesWithinOneBucket(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		n := MinCustomers + rng.IntN(3000)
		b := scoring.Day(20000 + trial)
		sample := make([]scoring.RFMValues, n)
		h := NewHistograms()
		for i := range sample {
			v := scoring.RFMValues{
				RecencyDays:   math.Floor(rng.ExpFloat64() * 120),
				Frequency:     float64(1 + rng.IntN(1+rng.IntN(90))),
				MonetaryMinor: math.Floor(rng.NormFloat64()*2000 + rng.ExpFloat64()*40000),
			}
			sample[i] = v
			for _, f := range Fields(scoring.Sample{Boundary: b, Values: v}) {
				h.Add(b, f, 1)
			}
			// Another boundary's counters never count.
			h.Add(b, Fields(scoring.Sample{Boundary: b + 7, Values: v})[0], 1)
		}
		got, err := h.Cutpoints("v")
		if err != nil {
			t.Fatal(err)
		}
		want, err := scoring.ComputeCutpoints("v", sample)
		if err != nil {
			t.Fatal(err)
		}
		if h.Customers() != int64(n) {
			t.Fatalf("counted %d customers of %d", h.Customers(), n)
		}
		for i := range 4 {
			if !SameBucket("r", got.Recency[i], want.Recency[i]) || !SameBucket("f", got.Frequency[i], want.Frequency[i]) ||
				!SameBucket("m", got.Monetary[i], want.Monetary[i]) {
				t.Fatalf("trial %d quantile %d: got %+v, exact %+v", trial, i, got, want)
			}
			if want.Recency[i] < exactRecencyDays && got.Recency[i] != want.Recency[i] {
				t.Fatalf("recency below %d days must be exact: %v vs %v", exactRecencyDays, got.Recency, want.Recency)
			}
		}
	}
}

func TestASmallPopulationDerivesNoCutpoints(t *testing.T) {
	h := NewHistograms()
	for range MinCustomers - 1 {
		for _, f := range Fields(scoring.Sample{Boundary: 5, Values: scoring.RFMValues{RecencyDays: 3, Frequency: 1, MonetaryMinor: 100}}) {
			h.Add(5, f, 1)
		}
	}
	if _, err := h.Cutpoints("v"); !errors.Is(err, ErrTooSmall) {
		t.Fatalf("err = %v, want ErrTooSmall", err)
	}
}

func TestFieldsNameTheirBoundaryAndOldFieldsAreNotBoundaryCounters(t *testing.T) {
	f := Fields(scoring.Sample{Boundary: -3, Values: scoring.RFMValues{RecencyDays: 500, Frequency: 70, MonetaryMinor: -5}})
	for _, field := range f {
		if b, ok := BoundaryOf(field); !ok || b != -3 {
			t.Fatalf("%q: boundary %d %v", field, b, ok)
		}
	}
	for _, old := range []string{"r:5", "m:12", "x"} {
		if _, ok := BoundaryOf(old); ok {
			t.Fatalf("%q taken for a boundary counter", old)
		}
	}
}

// TestFieldsNameTheBoundaryMeasureAndBucket: the histogram fields are
// "<boundary>:<r|f|m>:<bucket>", then with a model sample "<boundary>:bg:<x>.<t_x>.<T>" and,
// after a repeat purchase, "<boundary>:gg:<x>.<repeat net minor>"; stored counters are keyed by
// them, so the text must never change.
func TestFieldsNameTheBoundaryMeasureAndBucket(t *testing.T) {
	v := scoring.RFMValues{RecencyDays: 12, Frequency: 3, MonetaryMinor: 4500}
	r, f, m := strconv.Itoa(bucketR(v.RecencyDays)), strconv.Itoa(bucketF(v.Frequency)), strconv.Itoa(bucketM(v.MonetaryMinor))
	for _, c := range []struct {
		sample scoring.Sample
		want   []string
	}{
		{scoring.Sample{Boundary: 20454, Values: v}, []string{"20454:r:" + r, "20454:f:" + f, "20454:m:" + m}},
		{scoring.Sample{Boundary: -7, Values: v, Model: &scoring.ModelSample{X: 0, TXDays: 0, TDays: 35}},
			[]string{"-7:r:" + r, "-7:f:" + f, "-7:m:" + m, "-7:bg:0.0.35"}},
		{scoring.Sample{Boundary: 20461, Values: v, Model: &scoring.ModelSample{X: 2, TXDays: 40, TDays: 300, RepeatNetMinor: -150}},
			[]string{"20461:r:" + r, "20461:f:" + f, "20461:m:" + m, "20461:bg:2.40.300", "20461:gg:2.-150"}},
	} {
		if got := Fields(c.sample); !slices.Equal(got, c.want) {
			t.Errorf("Fields(%+v) = %q, want %q", c.sample, got, c.want)
		}
	}
}
