package notifier

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// Uplift: do care and win-back work? Every CARE or WIN_BACK action decided for delivery
// (treated) or held out (the hold-out group) is an exposure; its outcome is whether the customer
// bought within 30, and within 90, days of event time from the trigger's day (the trigger day
// included). The decision script records each exposure in its shard's exposure set (one member
// per horizon, scored by the watermark at which the horizon is closed); a win-back care pre-empts
// before it was sent is withdrawn with it. Once the watermark has passed a member's horizon, the
// resolver reads the customer's purchase days from its state, and one script removes the member
// and counts it — so a crash between the two only repeats the reading.
//
// Counters, in the shard's uplift hash: "<kind>|<arm>|<h>|n" exposures and "…|y" those who
// bought, and the same per month of the trigger day, "<YYYY-MM>|<kind>|<arm>|<h>|n"; kpi.Uplift
// turns their sums into rates, the difference and confidence intervals.

// upliftKinds are the action kinds whose uplift is measured.
var upliftKinds = []event.ActionKind{event.ActionCare, event.ActionWinBack}

// exposures is the shard's sorted set of exposures waiting for their outcome:
// "<kind>|<arm>|<horizon days>|<trigger day>|<customer id>" by the watermark (ms) at which the
// horizon's last day closes.
func (k keys) exposures(shard int) string { return k.d.ShardKey("notify-expo", shard) }

// uplift is the shard's hash of settled exposure counters.
func (k keys) uplift(shard int) string { return k.d.ShardKey("notify-uplift", shard) }

// exposureOf is the tail of kind's exposure members for a trigger at t and when its two
// horizons close; "" for a kind whose uplift is not measured.
func exposureOf(kind event.ActionKind, customer string, t time.Time, p *scoring.Policy) (string, int64, int64) {
	measured := false
	for _, k := range upliftKinds {
		measured = measured || k == kind
	}
	if !measured || p == nil {
		return "", 0, 0
	}
	d := scoring.DayOf(t)
	due := func(h int) int64 { return scoring.DayCloses(d+scoring.Day(h)-1, p).UnixMilli() }
	return strconv.Itoa(int(d)) + "|" + customer, due(kpi.UpliftHorizons[0]), due(kpi.UpliftHorizons[1])
}

// exposure is one parsed exposure member.
type exposure struct {
	member, kind, arm string
	horizon           int
	day               scoring.Day
	customer          string
}

func parseExposure(member string) (exposure, error) {
	parts := strings.SplitN(member, "|", 5)
	if len(parts) != 5 {
		return exposure{}, fmt.Errorf("exposure %q: want kind|arm|horizon|day|customer", member)
	}
	h, err1 := strconv.Atoi(parts[2])
	d, err2 := strconv.ParseInt(parts[3], 10, 32)
	if err := errors.Join(err1, err2); err != nil || (parts[1] != kpi.ArmTreated && parts[1] != kpi.ArmHoldout) {
		return exposure{}, fmt.Errorf("exposure %q: %w", member, errors.Join(err, errors.New("bad arm, horizon or day")))
	}
	return exposure{member: member, kind: parts[0], arm: parts[1], horizon: h, day: scoring.Day(d), customer: parts[4]}, nil
}

// settleExposureScript removes an exposure and counts it, once.
// KEYS: 1 exposure zset, 2 uplift hash. ARGV: 1 member, 2 counter prefix, 3 month prefix,
// 4 bought (0 or 1).
var settleExposureScript = redisconn.NewScript("notify-settle-exposure", `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], ARGV[2] .. '|n', 1)
redis.call('HINCRBY', KEYS[2], ARGV[3] .. '|n', 1)
if ARGV[4] == '1' then
  redis.call('HINCRBY', KEYS[2], ARGV[2] .. '|y', 1)
  redis.call('HINCRBY', KEYS[2], ARGV[3] .. '|y', 1)
end
return 1`)

// upliftResolver settles the exposures whose horizon the watermark has closed.
type upliftResolver struct {
	rdb   redis.UniversalClient
	keys  keys
	store *state.Store
	marks *watermark.Tracker
	log   *zap.Logger
}

// resolveBatch bounds the exposures one step reads per shard.
const resolveBatch = 500

// step settles every due exposure and reports how many it settled.
func (u *upliftResolver) step(ctx context.Context) (int, error) {
	wm, known, err := u.marks.Clock(ctx)
	if err != nil || !known {
		return 0, err
	}
	settled := 0
	for shard := range u.keys.ks.Shards() {
		for {
			members, err := u.rdb.ZRangeByScore(ctx, u.keys.exposures(shard), &redis.ZRangeBy{Min: "-inf",
				Max: strconv.FormatInt(wm.UnixMilli(), 10), Count: resolveBatch}).Result()
			if err != nil {
				return settled, fmt.Errorf("reading due exposures of shard %d: %w", shard, err)
			}
			for _, m := range members {
				n, err := u.settle(ctx, shard, m)
				if err != nil {
					return settled, err
				}
				settled += n
			}
			if len(members) < resolveBatch {
				break
			}
		}
	}
	return settled, nil
}

// settle reads one exposure's outcome and counts it. An unreadable member or customer state is
// dropped with a warning: it can never be settled.
func (u *upliftResolver) settle(ctx context.Context, shard int, member string) (int, error) {
	x, err := parseExposure(member)
	if err != nil {
		u.log.Warn("dropping an unreadable exposure", zap.Error(err))
		return 0, u.rdb.ZRem(ctx, u.keys.exposures(shard), member).Err()
	}
	bought := false
	cur, err := u.store.Current(ctx, x.customer)
	switch {
	case errors.Is(err, state.ErrNotFound):
		// Erased since (erasure removes its exposures too; this one raced it): not counted.
		return 0, u.rdb.ZRem(ctx, u.keys.exposures(shard), member).Err()
	case err != nil:
		return 0, fmt.Errorf("reading an exposed customer's state: %w", err)
	}
	st, err := cur.State()
	if err != nil {
		u.log.Warn("dropping the exposure of a customer whose state does not decode", zap.String("exposure", x.kind+"|"+x.arm), zap.Error(err))
		return 0, u.rdb.ZRem(ctx, u.keys.exposures(shard), member).Err()
	}
	for _, d := range st.KnownPurchaseDays().Days {
		if d >= x.day && d < x.day+scoring.Day(x.horizon) {
			bought = true
			break
		}
	}
	flag := "0"
	if bought {
		flag = "1"
	}
	prefix := x.kind + "|" + x.arm + "|" + strconv.Itoa(x.horizon)
	month := x.day.Start().Format("2006-01") + "|" + prefix
	n, err := settleExposureScript.Run(ctx, u.rdb, []string{u.keys.exposures(shard), u.keys.uplift(shard)}, member, prefix, month, flag).Int()
	if err != nil {
		return 0, fmt.Errorf("settling an exposure: %w", err)
	}
	return n, nil
}

// Run settles due exposures every interval until ctx ends.
func (u *upliftResolver) Run(ctx context.Context, every time.Duration) error {
	step := func(ctx context.Context) error {
		_, err := u.step(ctx)
		return err
	}
	const failed = "settling the uplift exposures failed; the next round retries"
	if err := step(ctx); err != nil && ctx.Err() == nil {
		u.log.Warn(failed, zap.Error(err))
	}
	return pipeline.EveryTick(ctx, every, step, u.log, failed, "settling the uplift exposures recovered")
}

// ReadUplift sums the uplift counters of every shard of deployment d (ks gives the shard
// count) and the exposures still waiting for their outcome.
func ReadUplift(ctx context.Context, rdb redis.UniversalClient, d keyspace.Deployment, ks keyspace.Keyspace) (kpi.UpliftCounts, error) {
	k := keys{ks: ks, d: d}
	counts := kpi.UpliftCounts{}
	pipe := rdb.Pipeline()
	hashes := make([]*redis.MapStringStringCmd, ks.Shards())
	pending := make([]*redis.IntCmd, ks.Shards())
	for shard := range ks.Shards() {
		hashes[shard] = pipe.HGetAll(ctx, k.uplift(shard))
		pending[shard] = pipe.ZCard(ctx, k.exposures(shard))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading the uplift counters: %w", err)
	}
	for shard := range ks.Shards() {
		for f, v := range hashes[shard].Val() {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("uplift counter %s of shard %d: %q", f, shard, v)
			}
			counts[f] += n
		}
		counts[kpi.UpliftPendingField] += pending[shard].Val()
	}
	return counts, nil
}

// upliftExporter serves the uplift report as Prometheus gauges, re-read every refresh.
type upliftExporter struct {
	rdb  redis.UniversalClient
	keys keys
	mu   sync.Mutex
	last *kpi.UpliftReport
}

var (
	upliftLabels   = []string{"kind", "horizon"}
	upliftRateDesc = prometheus.NewDesc("loyalty_uplift_repurchase_rate",
		"Share of the exposed customers who bought within the horizon of the trigger, by action kind and arm (treated, holdout).", []string{"kind", "horizon", "arm"}, nil)
	upliftCustomersDesc = prometheus.NewDesc("loyalty_uplift_customers",
		"Exposures whose outcome over the horizon is settled, by action kind and arm.", []string{"kind", "horizon", "arm"}, nil)
	upliftDesc = prometheus.NewDesc("loyalty_uplift",
		"Treated repurchase rate minus the hold-out group's, by action kind and horizon.", upliftLabels, nil)
	upliftLowDesc = prometheus.NewDesc("loyalty_uplift_lower",
		"Lower end of the uplift's 95% confidence interval.", upliftLabels, nil)
	upliftHighDesc = prometheus.NewDesc("loyalty_uplift_upper",
		"Upper end of the uplift's 95% confidence interval.", upliftLabels, nil)
	upliftPendingDesc = prometheus.NewDesc("loyalty_uplift_pending_exposures",
		"Exposures waiting for the watermark to close their horizon.", nil, nil)
)

func newUpliftExporter(rdb redis.UniversalClient, k keys, reg prometheus.Registerer) *upliftExporter {
	e := &upliftExporter{rdb: rdb, keys: k}
	if reg != nil {
		reg.MustRegister(e)
	}
	return e
}

func (e *upliftExporter) refresh(ctx context.Context) error {
	c, err := ReadUplift(ctx, e.rdb, e.keys.d, e.keys.ks)
	if err != nil {
		return err
	}
	r := kpi.Uplift(c, UpliftKinds())
	e.mu.Lock()
	e.last = &r
	e.mu.Unlock()
	return nil
}

// Describe implements prometheus.Collector.
func (e *upliftExporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upliftRateDesc, upliftCustomersDesc, upliftDesc, upliftLowDesc, upliftHighDesc, upliftPendingDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (e *upliftExporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	r := e.last
	e.mu.Unlock()
	if r == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(upliftPendingDesc, float64(r.Pending))
	for _, u := range r.Total {
		h := strconv.Itoa(u.Days) + "d"
		for arm, a := range map[string]kpi.ArmRate{kpi.ArmTreated: u.Treated, kpi.ArmHoldout: u.Holdout} {
			gauge(upliftCustomersDesc, float64(a.Customers), u.Kind, h, arm)
			if a.Rate != nil {
				gauge(upliftRateDesc, *a.Rate, u.Kind, h, arm)
			}
		}
		if u.Uplift != nil {
			gauge(upliftDesc, *u.Uplift, u.Kind, h)
			gauge(upliftLowDesc, *u.Low, u.Kind, h)
			gauge(upliftHighDesc, *u.High, u.Kind, h)
		}
	}
}

// UpliftKinds are the action kinds whose uplift is measured, as names.
func UpliftKinds() []string {
	out := make([]string, len(upliftKinds))
	for i, k := range upliftKinds {
		out[i] = string(k)
	}
	return out
}
