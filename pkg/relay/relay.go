// Package relay publishes the store's outbox to Kafka. Each outbox shard is drained by the
// one relay process holding its lease, in stream order, so one customer's derived events are
// published in the order they were derived. An entry is deleted only after Kafka acknowledged
// it (acks from all in-sync replicas); a crash in between republishes it with the same
// event_id, which is the only duplication the pipeline allows.
package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/lease"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// Publisher is the part of stream.Producer the relay uses.
type Publisher interface {
	Produce(ctx context.Context, records ...stream.Record) error
}

// Config configures a relay.
type Config struct {
	// BatchSize is the most entries read from one shard per pass.
	BatchSize int
	// IdlePoll is the pause after a pass that found nothing.
	IdlePoll time.Duration
	// LeaseTTL is how long a shard stays with a relay that stopped renewing.
	LeaseTTL time.Duration
	// TopicFor maps an entry's logical topic to the topic to publish on (a replay's shadow
	// topic, say); nil publishes on the logical topic. Returning "" drops the entry (a replay
	// with outputs "none").
	TopicFor func(logical string) string
	// Owner identifies this process in leases; empty derives one from host and pid.
	Owner string
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.IdlePoll == 0 {
		c.IdlePoll = 20 * time.Millisecond
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.Owner == "" {
		c.Owner = lease.DefaultOwner()
	}
	return c
}

// Validate reports the first problem, naming the field.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 1 || c.BatchSize > 10_000:
		return fmt.Errorf("BatchSize: %d is not in 1..10000", c.BatchSize)
	case c.IdlePoll <= 0:
		return errors.New("IdlePoll: must be positive")
	case c.LeaseTTL < time.Second:
		return errors.New("LeaseTTL: must be at least 1s")
	}
	return nil
}

// Metrics are the relay's Prometheus metrics.
type Metrics struct {
	published *prometheus.CounterVec
	depth     prometheus.Gauge
	errors    prometheus.Counter
}

// NewMetrics creates and registers (when reg is not nil) the relay metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_relay_published_total",
			Help: "Derived events published to Kafka, by topic."}, []string{"topic"}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "loyalty_outbox_depth",
			Help: "Entries waiting in the outbox shards this relay holds."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_relay_errors_total",
			Help: "Failed relay passes (retried)."}),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.depth, m.errors)
	}
	return m
}

// Relay drains outbox shards to Kafka.
type Relay struct {
	cfg     Config
	rdb     redis.UniversalClient
	keys    keyspace.Keyspace
	pub     Publisher
	leases  *lease.Set
	metrics *Metrics
	log     *zap.Logger
}

// New validates cfg (after WithDefaults) and returns a relay. metrics may be nil.
func New(ctx context.Context, cfg Config, rdb redis.UniversalClient, keys keyspace.Keyspace, pub Publisher, metrics *Metrics, log *zap.Logger) (*Relay, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("relay config: %w", err)
	}
	leases, err := lease.NewSet(ctx, rdb, cfg.Owner, cfg.LeaseTTL, keys.Leases("relay"))
	if err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Relay{cfg: cfg, rdb: rdb, keys: keys, pub: pub, leases: leases, metrics: metrics, log: log}, nil
}

// Run relays until ctx is cancelled, then releases its leases.
func (r *Relay) Run(ctx context.Context) error {
	defer func() {
		if err := r.leases.Release(context.WithoutCancel(ctx)); err != nil {
			r.log.Warn("releasing relay leases", zap.Error(err))
		}
	}()
	backoff := r.cfg.IdlePoll
	for ctx.Err() == nil {
		n, err := r.Pass(ctx)
		if err != nil && ctx.Err() == nil {
			r.metrics.errors.Inc()
			r.log.Warn("relay pass failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			backoff = min(backoff*2, 5*time.Second)
		} else {
			backoff = r.cfg.IdlePoll
		}
		if n == 0 || err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
		}
	}
	return nil
}

// Pass renews leases and publishes one batch from every held shard. It returns the number
// of entries published.
func (r *Relay) Pass(ctx context.Context) (int, error) {
	held, err := r.leases.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	if len(held) == 0 {
		return 0, nil
	}
	pipe := r.rdb.Pipeline()
	reads := make([]*redis.XMessageSliceCmd, len(held))
	lens := make([]*redis.IntCmd, len(held))
	for i, shard := range held {
		reads[i] = pipe.XRangeN(ctx, r.keys.Outbox(shard), "-", "+", int64(r.cfg.BatchSize))
		lens[i] = pipe.XLen(ctx, r.keys.Outbox(shard))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("reading outbox: %w", err)
	}
	var depth int64
	for _, l := range lens {
		depth += l.Val()
	}
	r.metrics.depth.Set(float64(depth))

	var records []stream.Record
	type done struct {
		shard int
		ids   []string
	}
	var acked []done
	for i, shard := range held {
		entries := reads[i].Val()
		if len(entries) == 0 {
			continue
		}
		ids := make([]string, len(entries))
		for j, e := range entries {
			ids[j] = e.ID
			rec, ok, err := r.record(e)
			if err != nil {
				return 0, fmt.Errorf("outbox shard %d entry %s: %w", shard, e.ID, err)
			}
			if ok {
				records = append(records, rec)
			}
		}
		acked = append(acked, done{shard: shard, ids: ids})
	}
	if len(acked) == 0 {
		return 0, nil
	}
	if err := r.pub.Produce(ctx, records...); err != nil {
		return 0, err
	}
	for _, rec := range records {
		r.metrics.published.WithLabelValues(rec.Topic).Inc()
	}
	pipe = r.rdb.Pipeline()
	for _, d := range acked {
		pipe.XDel(ctx, r.keys.Outbox(d.shard), d.ids...)
	}
	if _, err := pipe.Exec(context.WithoutCancel(ctx)); err != nil {
		return len(records), fmt.Errorf("removing published outbox entries (they will be published again): %w", err)
	}
	return len(records), nil
}

func (r *Relay) record(e redis.XMessage) (stream.Record, bool, error) {
	str := func(k string) string { s, _ := e.Values[k].(string); return s }
	topic, key, id, value := str("t"), str("k"), str("id"), str("v")
	if topic == "" || id == "" {
		return stream.Record{}, false, errors.New("entry lacks topic or event id")
	}
	if r.cfg.TopicFor != nil {
		topic = r.cfg.TopicFor(topic)
		if topic == "" {
			return stream.Record{}, false, nil
		}
	}
	return stream.Record{Topic: topic, Key: []byte(key), Value: []byte(value),
		Headers: []stream.Header{{Key: "event_id", Value: []byte(id)}}}, true, nil
}
