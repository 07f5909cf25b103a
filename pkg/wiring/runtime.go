// Package wiring is the composition root of the pipeline's processes: it connects to Redis
// and Kafka, loads the policy and the codec (NewRuntime), and builds each service from the
// pieces of pkg/pipeline, pkg/relay and pkg/namespace, handing each only what it uses. The
// service binaries' mains are one call to Main.
package wiring

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/gcsettings"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/ops"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/relay"
	"github.com/loyalty-scoring/loyalty/pkg/replay"
	"github.com/loyalty-scoring/loyalty/pkg/schemaregistry"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/supervise"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// Runtime is what every process of the pipeline shares: connections, the codec, the policy
// and the ops server. Build it once with NewRuntime; the services' Run functions take it.
type Runtime struct {
	Config   config.Common
	Log      *zap.Logger
	Redis    redisconn.Client
	Codec    *codec.Codec
	Producer *stream.Producer
	Admin    *stream.Admin // offset, group and topic requests of the process
	Keys     keyspace.Keyspace
	// Deployment builds the keys shared by the deployment's namespaces.
	Deployment keyspace.Deployment
	Policy     *scoring.Policy
	Ops        *ops.Server
	// Replay marks derived events as coming from a replay (never acted upon).
	Replay bool
	// TopicSuffix is appended to every topic name; tests use it to share one broker.
	TopicSuffix string
	// Clock is the wall clock that caught-up partitions count as in the watermark (nil:
	// time.Now). The demo, which produces months of history in minutes, sets its event clock.
	Clock func() time.Time
	// ownsAdmin is set when the runtime built Admin, and so closes it.
	ownsAdmin bool
}

// now reads the runtime's wall clock.
func (rt *Runtime) now() time.Time {
	if rt.Clock != nil {
		return rt.Clock()
	}
	return time.Now()
}

// Topic returns the physical name of a logical topic.
func (rt *Runtime) Topic(logical string) string { return logical + rt.TopicSuffix }

// Logical returns the logical name of a physical topic.
func (rt *Runtime) Logical(physical string) string {
	return strings.TrimSuffix(physical, rt.TopicSuffix)
}

// Registry returns the schema registry the configuration selects: the HTTP registry when
// SCHEMA_REGISTRY_URL is set, otherwise the embedded manifest.
func Registry(cfg config.Common) (codec.Registry, error) {
	if cfg.SchemaRegistryURL == "" {
		return codec.NewEmbeddedRegistry()
	}
	return schemaregistry.NewClient(schemaregistry.ClientConfig{URL: cfg.SchemaRegistryURL,
		Username: cfg.RegistryUsername, Password: cfg.RegistryPassword})
}

// Options are the programmatic settings of a runtime that are not environment configuration.
type Options struct {
	Ops    *ops.Server // nil: a fresh server
	Replay bool
	// TopicSuffix overrides the configuration's LOYALTY_TOPIC_SUFFIX when not empty.
	TopicSuffix string
	// FollowActive makes the runtime use the promoted namespace (ActiveKey) instead of
	// LOYALTY_NAMESPACE when one was promoted: what the live services do.
	FollowActive bool
	// Admin is the process's Kafka admin, shared by its runtimes (nil: the runtime makes its
	// own and closes it; a shared one outlives the runtime).
	Admin *stream.Admin
}

// NewRuntime connects to Redis and Kafka, registers the schemas, creates missing topics and
// loads the policy. It refuses to start when Redis may evict keys (redisconn.CheckNoEviction).
func NewRuntime(ctx context.Context, cfg config.Common, log *zap.Logger, opts Options) (*Runtime, error) {
	rt := &Runtime{Config: cfg, Log: log, Ops: opts.Ops, Replay: opts.Replay, TopicSuffix: cmp.Or(opts.TopicSuffix, cfg.TopicSuffix),
		Admin: opts.Admin}
	if rt.Ops == nil {
		rt.Ops = ops.NewServer(log)
	}
	var err error
	if rt.Policy, err = loadPolicy(cfg.PolicyFile); err != nil {
		return nil, err
	}
	if rt.Redis, err = redisconn.New(cfg.Redis); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "redis", func(ctx context.Context) error { return rt.Redis.Ping(ctx).Err() }); err != nil {
		rt.Close()
		return nil, err
	}
	// An eviction policy would drop customer state silently, after its offsets were committed.
	if err := redisconn.CheckNoEviction(ctx, rt.Redis, log); err != nil {
		rt.Close()
		return nil, err
	}
	if rt.Deployment, err = keyspace.NewDeployment(cfg.Deployment); err != nil {
		rt.Close()
		return nil, err
	}
	if opts.FollowActive {
		if rt.Config.Namespace, err = namespace.ActiveNamespace(ctx, rt.Redis, rt.Deployment, cfg.Namespace); err != nil {
			rt.Close()
			return nil, err
		}
	}
	if rt.Keys, err = keyspace.New(rt.Config.Namespace, cfg.Shards); err != nil {
		rt.Close()
		return nil, err
	}
	if err := namespace.Register(ctx, rt.Redis, rt.Deployment, rt.Keys.Namespace()); err != nil {
		rt.Close()
		return nil, err
	}
	if yaml, ok, err := namespace.StoredPolicy(ctx, rt.Redis, rt.Keys); err != nil {
		rt.Close()
		return nil, err
	} else if ok {
		if rt.Policy, err = scoring.ParsePolicy(yaml); err != nil {
			rt.Close()
			return nil, fmt.Errorf("policy stored for namespace %s: %w", rt.Keys.Namespace(), err)
		}
	}
	rt.Ops.AddCheck("redis", func(ctx context.Context) error { return rt.Redis.Ping(ctx).Err() })
	reg, err := Registry(cfg)
	if err != nil {
		rt.Close()
		return nil, err
	}
	if err := waitFor(ctx, "schema registry", func(ctx context.Context) error {
		c, err := codec.New(ctx, reg)
		rt.Codec = c
		return err
	}); err != nil {
		rt.Close()
		return nil, err
	}
	if rt.Admin == nil {
		if rt.Admin, err = stream.NewAdmin(cfg.KafkaBrokers, cfg.KafkaSecurity, log); err != nil {
			rt.Close()
			return nil, err
		}
		rt.ownsAdmin = true
	}
	if err := waitFor(ctx, "kafka", func(ctx context.Context) error { return rt.EnsureTopics(ctx) }); err != nil {
		rt.Close()
		return nil, err
	}
	rt.Ops.AddCheck("kafka", func(ctx context.Context) error {
		_, err := rt.Admin.PartitionCount(ctx, rt.Topic(event.TopicPurchases))
		return err
	})
	// A dead-letter topic allowed larger records than the broker's default must be able to
	// take them; the other topics then need a matching message.max.bytes (README).
	batchBytes := max(stream.DefaultBatchBytes, cfg.DeadLetterMaxRecordBytes+1<<10)
	if rt.Producer, err = stream.NewProducer(stream.ProducerConfig{Brokers: cfg.KafkaBrokers, Security: cfg.KafkaSecurity,
		BatchBytes: batchBytes, Compression: cfg.KafkaCompression}, log); err != nil {
		rt.Close()
		return nil, err
	}
	if err := rt.Ops.Registry.Register(rt.Producer.Requests()); err != nil {
		rt.Close()
		return nil, fmt.Errorf("registering the producer's metrics: %w", err)
	}

	return rt, nil
}

func loadPolicy(path string) (*scoring.Policy, error) {
	if path == "" {
		return scoring.DefaultPolicy(), nil
	}
	p, err := scoring.LoadPolicy(path)
	if err != nil {
		return nil, fmt.Errorf("POLICY_FILE: %w", err)
	}
	return p, nil
}

// waitFor retries a start-up step for up to a minute: in a fresh docker-compose stack the
// broker may come up after the services.
func waitFor(ctx context.Context, what string, step func(context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := step(sctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("connecting to %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// EnsureTopics creates every topic of the pipeline that is missing, with the retention the
// configuration gives its role (KAFKA_INPUT_RETENTION, KAFKA_OUTPUT_RETENTION).
func (rt *Runtime) EnsureTopics(ctx context.Context) error {
	var specs []stream.TopicSpec
	for _, s := range event.Streams() {
		specs = append(specs, rt.Config.TopicSpec(rt.Topic(s.Topic), s.Role))
	}
	return rt.Admin.EnsureTopics(ctx, specs...)
}

// warnProducerTime logs a warning when a producer's clock can stamp an input topic's records
// further ahead of the broker's than stream.DefaultMaxTimestampAhead (a topic created before
// the services bounded it, or by someone else): validation takes a record's timestamp as
// "now", so a producer whose clock runs ahead could move customers' clocks into the future
// past the skew check. The service still starts; `loyaltyctl status` flags the topic too.
func (rt *Runtime) warnProducerTime(ctx context.Context, topic string) {
	if s, ok := event.StreamOfTopic(rt.Logical(topic)); !ok || s.Role != event.RoleInput {
		return
	}
	if err := rt.Admin.CheckProducerClock(ctx, topic, stream.DefaultMaxTimestampAhead); err != nil {
		rt.Log.Warn("input topic does not bound producers' timestamps; validation's future-skew check trusts their clocks",
			zap.String("topic", topic), zap.Error(err))
	}
}

// Close releases connections.
func (rt *Runtime) Close() {
	if rt.Producer != nil {
		_ = rt.Producer.Close()
	}
	if rt.ownsAdmin {
		_ = rt.Admin.Close()
	}
	if rt.Redis != nil {
		_ = rt.Redis.Close()
	}
}

// Registerer returns the metrics registerer of one service of the process: every metric
// carries a service label, so several services can share one process (the demo, tests).
func (rt *Runtime) Registerer(service string) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{"service": service}, rt.Ops.Registry)
}

// Watermarks returns the namespace's watermark tracker.
func (rt *Runtime) Watermarks(ctx context.Context) (*watermark.Tracker, error) {
	return watermark.NewTracker(ctx, rt.Redis, rt.Keys.Watermarks(), rt.Policy.AllowedLateness)
}

// KPIs reads the namespace's KPI counters and which days of them are final.
func (rt *Runtime) KPIs(ctx context.Context) (pipeline.KPISnapshot, error) {
	store, err := state.New(ctx, rt.Redis, rt.Keys, nil)
	if err != nil {
		return pipeline.KPISnapshot{}, err
	}
	wm, err := rt.Watermarks(ctx)
	if err != nil {
		return pipeline.KPISnapshot{}, err
	}
	return pipeline.ReadKPIs(ctx, store, wm, rt.Policy)
}

// scoringParts builds what applies scores to the namespace: the store, the watermark tracker
// and a scorer with the runtime's policy.
func (rt *Runtime) scoringParts(ctx context.Context, reg prometheus.Registerer) (*state.Store, *watermark.Tracker, *pipeline.Scorer, error) {
	store, err := state.New(ctx, rt.Redis, rt.Keys, state.NewMetrics(reg))
	if err != nil {
		return nil, nil, nil, err
	}
	wm, err := rt.Watermarks(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	scorer := pipeline.NewScorer(rt.Policy, rt.Codec, rt.Replay)
	if err := rt.cutpointWatch(scorer).Load(ctx); err != nil {
		return nil, nil, nil, err
	}
	return store, wm, scorer, nil
}

// cutpointWatch keeps scorer under the namespace's sealed cut points.
func (rt *Runtime) cutpointWatch(scorer *pipeline.Scorer) pipeline.CutpointWatch {
	return pipeline.CutpointWatch{Redis: rt.Redis, Keys: rt.Keys, Scorer: scorer, Log: rt.Log}
}

// ConsumerConfig configures one consumer service.
type ConsumerConfig struct {
	Service string
	Topics  []string
	GroupID string
	// StartFromLatest starts a new group at the end of its topics.
	StartFromLatest bool
}

// RunConsumer runs a consumer service (purchases, logins or feedback) until ctx ends.
func RunConsumer(ctx context.Context, rt *Runtime, cfg ConsumerConfig) error {
	reg := rt.Registerer(cfg.Service)
	store, wm, scorer, err := rt.scoringParts(ctx, reg)
	if err != nil {
		return err
	}
	group := cfg.GroupID
	if group == "" {
		group = "loyalty-" + rt.Keys.Namespace() + "-" + cfg.Service
	}
	topics := make([]string, len(cfg.Topics))
	for i, t := range cfg.Topics {
		topics[i] = rt.Topic(t)
	}
	for _, t := range topics {
		rt.warnProducerTime(ctx, t)
	}
	if n, err := rt.RestoreSuppression(ctx); err != nil {
		return err
	} else if n > 0 {
		rt.Log.Info("suppression list restored from the erasures topic", zap.Int("erasures", n))
	}
	required := rt.nonEmptyInputPartitions()
	kafkaCfg := stream.ConsumerConfig{Brokers: rt.Config.KafkaBrokers, GroupID: group, Topics: topics,
		BatchSize: rt.Config.BatchSize, Linger: rt.Config.Linger, CommitInterval: rt.Config.CommitInterval,
		Security: rt.Config.KafkaSecurity, StartFromLatest: cfg.StartFromLatest}
	if rt.Config.AlignmentLead > 0 {
		kafkaCfg.Pacer = &pipeline.Pacer{Watermarks: wm, Required: required, Topics: topics, Lead: rt.Config.AlignmentLead,
			EventTime: pipeline.InputTime(ctx, rt.Codec), Gate: scorer.Gate}
	}
	return pipeline.Consumer{
		Kafka: kafkaCfg,
		Processor: &pipeline.Processor{Scorer: scorer, Store: store, Watermarks: wm, Required: required,
			Suppressor: namespace.NewSuppressor(rt.Redis, rt.Deployment), Now: rt.now, Outbox: rt.outboxBound(reg)},
		Heartbeat: &pipeline.Heartbeat{Admin: rt.Admin, Watermarks: wm, Group: group, Topics: topics,
			Every: time.Second, Now: rt.now, Log: rt.Log},
		Decoder: rt.Codec,
		Logical: rt.Logical,
		DeadLetters: &stream.DeadLetterWriter{Producer: rt.Producer, Encoder: rt.Codec, Service: cfg.Service,
			Topic: rt.Topic(event.TopicDeadLetter), MaxRecordBytes: rt.Config.DeadLetterMaxRecordBytes},
		Metrics:   stream.NewMetrics(reg),
		Cutpoints: rt.cutpointWatch(scorer),
		Log:       rt.Log,
	}.Run(ctx)
}

// RunRelay runs the outbox relay until ctx ends. topicFor maps logical to physical output
// topics (nil: rt.Topic).
func RunRelay(ctx context.Context, rt *Runtime, topicFor func(string) string) error {
	if topicFor == nil {
		topicFor = rt.Topic
	}
	metrics := relay.NewMetrics(rt.Registerer("relay"))
	r, err := relay.New(ctx, relay.Config{TopicFor: topicFor, DeadLetter: rt.relayDeadLetters(topicFor)}, rt.Redis, rt.Keys, rt.Producer, metrics, rt.Log)
	if err != nil {
		return err
	}
	var tasks supervise.Group
	tasks.Add(r.Run, func(ctx context.Context) error { return drainRetired(ctx, rt, topicFor, metrics) })
	return tasks.Run(ctx)
}

// relayDeadLetters is where a relay sends the outbox entries it cannot read: the dead-letter
// topic topicFor names, or nowhere when it names none (a relay that publishes nothing).
func (rt *Runtime) relayDeadLetters(topicFor func(string) string) stream.DeadLetterSink {
	topic := topicFor(event.TopicDeadLetter)
	if topic == "" {
		return dropUnreadable{}
	}
	return &stream.DeadLetterWriter{Producer: rt.Producer, Encoder: rt.Codec, Service: "relay", Topic: topic,
		MaxRecordBytes: rt.Config.DeadLetterMaxRecordBytes}
}

// dropUnreadable is the dead-letter sink of a relay whose topics map to none: it drops the
// unreadable entries as the relay drops the readable ones.
type dropUnreadable struct{}

func (dropUnreadable) DeadLetter(context.Context, []stream.Rejection) error { return nil }

// RetiredIdle is how long a retired namespace's outboxes must stay empty before its relay
// hand-over ends: longer than its services take to notice a promote (5 s) and drain.
var RetiredIdle = time.Minute

// drainRetired publishes, while rt's namespace is the active one, what namespaces retired by
// a promote left in their outboxes (the services on the old namespace stop a few seconds
// after the promote, in any order, so the last derived events and action records they wrote
// would otherwise never be published), and forgets each once it stayed empty for
// RetiredIdle. It checks every 5 seconds.
func drainRetired(ctx context.Context, rt *Runtime, topicFor func(string) string, metrics *relay.Metrics) error {
	var (
		mu       sync.Mutex
		draining = map[string]bool{}
		wg       sync.WaitGroup
	)
	defer wg.Wait()
	check := func() {
		active, err := rt.Redis.Get(ctx, rt.Deployment.Active()).Result()
		if err != nil || active != rt.Keys.Namespace() {
			return // never promoted (nothing retired), or not the live namespace
		}
		retired, err := namespace.Retired(ctx, rt.Redis, rt.Deployment)
		if err != nil {
			rt.Log.Warn("listing retired namespaces", zap.Error(err))
			return
		}
		for _, ns := range retired {
			mu.Lock()
			busy := draining[ns]
			draining[ns] = true
			mu.Unlock()
			if busy || ns == active {
				continue
			}
			keys, err := keyspace.New(ns, rt.Keys.Shards())
			if err != nil {
				rt.Log.Warn("a retired namespace with an invalid name", zap.String("namespace", ns), zap.Error(err))
				continue
			}
			log := rt.Log.With(zap.String("retired_namespace", ns))
			r, err := relay.New(ctx, relay.Config{TopicFor: topicFor, DeadLetter: rt.relayDeadLetters(topicFor)}, rt.Redis, keys, rt.Producer, metrics, log)
			if err != nil {
				log.Warn("starting the hand-over relay", zap.Error(err))
				mu.Lock()
				delete(draining, ns)
				mu.Unlock()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.Drain(ctx, RetiredIdle); err != nil || ctx.Err() != nil {
					mu.Lock()
					delete(draining, ns)
					mu.Unlock()
					return
				}
				if err := namespace.Forget(ctx, rt.Redis, rt.Deployment, ns); err != nil {
					log.Warn("forgetting a drained namespace", zap.Error(err))
				}
				log.Info("published what the retired namespace left in its outboxes")
			}()
		}
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		check()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// RunSweeper runs the inactivity sweeper and the cut-point deriver. Their clock waits until
// every input partition that holds records has reported to the watermark.
func RunSweeper(ctx context.Context, rt *Runtime) error {
	return RunSweeperWith(ctx, rt, rt.nonEmptyInputPartitions())
}

// nonEmptyInputPartitions lists the watermark fields of the input partitions holding records,
// re-reading Kafka at most every 10 seconds.
func (rt *Runtime) nonEmptyInputPartitions() func(ctx context.Context) ([]string, error) {
	var (
		mu      sync.Mutex
		cached  []string
		fetched time.Time
	)
	return func(ctx context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(fetched) < 10*time.Second {
			return cached, nil
		}
		out, err := replay.NonEmptyInputPartitions(ctx, rt.Admin, replay.Topics{Suffix: rt.TopicSuffix})
		if err != nil {
			return nil, err
		}
		cached, fetched = out, time.Now()
		return out, nil
	}
}

// outboxBound is the bound of the namespace's outboxes for one writing service, its depth
// gauge registered on reg.
func (rt *Runtime) outboxBound(reg prometheus.Registerer) *pipeline.OutboxBound {
	return &pipeline.OutboxBound{Redis: rt.Redis, Keys: rt.Keys, Max: int64(rt.Config.OutboxMax),
		Depth: pipeline.NewOutboxDepthGauge(reg)}
}

// RunSweeperWith is RunSweeper with the list of partitions the clock waits for (nil: none).
func RunSweeperWith(ctx context.Context, rt *Runtime, required func(context.Context) ([]string, error)) error {
	reg := rt.Registerer("sweeper")
	store, wm, scorer, err := rt.scoringParts(ctx, reg)
	if err != nil {
		return err
	}
	sw, err := pipeline.NewSweeper(ctx, pipeline.SweeperConfig{Required: required, Now: rt.now, Outbox: rt.outboxBound(reg),
		BacklogLag: backlogLag(rt.Config.SweeperBacklogLag)},
		rt.Redis, store, scorer, wm, reg, rt.Log)
	if err != nil {
		return err
	}
	deriver := pipeline.NewCutpointDeriver(pipeline.CutpointDeriver{Redis: rt.Redis, Store: store, Watermarks: wm,
		Required: required, Policy: rt.Policy, Log: rt.Log}, reg)
	kpis := pipeline.NewKPIExporter(&pipeline.KPIExporter{Store: store, Watermarks: wm, Policy: rt.Policy, Log: rt.Log}, reg)
	var tasks supervise.Group
	tasks.Add(sw.Run, deriver.Run, rt.cutpointWatch(scorer).Run, kpis.Run)
	return tasks.Run(ctx)
}

// Binary describes one service binary for Main.
type Binary struct {
	// Name is the service name (logs, metrics, usage).
	Name string
	// Summary is the first paragraph of the usage text.
	Summary string
	// HTTPDefault is the default ops address (HTTP_ADDR).
	HTTPDefault string
	// Vars are the binary's environment variables beyond config.Vars, for the usage text.
	Vars []config.Var
	// Configure reads the binary's own settings before anything starts (optional); an error
	// exits 2 like a bad common variable.
	Configure func(config.Env) error
	// Run runs the service until ctx ends.
	Run func(ctx context.Context, rt *Runtime) error
}

// Main is the whole of a service's main: the command line (-h/--help prints the usage text
// and exits 0; any other argument exits 2), configuration from the environment, the runtime,
// the ops server, run until SIGINT/SIGTERM, exit code.
func Main(b Binary) int {
	vars := append(config.Vars(b.HTTPDefault), b.Vars...)
	if code, exit := config.CheckArgs(os.Args[1:], b.Name, b.Summary, vars, os.Stdout, os.Stderr); exit {
		return code
	}
	service, httpDefault := b.Name, b.HTTPDefault
	cfg, err := config.Load(config.FromOS(), httpDefault)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: configuration: %v\n", service, err)
		return 2
	}
	if b.Configure != nil {
		if err := b.Configure(config.FromOS()); err != nil {
			fmt.Fprintf(os.Stderr, "%s: configuration: %v\n", service, err)
			return 2
		}
	}
	log, err := cfg.Logger(service)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: logger: %v\n", service, err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	gcsettings.Apply(gcsettings.Settings{GCPercent: cfg.GCPercent, MemoryLimitRatio: cfg.MemoryLimitRatio}, log)
	redisconn.RouteLogs(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opsServer := ops.NewServer(log)
	opsServer.Profiling = cfg.Profiling
	if err := opsServer.RequireToken(cfg.OpsToken); err != nil { // config.Load validated it
		log.Error("starting", zap.Error(err))
		return 2
	}
	rt, err := NewRuntime(ctx, cfg, log, Options{Ops: opsServer, FollowActive: true})
	if err != nil {
		log.Error("starting", zap.Error(err))
		return 1
	}
	defer rt.Close()
	log.Info("started", zap.Strings("kafka", cfg.KafkaBrokers), zap.Strings("redis", cfg.Redis.Addrs),
		zap.String("namespace", rt.Keys.Namespace()), zap.String("http", cfg.HTTPAddr))
	var tasks supervise.Group
	tasks.Add(func(ctx context.Context) error { return b.Run(ctx, rt) },
		func(ctx context.Context) error { return opsServer.Serve(ctx, cfg.HTTPAddr) },
		func(ctx context.Context) error {
			return namespace.WatchActive(ctx, rt.Redis, rt.Deployment, rt.Keys.Namespace(), cfg.Namespace, 5*time.Second)
		})
	err = tasks.Run(ctx)
	if errors.Is(err, namespace.ErrPromoted) {
		log.Info("stopping for a restart on the promoted namespace", zap.Error(err))
		return namespace.ExitPromoted
	}
	if err != nil {
		log.Error("stopped", zap.Error(err))
		return 1
	}
	log.Info("stopped")
	return 0
}

// RunNotifier runs the notifier service until ctx ends.
func RunNotifier(ctx context.Context, rt *Runtime, cfg notifier.Config) error {
	return notifier.Run(ctx, notifier.Deps{
		Redis: rt.Redis, Keys: rt.Keys, Deployment: rt.Deployment, Codec: rt.Codec, Producer: rt.Producer, Admin: rt.Admin, Policy: rt.Policy,
		DeadLetterMaxRecordBytes: rt.Config.DeadLetterMaxRecordBytes,
		Kafka: stream.ConsumerConfig{Brokers: rt.Config.KafkaBrokers, Security: rt.Config.KafkaSecurity,
			BatchSize: rt.Config.BatchSize, Linger: rt.Config.Linger},
		Topic: rt.Topic, Logical: rt.Logical, Registerer: rt.Registerer(notifier.Service), Log: rt.Log,
	}, cfg)
}

// backlogLag maps SWEEPER_BACKLOG_LAG, where 0 turns the backlog clock off, onto
// pipeline.SweeperConfig.BacklogLag, where off is negative.
func backlogLag(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
