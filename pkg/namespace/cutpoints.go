package namespace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// Cut points are kept current from the population histograms the store maintains per shard
// (no scan of customers): Refresh sums the shards' bucket counts, takes the 20/40/60/80%
// quantiles, and stores them as a new version; every service polls the stored version and
// swaps it into its policy. A replay namespace starts from a copy of live's cut points and
// does not refresh, so it scores history with one known version.

// Histogram is the population's bucket counts for one measure.
type Histogram map[int]int64

// ReadHistograms sums the per-shard histograms of a namespace.
func ReadHistograms(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) (r, f, m Histogram, err error) {
	r, f, m = Histogram{}, Histogram{}, Histogram{}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, keys.Shards())
	for i := range cmds {
		cmds[i] = pipe.HGetAll(ctx, keys.Histogram(i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("reading histograms: %w", err)
	}
	for _, c := range cmds {
		for field, v := range c.Val() {
			kind, bucketText, ok := strings.Cut(field, ":")
			bucket, err1 := strconv.Atoi(bucketText)
			n, err2 := strconv.ParseInt(v, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				continue
			}
			switch kind {
			case "r":
				r[bucket] += n
			case "f":
				f[bucket] += n
			case "m":
				m[bucket] += n
			}
		}
	}
	return r, f, m, nil
}

// quantiles returns the 20/40/60/80% points of h, mapping each bucket back to its lower
// bound with value.
func (h Histogram) quantiles(value func(bucket int) float64) ([4]float64, int64) {
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
	if total == 0 {
		return q, 0
	}
	var seen int64
	next := 0
	for _, b := range buckets {
		seen += h[b]
		for next < 4 && float64(seen) >= float64(total)*float64(next+1)/5 {
			q[next] = value(b)
			next++
		}
	}
	return q, total
}

// bucket lower bounds, the inverses of bucketR/bucketF/bucketM.
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

// ErrPopulationTooSmall is returned by ComputeFromHistograms below minCustomers.
var ErrPopulationTooSmall = errors.New("population too small for cut points")

// ComputeFromHistograms derives cut points named version from the namespace's histograms.
func ComputeFromHistograms(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, version string, minCustomers int64) (scoring.Cutpoints, error) {
	r, f, m, err := ReadHistograms(ctx, rdb, keys)
	if err != nil {
		return scoring.Cutpoints{}, err
	}
	rq, n := r.quantiles(func(b int) float64 { return logBucketValue(b, 400) })
	if n < minCustomers {
		return scoring.Cutpoints{}, fmt.Errorf("%w: %d customers, need %d", ErrPopulationTooSmall, n, minCustomers)
	}
	fq, _ := f.quantiles(func(b int) float64 { return logBucketValue(b, 64) })
	mq, _ := m.quantiles(moneyBucketValue)
	cp := scoring.Cutpoints{Version: version, Recency: rq, Frequency: fq, Monetary: mq}
	if err := cp.Validate(); err != nil {
		return scoring.Cutpoints{}, fmt.Errorf("derived cut points: %w", err)
	}
	return cp, nil
}

// StoreCutpoints makes cp the namespace's current cut points.
func StoreCutpoints(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, cp scoring.Cutpoints) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	return rdb.Set(ctx, keys.Cutpoints(), b, 0).Err()
}

// LoadCutpoints returns the namespace's current cut points, or ok false when none are stored
// (the policy's own apply).
func LoadCutpoints(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) (scoring.Cutpoints, bool, error) {
	b, err := rdb.Get(ctx, keys.Cutpoints()).Bytes()
	if errors.Is(err, redis.Nil) {
		return scoring.Cutpoints{}, false, nil
	}
	if err != nil {
		return scoring.Cutpoints{}, false, fmt.Errorf("reading cut points: %w", err)
	}
	var cp scoring.Cutpoints
	if err := json.Unmarshal(b, &cp); err != nil {
		return scoring.Cutpoints{}, false, fmt.Errorf("decoding stored cut points: %w", err)
	}
	return cp, true, cp.Validate()
}
