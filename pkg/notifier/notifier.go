package notifier

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/supervise"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// Service is the notifier's name in metrics labels, dead letters and the consumer group.
const Service = "notifier"

// Deps are the connections and settings of the process the notifier runs in.
type Deps struct {
	Redis      redis.UniversalClient
	Keys       keyspace.Keyspace
	Deployment keyspace.Deployment
	Codec      *codec.Codec
	Producer   *stream.Producer
	// DeadLetterMaxRecordBytes is the dead-letter topic's record limit (0: the writer's
	// default); undeliverable actions' envelopes are cut to fit.
	DeadLetterMaxRecordBytes int
	// Admin places the deployment's consumer group once, where a notifier of an earlier
	// version stopped (Adopt).
	Admin  GroupAdmin
	Policy *scoring.Policy
	// Kafka holds the brokers, security and batching of the consumer; Run sets the group and
	// the topics.
	Kafka stream.ConsumerConfig
	// Topic maps a logical topic to its physical name, Logical the reverse.
	Topic      func(logical string) string
	Logical    func(physical string) string
	Registerer prometheus.Registerer
	Log        *zap.Logger
}

// Run consumes tier and churn-risk changes in a consumer group, decides actions and delivers
// them until ctx ends. The action records reach loyalty.actions.v1 through the namespace's
// outbox, so a relay (wiring.RunRelay) must run for the namespace too, as it does in every
// deployment and in the demo.
func Run(ctx context.Context, rt Deps, cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("notifier config: %w", err)
	}
	if err := redisconn.LoadAll(ctx, rt.Redis, decideScript, claimScript, settleScript, settleExposureScript); err != nil {
		return err
	}
	store, err := state.New(ctx, rt.Redis, rt.Keys, nil)
	if err != nil {
		return err
	}
	reg := rt.Registerer
	metrics := NewMetrics(reg)
	k := keys{ks: rt.Keys, d: rt.Deployment}
	channels := map[event.ActionKind]channel{}
	for kind, v := range cfg.Channels {
		if v == ChannelLog {
			channels[kind] = &logChannel{log: rt.Log.Named("actions")}
		} else {
			channels[kind] = &webhook{url: v, signer: newSigner(cfg), client: cfg.HTTPClient, timeout: cfg.Delivery.Timeout, now: cfg.Now}
		}
	}
	dlq := &stream.DeadLetterWriter{Producer: rt.Producer, Encoder: rt.Codec, Service: Service, Topic: rt.Topic(event.TopicDeadLetter),
		MaxRecordBytes: rt.DeadLetterMaxRecordBytes}
	dlv := newDeliverer(rt.Redis, k, cfg.Delivery, channels, rt.Codec, dlq, metrics, rt.Log, cfg.Now)
	n := &handler{
		rt: rt, rules: cfg.Rules, store: store, metrics: metrics, deliverer: dlv,
		suppressor: namespace.NewSuppressor(rt.Redis, rt.Deployment),
		arb:        &arbiter{rdb: rt.Redis, keys: k, enc: rt.Codec, rules: cfg.Rules, now: cfg.Now},
		channelOf:  func(kind event.ActionKind) string { return channelName(cfg.Channels[kind]) },
	}
	n.arb.policy = n.policy.Load
	// CLV uses the churn model the scoring services use: the namespace's latest fit.
	if err := n.followPolicy(ctx); err != nil {
		return err
	}
	th := &thresholds{}
	n.clvTop = th.top
	var tasks supervise.Group
	tasks.Add(dlv.Run)
	tasks.Add(func(ctx context.Context) error {
		return pipeline.EveryTick(ctx, 30*time.Second, n.followPolicy, rt.Log, "reading the namespace's churn model fit failed; CLV keeps the last one",
			"reading the namespace's churn model fit recovered")
	})
	marks, err := watermark.NewTracker(ctx, rt.Redis, rt.Keys.Watermarks(), rt.Policy.AllowedLateness)
	if err != nil {
		return err
	}
	uplift := &upliftResolver{rdb: rt.Redis, keys: k, store: store, marks: marks, log: rt.Log}
	tasks.Add(func(ctx context.Context) error { return uplift.Run(ctx, cfg.UpliftEvery) })
	upliftGauges := newUpliftExporter(rt.Redis, k, reg)
	tasks.Add(func(ctx context.Context) error {
		return pipeline.EveryTick(ctx, cfg.UpliftEvery, upliftGauges.refresh, rt.Log, "reading the uplift counters failed; the gauges keep the last reading",
			"reading the uplift counters recovered")
	})
	if c := cfg.Rules.CLV; c.ThresholdMinor > 0 {
		th.cur.Store(&Threshold{Minor: c.ThresholdMinor, Fixed: true})
	} else {
		tasks.Add(func(ctx context.Context) error { return refreshThreshold(ctx, rt, c, th, n.policy.Load, cfg.Now) })
	}
	smetrics := stream.NewMetrics(reg)
	// The group and the state belong to the deployment, so a promote moves neither; state an
	// earlier version kept in the namespace is adopted once, before anything is consumed.
	group, adoptGroup := cfg.GroupID, ""
	if group == "" {
		group = GroupID(rt.Deployment)
		adoptGroup = group
	}
	kafka := rt.Kafka
	kafka.GroupID, kafka.StartFromLatest = group, cfg.StartFromLatest
	kafka.Topics = []string{rt.Topic(event.TopicTierChanges), rt.Topic(event.TopicChurnRisk)}
	if _, err := Adopt(ctx, rt.Redis, rt.Admin, rt.Keys, rt.Deployment, adoptGroup, kafka.Topics, rt.Log); err != nil {
		return fmt.Errorf("adopting the notifier state of namespace %s: %w", rt.Keys.Namespace(), err)
	}
	consumer, err := stream.NewConsumer(kafka,
		ingest.Guard(n, smetrics, dlq),
		smetrics, rt.Log)
	if err != nil {
		return err
	}
	// Deliveries of the queue left by an earlier run start at once, not after the first poll.
	dlv.Wake()
	tasks.Add(consumer.Run)
	return tasks.Run(ctx)
}

// followPolicy loads the policy in force.
func (h *handler) followPolicy(ctx context.Context) error {
	p, err := namespace.PolicyInForce(ctx, h.rt.Redis, h.rt.Keys, h.rt.Policy)
	if err != nil {
		return err
	}
	h.policy.Store(p)
	return nil
}

func channelName(v string) string {
	if v == ChannelLog {
		return ChannelLog
	}
	return ChannelWebhook
}

// handler is the consumer's batch handler: decode, gather facts, match a rule, arbitrate.
type handler struct {
	rt         Deps
	rules      *Rules
	policy     atomic.Pointer[scoring.Policy] // the policy in force (namespace.PolicyInForce)
	store      *state.Store
	suppressor pipeline.Suppressor
	arb        *arbiter
	deliverer  *deliverer
	metrics    *Metrics
	clvTop     func(clv float64) bool
	channelOf  func(event.ActionKind) string
}

// HandleBatch implements stream.Handler. Records are decided one at a time, in batch order
// (so a customer's triggers of one topic are decided in their order); each decision is its
// own atomic, idempotent script call, so a batch retried after a failure half-way decides
// nothing twice.
func (h *handler) HandleBatch(ctx context.Context, b *stream.Batch) error {
	type item struct {
		i int
		t Trigger
	}
	items := make([]item, 0, len(b.Messages))
	ids := make([]string, 0, len(b.Messages))
	for i, m := range b.Messages {
		if b.Rejected(i) {
			continue
		}
		t, code, err := h.decode(ctx, m)
		if err != nil {
			if code == "" {
				return err
			}
			b.Reject(i, code, err)
			continue
		}
		items = append(items, item{i: i, t: t})
		ids = append(ids, t.CustomerID())
	}
	if len(items) == 0 {
		return nil // every record was rejected: the dead-letter middleware takes them
	}
	erased, err := h.suppressor.Suppressed(ctx, ids)
	if err != nil {
		return err
	}
	queued := false
	for _, it := range items {
		if erased[it.t.CustomerID()] {
			h.metrics.skipped.WithLabelValues("erased").Inc()
			continue
		}
		facts, err := h.facts(ctx, it.t)
		if errors.Is(err, scoring.ErrCorruptState) {
			b.Reject(it.i, "corrupt_customer_state", err)
			continue
		}
		if err != nil {
			return err
		}
		rule, ok := h.rules.Match(it.t, facts)
		if !ok {
			h.metrics.unmatched.WithLabelValues(it.t.On()).Inc()
			continue
		}
		d, err := h.arb.decide(ctx, it.t, facts, rule, h.channelOf(rule.Kind))
		if err != nil {
			return err
		}
		switch d.Status {
		case StatusSend:
			queued = true
		case StatusSuppressed, StatusHeldOut:
			h.metrics.decisions.WithLabelValues(string(d.Kind), string(d.Status), d.Reason).Inc()
		}
		if d.Preempted != "" {
			h.metrics.decisions.WithLabelValues(string(event.ActionWinBack), string(event.OutcomeSuppressed), ReasonPreempted).Inc()
		}
	}
	if queued {
		h.deliverer.Wake()
	}
	return nil
}

// decode returns the trigger of a record. A record that can never be a trigger comes back
// with a dead-letter code; an error without a code is an outage (retry the batch).
func (h *handler) decode(ctx context.Context, m stream.Message) (Trigger, string, error) {
	e, err := h.rt.Codec.Decode(ctx, m.Value)
	if err != nil {
		if errors.Is(err, codec.ErrNotFramed) || errors.Is(err, codec.ErrUnknownSchema) || errors.Is(err, codec.ErrMalformed) {
			return Trigger{}, codec.Code(err), err
		}
		return Trigger{}, "", fmt.Errorf("decoding record %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
	}
	pos := event.Source{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset}
	var t Trigger
	switch v := e.(type) {
	case event.ChurnRiskChanged:
		if h.rt.Logical(m.Topic) == event.TopicChurnRisk {
			t = Trigger{Churn: &v, Position: pos}
		}
	case event.TierChanged:
		if h.rt.Logical(m.Topic) == event.TopicTierChanges {
			t = Trigger{Tier: &v, Position: pos}
		}
	}
	if t.Churn == nil && t.Tier == nil {
		return Trigger{}, "wrong_schema", fmt.Errorf("topic %s does not carry %s records", m.Topic, e.Schema())
	}
	if t.EventID() == "" || t.CustomerID() == "" || t.OccurredAt().IsZero() {
		return Trigger{}, "invalid", errors.New("trigger lacks event_id, customer_id or occurred_at")
	}
	return t, "", nil
}

// facts reads what the rules and arbitration need to know about the trigger's customer, as
// of the trigger's day: tier, open complaints and CLV.
func (h *handler) facts(ctx context.Context, t Trigger) (Facts, error) {
	cur, err := h.store.Current(ctx, t.CustomerID())
	if errors.Is(err, state.ErrNotFound) {
		return Facts{}, nil
	}
	if err != nil {
		return Facts{}, err
	}
	st, err := cur.State()
	if err != nil {
		return Facts{}, fmt.Errorf("customer %s: %w", t.CustomerID(), err)
	}
	day := scoring.DayOf(t.OccurredAt())
	p := h.policy.Load()
	f := Facts{Known: true, Tier: p.TierName(int(st.Tier)), OpenComplaints: st.OpenComplaints(day),
		CLVMinor: CLVMinor(st, day, p, h.rules.CLV)}
	f.CLVTop = h.clvTop(f.CLVMinor)
	return f, nil
}

// refreshThreshold keeps the population CLV threshold current: it loads the stored one at
// once, recomputes and stores it every c.Refresh, and swaps it into th. Several notifiers
// recomputing at once store the same figure from nearly the same sample, which is harmless.
func refreshThreshold(ctx context.Context, rt Deps, c CLVConfig, th *thresholds, policy func() *scoring.Policy, now func() time.Time) error {
	if cur, ok, err := LoadThreshold(ctx, rt.Redis, rt.Keys); err != nil {
		rt.Log.Warn("ignoring the stored CLV threshold", zap.Error(err))
	} else if ok {
		th.cur.Store(&cur)
	}
	compute := func() {
		if cur := th.cur.Load(); cur != nil && now().Sub(cur.ComputedAt) < c.Refresh {
			return
		}
		next, ok, err := ComputeThreshold(ctx, rt.Redis, rt.Keys, policy(), c, now())
		if err != nil {
			if ctx.Err() == nil {
				rt.Log.Warn("computing the CLV threshold", zap.Error(err))
			}
			return
		}
		if !ok {
			return // too few customers yet: nobody counts as top
		}
		if err := StoreThreshold(ctx, rt.Redis, rt.Keys, next); err != nil {
			rt.Log.Warn("storing the CLV threshold", zap.Error(err))
		}
		th.cur.Store(&next)
	}
	compute()
	tick := time.NewTicker(min(c.Refresh, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			compute()
		}
	}
}
