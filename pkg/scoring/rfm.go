package scoring

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// Segment is one of the eleven classic R×F segments.
type Segment uint8

// Segments. SegmentNone is a customer with no purchase yet.
const (
	SegmentNone Segment = iota
	SegmentChampions
	SegmentLoyal
	SegmentPotentialLoyalists
	SegmentNewCustomers
	SegmentPromising
	SegmentNeedAttention
	SegmentAboutToSleep
	SegmentAtRisk
	SegmentCannotLoseThem
	SegmentHibernating
	SegmentLost
)

var segmentCodes = [...]string{"", "CHAMPIONS", "LOYAL", "POTENTIAL_LOYALISTS", "NEW_CUSTOMERS", "PROMISING",
	"NEED_ATTENTION", "ABOUT_TO_SLEEP", "AT_RISK", "CANNOT_LOSE_THEM", "HIBERNATING", "LOST"}

var segmentNames = [...]string{"", "Champions", "Loyal", "Potential Loyalists", "New", "Promising",
	"Need Attention", "About to Sleep", "At Risk", "Can't Lose Them", "Hibernating", "Lost"}

// String is the stable machine code (CHAMPIONS, ...), "" for SegmentNone.
func (s Segment) String() string {
	if int(s) < len(segmentCodes) {
		return segmentCodes[s]
	}
	return fmt.Sprintf("Segment(%d)", uint8(s))
}

// Name is the marketing name ("Can't Lose Them").
func (s Segment) Name() string {
	if int(s) < len(segmentNames) {
		return segmentNames[s]
	}
	return s.String()
}

// ValueLayer is one of the five value layers.
type ValueLayer uint8

// Value layers. LayerNone is a customer with no purchase yet.
const (
	LayerNone ValueLayer = iota
	LayerHighValue
	LayerGrowth
	LayerActive
	LayerPotential
	LayerLowValueAtRisk
)

var layerCodes = [...]string{"", "HIGH_VALUE", "GROWTH", "ACTIVE", "POTENTIAL", "LOW_VALUE_AT_RISK"}

// String is the stable machine code (HIGH_VALUE, ...), "" for LayerNone.
func (l ValueLayer) String() string {
	if int(l) < len(layerCodes) {
		return layerCodes[l]
	}
	return fmt.Sprintf("ValueLayer(%d)", uint8(l))
}

// RFM holds the 1–5 recency, frequency and monetary scores (5 is best).
type RFM struct{ R, F, M int }

// RFMValues are one customer's raw RFM measures, the input to scoring and to
// ComputeCutpoints.
type RFMValues struct {
	RecencyDays   float64 // days since the last purchase
	Frequency     float64 // purchase days in the segment window
	MonetaryMinor float64 // net spend in the segment window
}

// Score rates v against the cut points: recency scores 5 at or below the
// first cut point and loses one per cut point exceeded; frequency and
// monetary score 1 at or below the first and gain one per cut point
// exceeded.
func (c Cutpoints) Score(v RFMValues) RFM {
	above := func(x float64, cuts [4]float64) int {
		n := 0
		for _, c := range cuts {
			if x > c {
				n++
			}
		}
		return n
	}
	return RFM{R: 5 - above(v.RecencyDays, c.Recency), F: 1 + above(v.Frequency, c.Frequency), M: 1 + above(v.MonetaryMinor, c.Monetary)}
}

// SegmentOf maps R and F scores to a segment (see docs/scoring.md):
//
//	R\F   1              2–3                  4–5
//	5     New            Potential Loyalists  Champions
//	4     Promising      Potential Loyalists  Loyal
//	3     About to Sleep (F 1–2), Need Attention (F 3), Loyal (F 4–5)
//	1–2   Lost (R1 F1), Hibernating (F 1–2), At Risk (F 3–4), Can't Lose Them (F 5)
func SegmentOf(s RFM) Segment {
	r, f := s.R, s.F
	switch {
	case r == 5 && f >= 4:
		return SegmentChampions
	case r >= 3 && f >= 4:
		return SegmentLoyal
	case r >= 4 && f >= 2:
		return SegmentPotentialLoyalists
	case r == 5:
		return SegmentNewCustomers
	case r == 4:
		return SegmentPromising
	case r == 3 && f == 3:
		return SegmentNeedAttention
	case r == 3:
		return SegmentAboutToSleep
	case f == 5:
		return SegmentCannotLoseThem
	case f >= 3:
		return SegmentAtRisk
	case r == 1 && f == 1:
		return SegmentLost
	}
	return SegmentHibernating
}

// LayerOf maps RFM scores to a value layer, first rule that matches:
// HIGH_VALUE R≥3, F≥4, M≥4; GROWTH R≥3, M≥3; ACTIVE R≥3, F≥2; POTENTIAL
// R≥4; otherwise LOW_VALUE_AT_RISK.
func LayerOf(s RFM) ValueLayer {
	switch {
	case s.R >= 3 && s.F >= 4 && s.M >= 4:
		return LayerHighValue
	case s.R >= 3 && s.M >= 3:
		return LayerGrowth
	case s.R >= 3 && s.F >= 2:
		return LayerActive
	case s.R >= 4:
		return LayerPotential
	}
	return LayerLowValueAtRisk
}

// ErrEmptySample is returned by ComputeCutpoints for an empty sample.
var ErrEmptySample = errors.New("empty population sample")

// ComputeCutpoints returns the 20/40/60/80% quantiles (nearest rank) of a
// population sample, stamped with version. The result does not depend on
// the order of the sample.
func ComputeCutpoints(version string, sample []RFMValues) (Cutpoints, error) {
	if len(sample) == 0 {
		return Cutpoints{}, fmt.Errorf("computing cut points: %w", ErrEmptySample)
	}
	q := func(get func(RFMValues) float64) [4]float64 {
		xs := make([]float64, len(sample))
		for i, v := range sample {
			xs[i] = get(v)
		}
		sort.Float64s(xs)
		var out [4]float64
		for i := range out {
			rank := int(math.Ceil(float64((i+1)*len(xs))/5-1e-9)) - 1
			out[i] = xs[max(rank, 0)]
		}
		return out
	}
	c := Cutpoints{
		Version:   version,
		Recency:   q(func(v RFMValues) float64 { return v.RecencyDays }),
		Frequency: q(func(v RFMValues) float64 { return v.Frequency }),
		Monetary:  q(func(v RFMValues) float64 { return math.Max(v.MonetaryMinor, 0) }),
	}
	if err := c.Validate(); err != nil {
		return Cutpoints{}, fmt.Errorf("computing cut points: %w", err)
	}
	return c, nil
}

// RFMValuesAt returns the customer's raw RFM measures at the end of day d,
// and false when they have no purchase by then. The pipeline samples these
// across the population to recompute cut points.
func (s State) RFMValuesAt(d Day, p *Policy) (RFMValues, bool) {
	f := s.purchasesAsOf(d, p.Segments.WindowDays)
	if !f.any {
		return RFMValues{}, false
	}
	return RFMValues{RecencyDays: float64(d - f.last), Frequency: float64(f.freq), MonetaryMinor: float64(f.monetary)}, true
}
