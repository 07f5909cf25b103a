package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// CLVMinor is a customer's lifetime value in minor units as of day: BG/NBD expected purchases
// over the horizon (the scoring policy's population parameters and time unit) times the
// Gamma-Gamma expected spend per purchase, discounted per time unit.
//
// The state keeps purchase days, not orders, so the summary counts purchase days: X is the
// distinct purchase days after the first, TX and T are measured from the first purchase day,
// and the mean spend is the net spend over the policy's segment window divided by the
// purchase days in it. A customer with no purchase has CLV 0.
func CLVMinor(st scoring.State, day scoring.Day, p *scoring.Policy, c CLVConfig) float64 {
	if st.PurchaseDays == 0 || st.FirstDay == 0 {
		return 0
	}
	u := p.Churn.TimeUnitDays
	last := max(st.LastDay, st.FirstDay)
	day = max(day, last)
	s := btyd.Summary{
		X:  float64(st.PurchaseDays - 1),
		TX: float64(last-st.FirstDay) / u,
		T:  float64(day-st.FirstDay) / u,
	}
	if s.X == 0 {
		s.TX = 0
	}
	if v, ok := st.RFMValuesAt(day, p); ok && v.Frequency > 0 && v.MonetaryMinor > 0 && s.X > 0 {
		s.Monetary = v.MonetaryMinor / v.Frequency
	}
	unitsPerYear := 365.25 / u
	// The pipeline's own fit when there is one (its Gamma-Gamma too, when its q > 1 gives a
	// finite expected spend), else the policy's BG/NBD and the rules file's Gamma-Gamma.
	bg, gg := p.Churn.BGNBD, c.GammaGamma
	if m := p.Fitted; m != nil {
		bg = m.BGNBD
		if m.GammaGamma != nil && m.GammaGamma.Q > 1 {
			gg = *m.GammaGamma
		}
	}
	clv := btyd.CLV(bg, gg, s, c.HorizonDays/u, btyd.PerUnitRate(c.AnnualDiscount, unitsPerYear))
	if math.IsNaN(clv) || clv < 0 {
		return 0
	}
	return clv
}

// Threshold is the CLV at or above which a customer is in the top fraction.
type Threshold struct {
	Minor      float64   `json:"threshold_minor"`
	Sample     int       `json:"sample"`
	ComputedAt time.Time `json:"computed_at"`
	// Fixed is true for a threshold from the rules file rather than the population.
	Fixed bool `json:"fixed,omitempty"`
}

// thresholds holds the threshold in force; the zero value (no threshold) puts nobody on top.
type thresholds struct {
	cur atomic.Pointer[Threshold]
}

func (t *thresholds) top(clv float64) bool {
	th := t.cur.Load()
	return th != nil && th.Minor > 0 && clv >= th.Minor
}

// thresholdKey is the namespace-wide key of the population threshold.
func thresholdKey(keys keyspace.Keyspace) string { return keys.Global("notifier:clv-threshold") }

// LoadThreshold reads the stored population threshold; ok is false when none was computed.
func LoadThreshold(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) (Threshold, bool, error) {
	raw, err := rdb.Get(ctx, thresholdKey(keys)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Threshold{}, false, nil
	}
	if err != nil {
		return Threshold{}, false, fmt.Errorf("reading the CLV threshold: %w", err)
	}
	var th Threshold
	if err := json.Unmarshal(raw, &th); err != nil {
		return Threshold{}, false, fmt.Errorf("decoding the CLV threshold: %w", err)
	}
	return th, true, nil
}

// ComputeThreshold samples up to c.SampleSize stored customers (SCAN order, which is hash
// order and so unrelated to who the customers are), computes each one's CLV as of their own
// latest event day, and returns the smallest CLV among the top ⌊top_fraction × n⌋ of the
// sample (at least one), so "CLV ≥ threshold" selects the top fraction. ok is false when
// fewer than c.MinSample customers have a purchase.
func ComputeThreshold(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, p *scoring.Policy, c CLVConfig, now time.Time) (Threshold, bool, error) {
	// On a Cluster the masters are scanned concurrently (go-redis's ForEachMaster): each scan
	// collects its own values, merged under mu.
	var (
		mu     sync.Mutex
		values []float64
	)
	scan := func(ctx context.Context, node redis.UniversalClient) error {
		var mine []float64
		defer func() {
			mu.Lock()
			values = append(values, mine...)
			mu.Unlock()
		}()
		var cursor uint64
		for len(mine) < c.SampleSize {
			batch, next, err := node.Scan(ctx, cursor, keys.Prefix()+"c:*", 500).Result()
			if err != nil {
				return fmt.Errorf("scanning customers: %w", err)
			}
			if len(batch) > 0 {
				states, err := state.ReadKeys(ctx, node, batch)
				if err != nil {
					return fmt.Errorf("reading sampled customers: %w", err)
				}
				for _, cur := range states {
					st, err := cur.State()
					if err != nil || st.PurchaseDays == 0 {
						continue // a corrupt state is the store's problem, not the sample's
					}
					mine = append(mine, CLVMinor(st, scoring.DayOf(time.UnixMilli(st.ClockMs)), p, c))
					if len(mine) >= c.SampleSize {
						break
					}
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
		return nil
	}
	var err error
	if cluster, ok := rdb.(*redis.ClusterClient); ok {
		err = cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
	} else {
		err = scan(ctx, rdb)
	}
	if err != nil {
		return Threshold{}, false, err
	}
	values = values[:min(len(values), c.SampleSize)]
	if len(values) < c.MinSample {
		return Threshold{Sample: len(values)}, false, nil
	}
	slices.Sort(values)
	top := max(int(math.Floor(c.TopFraction*float64(len(values)))), 1)
	return Threshold{Minor: values[len(values)-top], Sample: len(values), ComputedAt: now.UTC()}, true, nil
}

// StoreThreshold saves a population threshold for every notifier of the namespace.
func StoreThreshold(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, th Threshold) error {
	raw, err := json.Marshal(th)
	if err != nil {
		return fmt.Errorf("encoding the CLV threshold: %w", err)
	}
	if err := rdb.Set(ctx, thresholdKey(keys), raw, 0).Err(); err != nil {
		return fmt.Errorf("storing the CLV threshold: %w", err)
	}
	return nil
}
