// Package relay publishes the store's outbox to Kafka. Each outbox shard is drained by the
// one relay process holding its lease, in stream order, so one customer's derived events are
// published in the order they were derived. An entry is deleted only after Kafka acknowledged
// it (acks from all in-sync replicas); a crash in between republishes it with the same
// event_id, which is the only duplication the pipeline allows.
//
// The lease is fenced: the relay reads a shard only together with the lease (one MULTI/EXEC)
// and uses what it read only when the lease held the token it was granted, it deletes its
// published entries only through a script that checks the token in Redis, and it renews its
// leases while a pass runs. A relay that loses a shard's lease mid-pass cancels that shard's
// produce and touches the shard no more; what it had in flight can only land as repeats of
// entries its successor publishes too (docs/design.md, "One relay per outbox shard").
package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/lease"
	"github.com/loyalty-scoring/loyalty/pkg/outbox"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// remove deletes the published entries ARGV[2..] from the outbox, while the caller holds the
// shard's lease with the token in ARGV[1]; in slices, to stay within Lua's unpack limit.
var remove = redisconn.NewScript("relay-remove", lease.FenceCheck+`
local n = 0
for i = 2, #ARGV, 1000 do
  n = n + redis.call('XDEL', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return n`)

// Publisher is the part of stream.Producer the relay uses.
type Publisher interface {
	Produce(ctx context.Context, records ...stream.Record) error
}

// Config configures a relay.
type Config struct {
	// BatchSize is the most entries read from one shard per pass.
	BatchSize int
	// IdlePoll is the longest pause after a pass that found nothing: a write that appends
	// outbox entries publishes on the namespace's outbox bell (keyspace.OutboxBell), which
	// ends the pause at once, so the poll only covers a bell that was lost (the relay's
	// subscription reconnecting) or a writer that does not ring it (an earlier release).
	IdlePoll time.Duration
	// LeaseTTL is how long a shard stays with a relay that stopped renewing.
	LeaseTTL time.Duration
	// TopicFor maps an entry's logical topic to the topic to publish on (a replay's shadow
	// topic, say); nil publishes on the logical topic. Returning "" drops the entry (a replay
	// with outputs "none").
	TopicFor func(logical string) string
	// Owner identifies this process in leases; empty derives one from host and pid.
	Owner string
	// DeadLetter receives the corrupt entries (outbox.ErrCorrupt), code
	// "corrupt_outbox_entry", and the derived events Kafka refuses for good
	// (stream.RecordRefused), code "refused_derived_event": they go there, then are deleted
	// with their batch, so neither stalls its shard. Nil fails the shard's pass on one
	// instead, and it waits in the outbox. An entry of a later layout
	// (outbox.ErrUnknownLayout) always waits: a relay of the release that wrote it publishes
	// it.
	DeadLetter stream.DeadLetterSink
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.IdlePoll == 0 {
		c.IdlePoll = DefaultIdlePoll
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
	case c.LeaseTTL > 0 && c.IdlePoll > c.LeaseTTL/4:
		// Every pass renews the leases; an idle relay must pass several times per TTL.
		return fmt.Errorf("IdlePoll: %s is more than a quarter of LeaseTTL %s", c.IdlePoll, c.LeaseTTL)
	case c.LeaseTTL < time.Second:
		return errors.New("LeaseTTL: must be at least 1s")
	}
	return nil
}

// Metrics are the relay's Prometheus metrics.
type Metrics struct {
	published *prometheus.CounterVec
	dead      prometheus.Counter
	refused   prometheus.Counter
	depth     prometheus.Gauge
	errors    prometheus.Counter
	lost      prometheus.Counter
	// oldest is the age of the oldest entry in the held shards at the last pass; wait the
	// time entries spent in the outbox; endToEnd the time from an input record's Kafka
	// timestamp to Kafka's acknowledgement of the derived event.
	oldest   prometheus.Gauge
	wait     prometheus.Histogram
	endToEnd *prometheus.HistogramVec
}

// latencyBuckets span 5 ms to about 10 minutes: live latency to a consumer's outage.
var latencyBuckets = prometheus.ExponentialBuckets(0.005, 2.5, 14)

// NewMetrics creates and registers (when reg is not nil) the relay metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_relay_published_total",
			Help: "Derived events published to Kafka, by topic."}, []string{"topic"}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_relay_dead_lettered_total",
			Help: "Outbox entries the relay could not read, sent to the dead-letter topic instead of published."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_relay_refused_total",
			Help: "Derived events Kafka refused for good (over their topic's max.message.bytes, invalid), sent to the dead-letter topic instead of published."}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "loyalty_outbox_depth",
			Help: "Entries waiting in the outbox shards this relay holds."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_relay_errors_total",
			Help: "Failed relay passes (retried)."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_relay_leases_lost_total",
			Help: "Shards a relay stopped working mid-pass because their lease was lost or could not be renewed."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "loyalty_outbox_oldest_age_seconds",
			Help: "Age of the oldest entry waiting in the outbox shards this relay holds, at its last pass (0: empty)."}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "loyalty_outbox_wait_seconds",
			Help: "Time from a derived event's outbox write to Kafka's acknowledgement of it.", Buckets: latencyBuckets}),
		endToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "loyalty_e2e_latency_seconds",
			Help:    "Time from the input record's Kafka timestamp to Kafka's acknowledgement of the derived event it caused, by output topic (end-of-day changes have no input record and are not counted).",
			Buckets: latencyBuckets}, []string{"topic"}),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.dead, m.refused, m.depth, m.errors, m.lost, m.oldest, m.wait, m.endToEnd)
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
		return nil, fmt.Errorf("relay: %w", err)
	}
	if err := redisconn.LoadAll(ctx, rdb, remove); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Relay{cfg: cfg, rdb: rdb, keys: keys, pub: pub, leases: leases, metrics: metrics, log: log}, nil
}

// DefaultIdlePoll is Config.IdlePoll's default. Before the outbox bell the relay polled every
// 20 ms, and a caught-up relay spent most of its CPU, and Redis 3,200 XLEN calls a second
// over 64 shards, finding nothing.
const DefaultIdlePoll = 250 * time.Millisecond

// Run relays until ctx is cancelled, then releases its leases. Between passes that found
// nothing it waits for the namespace's outbox bell, or IdlePoll at most.
func (r *Relay) Run(ctx context.Context) error {
	defer func() {
		if err := r.leases.Release(context.WithoutCancel(ctx)); err != nil {
			r.log.Warn("releasing relay leases", zap.Error(err))
		}
	}()
	bell := r.listen(ctx)
	backoff := r.cfg.IdlePoll
	for ctx.Err() == nil {
		n, err := r.Pass(ctx)
		if err != nil && ctx.Err() == nil {
			r.metrics.errors.Inc()
			r.log.Warn("relay pass failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			backoff = min(backoff*2, 5*time.Second)
			select { // a failing pass waits out its backoff: a bell does not cut it short
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			continue
		}
		backoff = r.cfg.IdlePoll
		if n == 0 {
			select {
			case <-ctx.Done():
			case <-bell:
			case <-time.After(r.cfg.IdlePoll):
			}
		}
	}
	return nil
}

// listen subscribes to the namespace's outbox bell and returns a channel that holds one
// pending ring at most: rings during a pass wake the next wait at once, however many there
// were. The subscription reconnects by itself (go-redis); rings published while it is down
// are lost, which the IdlePoll bounds. A Redis that refuses Pub/Sub leaves the relay polling.
func (r *Relay) listen(ctx context.Context) <-chan struct{} {
	rings := make(chan struct{}, 1)
	sub := r.rdb.Subscribe(ctx, r.keys.OutboxBell())
	if _, err := sub.Receive(ctx); err != nil {
		_ = sub.Close()
		if ctx.Err() == nil {
			r.log.Warn("subscribing to the outbox bell failed; polling the outbox every IdlePoll", zap.Error(err),
				zap.Duration("idle_poll", r.cfg.IdlePoll))
		}
		return rings
	}
	go func() {
		defer func() { _ = sub.Close() }()
		ch := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-ch:
				if !ok {
					return
				}
				select {
				case rings <- struct{}{}:
				default:
				}
			}
		}
	}()
	return rings
}

// Pass takes or renews leases and publishes one batch from every held shard, and returns the
// number of derived events published (an entry holds one or more). Each shard is read and its
// published entries deleted only under the fence of the lease's token (claim, remove); the
// leases are renewed while the pass runs, and a shard whose lease is lost (refused on renewal,
// or not renewed before it could expire) is abandoned at once: its produce is cancelled and
// nothing more of it is published or deleted in this pass. A lost lease is returned as an error
// wrapping lease.ErrFenced or ErrLeaseLapsed.
func (r *Relay) Pass(ctx context.Context) (int, error) {
	grants, err := r.leases.AcquireFenced(ctx)
	if err != nil {
		return 0, fmt.Errorf("relay leases: %w", err)
	}
	if grants, err = r.withEntries(ctx, grants); err != nil || len(grants) == 0 {
		if err == nil {
			r.metrics.depth.Set(0)
			r.metrics.oldest.Set(0)
		}
		return 0, err
	}
	k := r.keep(ctx, grants)
	defer k.stop()
	var (
		published, depth atomic.Int64
		wg               sync.WaitGroup
		errs             = make([]error, len(grants))
		oldest           = make([]time.Time, len(grants))
		slots            = make(chan struct{}, drainConcurrency)
	)
	for i, g := range grants {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			n, d, first, err := r.drain(ctx, k.ctxs[i], g)
			published.Add(int64(n))
			depth.Add(d)
			oldest[i] = first
			if errors.Is(err, lease.ErrFenced) || errors.Is(err, ErrLeaseLapsed) {
				r.metrics.lost.Inc()
				r.leases.Forget()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	r.metrics.depth.Set(float64(depth.Load()))
	age := time.Duration(0)
	for _, at := range oldest {
		if !at.IsZero() {
			age = max(age, time.Since(at))
		}
	}
	r.metrics.oldest.Set(age.Seconds())
	return int(published.Load()), errors.Join(errs...)
}

// withEntries returns the grants whose outbox holds entries, read with one pipelined XLEN:
// a caught-up relay polls its shards every IdlePoll, and most are empty then. The length is
// a hint read outside the fence; the fenced claim of a non-empty shard reads it again.
func (r *Relay) withEntries(ctx context.Context, grants []lease.Grant) ([]lease.Grant, error) {
	if len(grants) == 0 {
		return nil, nil
	}
	pipe := r.rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(grants))
	for i, g := range grants {
		lens[i] = pipe.XLen(ctx, r.keys.Outbox(g.Index))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading outbox lengths: %w", err)
	}
	busy := grants[:0:0]
	for i, g := range grants {
		if lens[i].Val() > 0 {
			busy = append(busy, g)
		}
	}
	return busy, nil
}

// drainConcurrency is how many shards a relay drains at once. Their produces overlap, so the
// producer batches them together as it did when one pass was one produce.
const drainConcurrency = 8

// drain publishes one batch of a shard under grant g: a fenced read of the oldest entries,
// the produce under sctx (cancelled when the lease is lost), and a fenced delete of what
// Kafka acknowledged. It returns the number published and the shard's depth before the pass.
func (r *Relay) drain(ctx, sctx context.Context, g lease.Grant) (int, int64, time.Time, error) {
	shard, outboxKey := g.Index, r.keys.Outbox(g.Index)
	if sctx.Err() != nil {
		return 0, 0, time.Time{}, context.Cause(sctx)
	}
	depth, entries, err := r.claim(sctx, g, outboxKey)
	if err != nil {
		return 0, 0, time.Time{}, r.shardErr(sctx, shard, "reading", err)
	}
	if len(entries) == 0 {
		return 0, depth, time.Time{}, nil
	}
	first := entryTime(entries[0].ID)
	ids := make([]any, 0, len(entries)+1)
	ids = append(ids, g.Value)
	records := make([]stream.Record, 0, len(entries))
	var sources []time.Time // per record, its input record's time (zero: none)
	var unreadable []stream.Rejection
	for _, e := range entries {
		ids = append(ids, e.ID)
		entry, err := outbox.Decode(e.Values)
		if err != nil {
			err = fmt.Errorf("outbox shard %d entry %s: %w", shard, e.ID, err)
			if r.cfg.DeadLetter == nil || !errors.Is(err, outbox.ErrCorrupt) {
				return 0, depth, first, err // a later layout waits for an upgraded relay
			}
			unreadable = append(unreadable, unreadableEntry(outboxKey, shard, e, err))
			continue
		}
		for _, ev := range entry.Events {
			rec, ok := r.record(entry.Key, ev, e.ID)
			if ok {
				records = append(records, rec)
				sources = append(sources, ev.SourceTime)
			}
		}
	}
	// The unreadable entries go first: should their dead-lettering fail, nothing of the batch
	// has been published, and a retry repeats no derived event.
	if len(unreadable) > 0 {
		if err := r.cfg.DeadLetter.DeadLetter(sctx, unreadable); err != nil {
			return 0, depth, first, fmt.Errorf("outbox shard %d: dead-lettering %d unreadable entries (the batch is read again): %w", shard, len(unreadable), err)
		}
		for _, u := range unreadable {
			r.log.Error("outbox entry unreadable: sent to the dead-letter topic", zap.Int("shard", shard), zap.Error(u.Err))
		}
		r.metrics.dead.Add(float64(len(unreadable)))
	}
	if len(records) > 0 {
		err := r.pub.Produce(sctx, records...)
		if err != nil && sctx.Err() == nil && r.cfg.DeadLetter != nil && stream.RecordRefused(err) {
			records, sources, err = r.setAsideRefused(sctx, shard, records, sources, err)
		}
		if err != nil {
			if sctx.Err() != nil && ctx.Err() == nil {
				// The lease went while the records were in flight: some may still land, as
				// repeats of what the shard's next holder publishes from the same entries.
				return 0, depth, first, fmt.Errorf("publishing abandoned: %w", context.Cause(sctx))
			}
			return 0, depth, first, fmt.Errorf("outbox shard %d: %w", shard, err)
		}
		r.observePublished(entries, records, sources)
	}
	// Kafka acknowledged the batch, so the entries go even when the pass is being cancelled;
	// the fence refuses the delete if the lease went meanwhile, and the next holder publishes
	// them again with the same ids.
	if err := remove.Run(context.WithoutCancel(ctx), r.rdb, []string{g.Key, outboxKey}, ids...).Err(); err != nil {
		return len(records), depth, first, r.shardErr(sctx, shard, "removing published entries (they will be published again)", err)
	}
	return len(records), depth, first, nil
}

// setAsideRefused publishes a batch that Kafka refused because of some of its records (err,
// stream.RecordRefused: a derived event over its topic's max.message.bytes, say), in halves
// until each refused record stands alone, and sends those to the dead-letter topic, code
// CodeRefusedEvent, so that one such record does not stall its outbox shard for ever. It
// returns the records it published, with their sources' times (sources[i] is records[i]'s),
// in their order: a customer's events keep theirs. Halves the broker had accepted before a
// refusal are published again, with the same event ids, as after any failed attempt. Any
// other error ends it, and the batch is read again.
func (r *Relay) setAsideRefused(ctx context.Context, shard int, records []stream.Record, sources []time.Time, err error) (
	published []stream.Record, publishedSources []time.Time, _ error) {
	refused := map[int]bool{}
	var rejections []stream.Rejection
	// split settles records[lo:hi], whose produce returned err.
	var split func(lo, hi int, err error) error
	split = func(lo, hi int, err error) error {
		if err == nil {
			return nil
		}
		if !stream.RecordRefused(err) {
			return err
		}
		if hi-lo == 1 {
			rec := records[lo]
			refused[lo] = true
			rejections = append(rejections, stream.Rejection{Code: CodeRefusedEvent, Err: err, Message: stream.Message{
				Topic: rec.Topic, Key: rec.Key, Value: rec.Value, Headers: rec.Headers, Time: time.Now()}})
			return nil
		}
		mid := (lo + hi) / 2
		if err := split(lo, mid, r.pub.Produce(ctx, records[lo:mid]...)); err != nil {
			return err
		}
		return split(mid, hi, r.pub.Produce(ctx, records[mid:hi]...))
	}
	if err := split(0, len(records), err); err != nil {
		return nil, nil, err
	}
	if err := r.cfg.DeadLetter.DeadLetter(ctx, rejections); err != nil {
		return nil, nil, fmt.Errorf("dead-lettering %d derived events Kafka refused (the batch is read again): %w", len(rejections), err)
	}
	for _, rej := range rejections {
		r.log.Error("derived event refused by Kafka: sent to the dead-letter topic", zap.Int("shard", shard),
			zap.String("topic", rej.Message.Topic), zap.String("event_id", header(rej.Message.Headers, HeaderEventID)),
			zap.Int("bytes", len(rej.Message.Value)), zap.Error(rej.Err))
	}
	r.metrics.refused.Add(float64(len(rejections)))
	for i := range records {
		if !refused[i] {
			published, publishedSources = append(published, records[i]), append(publishedSources, sources[i])
		}
	}
	return published, publishedSources, nil
}

// header returns the value of the header named key, or "".
func header(headers []stream.Header, key string) string {
	for _, h := range headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// observePublished counts the records Kafka just acknowledged and records how long their
// entries waited in the outbox and, for the records an input record caused (sources[i] its
// time), the end-to-end latency from its timestamp.
func (r *Relay) observePublished(entries []redis.XMessage, records []stream.Record, sources []time.Time) {
	now := time.Now()
	for _, e := range entries {
		if at := entryTime(e.ID); !at.IsZero() {
			r.metrics.wait.Observe(max(now.Sub(at), 0).Seconds())
		}
	}
	for i, rec := range records {
		r.metrics.published.WithLabelValues(rec.Topic).Inc()
		if !sources[i].IsZero() {
			r.metrics.endToEnd.WithLabelValues(rec.Topic).Observe(max(now.Sub(sources[i]), 0).Seconds())
		}
	}
}

// OutboxEntryTime is when the outbox entry a published record came from was appended: the
// time of its HeaderOutboxEntry; false when the record has none (a record published by a
// relay of an earlier release, or not by a relay) or it is not an entry id.
func OutboxEntryTime(headers []stream.Header) (time.Time, bool) {
	for _, h := range headers {
		if h.Key == HeaderOutboxEntry {
			at := entryTime(string(h.Value))
			return at, !at.IsZero()
		}
	}
	return time.Time{}, false
}

// entryTime is when a stream entry was added: the milliseconds of its id ("ms-seq").
func entryTime(id string) time.Time {
	msText, _, _ := strings.Cut(id, "-")
	ms, err := strconv.ParseInt(msText, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// shardErr names the shard and step of a failed Redis call, reporting a fenced refusal as
// lease.ErrFenced and a call cut short by the lease's loss as its cause.
func (r *Relay) shardErr(sctx context.Context, shard int, step string, err error) error {
	switch {
	case lease.Fenced(err) || errors.Is(err, lease.ErrFenced):
		return fmt.Errorf("outbox shard %d: %s refused: %w", shard, step, lease.ErrFenced)
	case sctx.Err() != nil && errors.Is(err, sctx.Err()):
		return fmt.Errorf("outbox shard %d: %s: %w", shard, step, context.Cause(sctx))
	}
	return fmt.Errorf("outbox shard %d: %s: %w", shard, step, err)
}

// claim reads the outbox's length and its oldest BatchSize entries together with the lease
// under grant g, in one MULTI/EXEC: the three replies are one instant of the server, so the
// entries were read under the fence exactly when the lease then held g's token, and
// otherwise the read is refused with lease.ErrFenced and its entries are not used. A Lua
// script doing the same check converts every entry into Lua tables and back, which cost
// Redis more than the read itself (BenchmarkPass).
func (r *Relay) claim(ctx context.Context, g lease.Grant, outboxKey string) (int64, []redis.XMessage, error) {
	var held *redis.StringCmd
	var length *redis.IntCmd
	var oldest *redis.XMessageSliceCmd
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		held = p.Get(ctx, g.Key)
		length = p.XLen(ctx, outboxKey)
		oldest = p.XRangeN(ctx, outboxKey, "-", "+", int64(r.cfg.BatchSize))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, nil, err
	}
	if held.Err() != nil || held.Val() != g.Value {
		return 0, nil, lease.ErrFenced // expired (redis.Nil) or held with another token
	}
	if err := errors.Join(length.Err(), oldest.Err()); err != nil {
		return 0, nil, err
	}
	return length.Val(), oldest.Val(), nil
}

// ErrLeaseLapsed reports that a relay could not renew a shard's lease before it could
// expire (Redis unreachable, say) and so stopped working the shard.
var ErrLeaseLapsed = errors.New("shard lease not renewed before it could expire")

// keeper renews a pass's leases while the pass runs and cancels the context of each shard
// whose lease is lost.
type keeper struct {
	leases   *lease.Set
	log      *zap.Logger
	ctxs     []context.Context
	cancels  []context.CancelCauseFunc
	done     chan struct{}
	finished chan struct{}
}

// keep starts renewing grants; ctxs[i] is grants[i]'s shard context.
func (r *Relay) keep(ctx context.Context, grants []lease.Grant) *keeper {
	k := &keeper{leases: r.leases, log: r.log, ctxs: make([]context.Context, len(grants)),
		cancels: make([]context.CancelCauseFunc, len(grants)), done: make(chan struct{}), finished: make(chan struct{})}
	slot := make(map[int]int, len(grants))
	for i, g := range grants {
		k.ctxs[i], k.cancels[i] = context.WithCancelCause(ctx)
		slot[g.Index] = i
	}
	go k.run(ctx, slices.Clone(grants), slot)
	return k
}

// run renews every third of the TTL. A lease the renewal no longer finds is fenced; one not
// renewed before its grant's Until has lapsed, as far as this process can tell.
func (k *keeper) run(ctx context.Context, live []lease.Grant, slot map[int]int) {
	defer close(k.finished)
	every := k.leases.TTL() / 3
	next := time.Now().Add(every)
	for len(live) > 0 {
		until := live[0].Until
		for _, g := range live[1:] {
			until = minTime(until, g.Until)
		}
		timer := time.NewTimer(time.Until(minTime(next, until)))
		select {
		case <-k.done:
			timer.Stop()
			return
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		if !time.Now().Before(until) {
			for _, g := range live {
				k.cancels[slot[g.Index]](fmt.Errorf("outbox shard %d: %w", g.Index, ErrLeaseLapsed))
			}
			return
		}
		rctx, cancel := context.WithDeadline(ctx, until)
		held, err := k.leases.Renew(rctx, live)
		cancel()
		if err != nil {
			k.log.Warn("renewing relay leases", zap.Error(err))
			next = time.Now().Add(every / 4)
			continue
		}
		kept := make(map[int]bool, len(held))
		for _, g := range held {
			kept[g.Index] = true
		}
		for _, g := range live {
			if !kept[g.Index] {
				k.cancels[slot[g.Index]](fmt.Errorf("outbox shard %d: lease taken over: %w", g.Index, lease.ErrFenced))
			}
		}
		live = held
		next = time.Now().Add(every)
	}
}

// stop ends the renewals and releases the shard contexts.
func (k *keeper) stop() {
	close(k.done)
	<-k.finished
	for _, cancel := range k.cancels {
		cancel(context.Canceled)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// unreadableEntry is the dead-letter rejection of an outbox entry the relay cannot read. Its
// source is the outbox stream (topic: the stream's key, partition: the shard, offset: the
// entry's milliseconds); its key is the customer id and its value the packed events, or for
// an entry of the former layout its record value, as stored.
func unreadableEntry(outboxKey string, shard int, e redis.XMessage, err error) stream.Rejection {
	str := func(k string) string { s, _ := e.Values[k].(string); return s }
	value := str(outbox.FieldEvents)
	if _, packed := e.Values[outbox.FieldEvents]; !packed {
		value = str(outbox.FieldValue)
	}
	var offset int64
	if at := entryTime(e.ID); !at.IsZero() {
		offset = at.UnixMilli()
	}
	return stream.Rejection{Code: "corrupt_outbox_entry", Err: err, Message: stream.Message{
		Topic: outboxKey, Partition: shard, Offset: offset,
		Key: []byte(str(outbox.FieldKey)), Value: []byte(value)}}
}

// CodeRefusedEvent is the dead-letter code of a derived event Kafka refused for good
// (setAsideRefused); loyaltyctl dlq republish publishes those again.
const CodeRefusedEvent = "refused_derived_event"

// The headers of every record the relay publishes.
const (
	// HeaderEventID is the derived event's id: the same on every publication of the event.
	HeaderEventID = "event_id"
	// HeaderOutboxEntry is the id of the outbox entry the record was published from,
	// "<ms>-<seq>" with the milliseconds of Redis's clock when its writer appended it
	// (OutboxEntryTime): where an operator tracing an event finds its write, and where its
	// produce→publish latency splits between the writer and the relay.
	HeaderOutboxEntry = "outbox_entry"
)

// record is the Kafka record of event ev of customer key, read from the outbox entry with id
// entryID, on the topic TopicFor names; false when TopicFor drops it.
func (r *Relay) record(key string, ev outbox.Event, entryID string) (stream.Record, bool) {
	topic := ev.Topic
	if r.cfg.TopicFor != nil {
		topic = r.cfg.TopicFor(topic)
		if topic == "" {
			return stream.Record{}, false
		}
	}
	return stream.Record{Topic: topic, Key: []byte(key), Value: ev.Value,
		Headers: []stream.Header{{Key: HeaderEventID, Value: []byte(ev.EventID)}, {Key: HeaderOutboxEntry, Value: []byte(entryID)}}}, true
}
