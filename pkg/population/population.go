// Package population keeps the histograms behind the RFM cut points and the churn model's
// refits. Every customer adds its RFM measures at the end of each boundary day
// (scoring.SweepSampled) to its shard's histogram, one counter per measure and bucket, under
// fields named by the boundary; once a boundary is complete the 20/40/60/80% quantiles of the
// summed shards are its cut points. At a refit boundary (scoring.RefitPolicy) every customer
// with a purchase also counts its exact BG/NBD and Gamma-Gamma summary, and the models fitted
// on those counts (FitModel) score the days after the boundary.
//
// Recency and frequency buckets are exact up to a bound (400 days, 64 purchase days) and
// logarithmic beyond, money is logarithmic (about 19% wide buckets), so a quantile is exact,
// or the lower bound of the bucket holding the exact quantile.
package population

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// MinCustomers is the smallest population whose quantiles become cut points; below it the
// cut points in force stay.
const MinCustomers = 100

const (
	exactRecencyDays = 400
	exactFrequency   = 64
)

func bucketR(days float64) int { return logBucket(days, exactRecencyDays) }
func bucketF(n float64) int    { return logBucket(n, exactFrequency) }
func bucketM(minor float64) int {
	if minor <= 0 {
		return 0
	}
	return 1 + int(math.Floor(4*math.Log2(minor)))
}

func logBucket(v float64, exact int) int {
	if v < float64(exact) {
		return int(math.Max(0, math.Floor(v)))
	}
	return exact + int(math.Floor(8*math.Log2(v/float64(exact))))
}

// logBucketValue and moneyBucketValue are the lower bounds of the buckets, the inverses of
// logBucket and bucketM.
func logBucketValue(b, exact int) float64 {
	if b < exact {
		return float64(b)
	}
	return float64(exact) * math.Pow(2, float64(b-exact)/8)
}

func moneyBucketValue(b int) float64 {
	if b <= 0 {
		return 0
	}
	return math.Pow(2, float64(b-1)/4)
}

// Fields returns the histogram counters a customer's sample increments: one per measure,
// named "<boundary day>:<r|f|m>:<bucket>", and with a model sample its BG/NBD summary,
// "<boundary>:bg:<x>.<t_x days>.<T days>", and after a repeat purchase its Gamma-Gamma one,
// "<boundary>:gg:<x>.<repeat net minor>" (exact: the fit on them is the fit on the customers).
func Fields(s scoring.Sample) []string {
	// Each field is built in buf and copied out once: one allocation per field.
	var buf [96]byte
	head := append(strconv.AppendInt(buf[:0], int64(s.Boundary), 10), ':')
	n := len(head)
	field := func(kind string, v int64) []byte {
		return strconv.AppendInt(append(head[:n], kind...), v, 10)
	}
	out := make([]string, 3, 5)
	out[0] = string(field("r:", int64(bucketR(s.Values.RecencyDays))))
	out[1] = string(field("f:", int64(bucketF(s.Values.Frequency))))
	out[2] = string(field("m:", int64(bucketM(s.Values.MonetaryMinor))))
	if m := s.Model; m != nil {
		b := append(field("bg:", int64(m.X)), '.')
		b = append(strconv.AppendInt(b, int64(m.TXDays), 10), '.')
		out = append(out, string(strconv.AppendInt(b, int64(m.TDays), 10)))
		if m.X > 0 {
			b = append(field("gg:", int64(m.X)), '.')
			out = append(out, string(strconv.AppendInt(b, m.RepeatNetMinor, 10)))
		}
	}
	return out
}

// BoundaryOf returns the boundary day a histogram field counts for; ok is false for a field
// that is not a boundary counter (one left by an older version).
func BoundaryOf(field string) (scoring.Day, bool) {
	day, _, ok := strings.Cut(field, ":")
	if !ok || strings.Count(field, ":") != 2 {
		return 0, false
	}
	d, err := strconv.ParseInt(day, 10, 32)
	return scoring.Day(d), err == nil
}

// Histograms are one boundary's population counts per bucket of each measure, and the counts
// of each distinct model summary.
type Histograms struct {
	R, F, M map[int]int64
	BG      map[[3]int32]int64 // x, t_x days, T days
	GG      map[ggKey]int64
}

type ggKey struct {
	x   int32
	net int64
}

// NewHistograms returns empty histograms.
func NewHistograms() Histograms {
	return Histograms{R: map[int]int64{}, F: map[int]int64{}, M: map[int]int64{}, BG: map[[3]int32]int64{}, GG: map[ggKey]int64{}}
}

// Add counts n under a field of boundary b; fields of other boundaries are ignored.
func (h Histograms) Add(b scoring.Day, field string, n int64) {
	day, ok := BoundaryOf(field)
	if !ok || day != b {
		return
	}
	parts := strings.SplitN(field, ":", 3)
	switch parts[1] {
	case "bg":
		if xs, ok := ints(parts[2], 3); ok {
			h.BG[[3]int32{int32(xs[0]), int32(xs[1]), int32(xs[2])}] += n
		}
		return
	case "gg":
		if xs, ok := ints(parts[2], 2); ok {
			h.GG[ggKey{int32(xs[0]), xs[1]}] += n
		}
		return
	}
	bucket, err := strconv.Atoi(parts[2])
	if err != nil {
		return
	}
	switch parts[1] {
	case "r":
		h.R[bucket] += n
	case "f":
		h.F[bucket] += n
	case "m":
		h.M[bucket] += n
	}
}

// ints parses n dot-separated integers.
func ints(v string, n int) ([]int64, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != n {
		return nil, false
	}
	out := make([]int64, n)
	for i, p := range parts {
		x, err := strconv.ParseInt(p, 10, 64)
		if err != nil || (i == 0 || n == 3) && (x < 0 || x > math.MaxInt32) {
			return nil, false
		}
		out[i] = x
	}
	return out, true
}

// Customers is the population the histograms count (every customer adds to each measure once).
func (h Histograms) Customers() int64 {
	var n int64
	for _, c := range h.R {
		n += c
	}
	return n
}

// ErrTooSmall is returned by Cutpoints for a population below MinCustomers.
var ErrTooSmall = errors.New("population too small for cut points")

// Cutpoints returns the 20/40/60/80% quantiles (nearest rank, like scoring.ComputeCutpoints)
// of the histograms as cut points named version.
func (h Histograms) Cutpoints(version string) (scoring.Cutpoints, error) {
	if n := h.Customers(); n < MinCustomers {
		return scoring.Cutpoints{}, fmt.Errorf("%w: %d customers, need %d", ErrTooSmall, n, MinCustomers)
	}
	cp := scoring.Cutpoints{
		Version:   version,
		Recency:   quantiles(h.R, func(b int) float64 { return logBucketValue(b, exactRecencyDays) }),
		Frequency: quantiles(h.F, func(b int) float64 { return logBucketValue(b, exactFrequency) }),
		Monetary:  quantiles(h.M, moneyBucketValue),
	}
	if err := cp.Validate(); err != nil {
		return scoring.Cutpoints{}, fmt.Errorf("derived cut points: %w", err)
	}
	return cp, nil
}

// quantiles returns the 20/40/60/80% points of h: the smallest bucket whose cumulative count
// reaches each rank, mapped back to its lower bound with value.
func quantiles(h map[int]int64, value func(bucket int) float64) [4]float64 {
	buckets := make([]int, 0, len(h))
	var total int64
	for b, n := range h {
		if n > 0 {
			buckets = append(buckets, b)
			total += n
		}
	}
	sort.Ints(buckets)
	var q [4]float64
	var seen int64
	next := 0
	for _, b := range buckets {
		seen += h[b]
		for next < 4 && 5*seen >= total*int64(next+1) {
			q[next] = value(b)
			next++
		}
	}
	return q
}

// SameBucket reports whether two values of a measure ("r", "f" or "m") fall in one bucket:
// how a derived cut point is compared with an exact quantile.
func SameBucket(measure string, a, b float64) bool {
	switch measure {
	case "r":
		return bucketR(a) == bucketR(b)
	case "f":
		return bucketF(a) == bucketF(b)
	}
	return bucketM(math.Max(a, 0)) == bucketM(math.Max(b, 0))
}
