// Package replay rebuilds customer state from the input topics into a fresh Redis namespace,
// for backfills and for trying a new policy on history without touching what live customers
// see. It reads a time range of the three input topics (start offsets resolved by timestamp
// and committed to the replay's own consumer group, which also records its progress so an
// interrupted replay resumes), merges them in event-time order, and applies them through the
// same pipeline the live services use. Derived events carry the replay marker and go to
// shadow topics ("<topic>.replay.<namespace>") or nowhere.
package replay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/relay"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/supervise"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// Outputs says where a replay's derived events go.
const (
	OutputsShadow = "shadow"
	OutputsNone   = "none"
)

// Config configures one replay.
type Config struct {
	Namespace string
	From      time.Time
	// To bounds the range (exclusive); zero replays up to the end offsets of when the replay
	// first started, and then the replay counts as caught up (deadlines fire up to now, as
	// they do live).
	To time.Time
	// PolicyYAML is the policy to replay with; nil uses the live namespace's.
	PolicyYAML []byte
	Outputs    string
	// BatchSize is the most merged records handled as one batch (0: stream.DefaultBatchSize,
	// the services' batch).
	BatchSize int
	// Progress receives a progress line every second; nil disables it.
	Progress io.Writer
}

// Validate reports the first problem, naming the flag.
func (c Config) Validate() error {
	switch {
	case c.Namespace == "":
		return errors.New("--namespace: required")
	case c.Outputs != OutputsShadow && c.Outputs != OutputsNone:
		return fmt.Errorf("--outputs %q: want shadow or none", c.Outputs)
	case !c.To.IsZero() && !c.To.After(c.From):
		return errors.New("--to: must be after --from")
	}
	return nil
}

// Topics names the physical topics of a deployment: the logical name and the deployment's
// suffix (LOYALTY_TOPIC_SUFFIX).
type Topics struct{ Suffix string }

// Physical returns the physical name of a logical topic.
func (t Topics) Physical(logical string) string { return logical + t.Suffix }

// Logical returns the logical name of a physical topic.
func (t Topics) Logical(physical string) string { return strings.TrimSuffix(physical, t.Suffix) }

// Namespace is one namespace's data: the Redis that holds it and its key names.
type Namespace struct {
	Redis redisconn.Client
	Keys  keyspace.Keyspace
}

// Target is what a replay writes with: the replay namespace, the Kafka admin that reads the
// input range and holds the replay's position, the producer and codec of the derived events,
// and the policy to score with (replaced by the replay's stored policy and cut points).
type Target struct {
	Namespace
	Deployment keyspace.Deployment
	Admin      *stream.Admin
	Producer   *stream.Producer
	Codec      *codec.Codec
	Policy     *scoring.Policy
	Topics     Topics
	// Partitions, ReplicationFactor and Retention are those of the shadow topics the replay
	// creates.
	Partitions        int
	ReplicationFactor int
	Retention         time.Duration
	Log               *zap.Logger
}

// watermarks returns the namespace's watermark tracker under the target's policy.
func (t *Target) watermarks(ctx context.Context) (*watermark.Tracker, error) {
	return watermark.NewTracker(ctx, t.Redis, t.Keys.Watermarks(), t.Policy.AllowedLateness)
}

// ShadowTopic is where a replay into namespace ns publishes what live publishes on topic.
func ShadowTopic(topic, ns string) string { return topic + ".replay." + ns }

// Group is the consumer group that holds a replay's position.
func Group(ns string) string { return "loyalty-replay-" + ns }

// Metadata is what a replay records about itself in its namespace, to resume and to diff.
type Metadata struct {
	From       time.Time                 `json:"from"`
	To         time.Time                 `json:"to"`
	Outputs    string                    `json:"outputs"`
	PolicyHash string                    `json:"policy_hash"`
	Live       string                    `json:"live_namespace"`
	Ends       map[string]stream.Offsets `json:"ends"`
	Status     string                    `json:"status"` // running, done
	Started    time.Time                 `json:"started"`
	Finished   time.Time                 `json:"finished,omitzero"`
}

// LoadMetadata returns a namespace's replay metadata, if it is a replay namespace.
func LoadMetadata(ctx context.Context, ns Namespace) (Metadata, bool, error) {
	b, ok, err := namespace.ReplayMetadata(ctx, ns.Redis, ns.Keys)
	if err != nil || !ok {
		return Metadata{}, false, err
	}
	var m Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return Metadata{}, false, fmt.Errorf("decoding replay metadata: %w", err)
	}
	return m, true, nil
}

func saveMetadata(ctx context.Context, rt Namespace, m Metadata) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return namespace.StoreReplayMetadata(ctx, rt.Redis, rt.Keys, b)
}

// Summary is what a finished replay reports.
type Summary struct {
	Namespace string        `json:"namespace"`
	Events    int64         `json:"events"`
	Rejected  int64         `json:"rejected"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	PerSecond float64       `json:"events_per_second"`
	Resumed   bool          `json:"resumed"`
	// Where Elapsed went, as the merge saw it: applying the merged records (reading, scoring
	// and writing them); waiting at cut-point boundaries, for the namespace's sweeper to
	// evaluate every customer through the boundary and its cut points (and, at a refit
	// boundary, its churn model) to be derived and sealed; and draining after the last
	// record (the boundaries and deadlines left up to the end of the range, the outbox).
	Applying time.Duration `json:"applying_ns"`
	Waiting  time.Duration `json:"waiting_at_boundaries_ns"`
	Draining time.Duration `json:"draining_ns"`
	// Evaluations is how many due customers the replay's sweeper evaluated; Refits how many
	// churn models its cut-point deriver fitted, in Fitting (part of the waits and the drain:
	// a boundary is not sealed before its model).
	Evaluations int64         `json:"sweeper_evaluations"`
	Refits      int           `json:"churn_model_refits"`
	Fitting     time.Duration `json:"fitting_ns"`
}

// WriteBreakdown writes where the replay's time went, one line under its summary.
func (s Summary) WriteBreakdown(w io.Writer) error {
	round := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	_, err := fmt.Fprintf(w, "  applying records %s, waiting at cut-point boundaries %s, draining %s; %d customer evaluations by the sweeper, %d churn models fitted in %s\n",
		round(s.Applying), round(s.Waiting), round(s.Draining), s.Evaluations, s.Refits, round(s.Fitting))
	return err
}

// addWork reads the replay's sweeper evaluations and model fits from its registry.
func (s *Summary) addWork(reg prometheus.Gatherer) error {
	families, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("reading the replay's sweeper and deriver metrics: %w", err)
	}
	for _, f := range families {
		if len(f.GetMetric()) != 1 {
			continue
		}
		m := f.GetMetric()[0]
		switch f.GetName() {
		case pipeline.MetricSweeperEvaluations:
			s.Evaluations = int64(m.GetCounter().GetValue())
		case pipeline.MetricChurnModelFitSeconds:
			h := m.GetHistogram()
			s.Refits = int(h.GetSampleCount())
			s.Fitting = time.Duration(h.GetSampleSum() * float64(time.Second))
		}
	}
	return nil
}

// CheckNotLive reports an error when the replay would write into the live namespace.
func (c Config) CheckNotLive(live string) error {
	if live == c.Namespace {
		return fmt.Errorf("--namespace %s is the live namespace", c.Namespace)
	}
	return nil
}

// Run replays into cfg.Namespace (target) from the live namespace (live: its policy and cut
// points) and returns when the range is applied and every derived event is published (or
// dropped), or when ctx ends (the replay can then be resumed by running it again with the
// same arguments).
func Run(ctx context.Context, live Namespace, rt Target, cfg Config) (Summary, error) {
	if cfg.BatchSize == 0 {
		cfg.BatchSize = stream.DefaultBatchSize
	}
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	if err := cfg.CheckNotLive(live.Keys.Namespace()); err != nil {
		return Summary{}, err
	}
	if rt.Keys.Namespace() != cfg.Namespace {
		return Summary{}, fmt.Errorf("replay target is namespace %s, not --namespace %s", rt.Keys.Namespace(), cfg.Namespace)
	}

	meta, resumed, err := prepare(ctx, live, &rt, cfg)
	if err != nil {
		return Summary{}, err
	}
	if err := ensureShadowTopics(ctx, rt, cfg); err != nil {
		return Summary{}, err
	}
	start := time.Now()
	sum := Summary{Namespace: cfg.Namespace, Resumed: resumed}
	work := prometheus.NewRegistry()
	err = apply(ctx, &rt, cfg, meta, &sum, work)
	if werr := sum.addWork(work); err == nil {
		err = werr
	}
	sum.Elapsed = time.Since(start)
	if sum.Elapsed > 0 {
		sum.PerSecond = float64(sum.Events) / sum.Elapsed.Seconds()
	}
	if err != nil {
		return sum, err
	}
	meta.Status, meta.Finished = "done", time.Now().UTC()
	return sum, saveMetadata(context.WithoutCancel(ctx), rt.Namespace, meta)
}

// prepare starts a fresh replay (policy, cut points, start offsets committed to the group) or
// checks that a resumed one has the same arguments.
func prepare(ctx context.Context, liveRT Namespace, rt *Target, cfg Config) (Metadata, bool, error) {
	policyYAML := cfg.PolicyYAML
	if policyYAML == nil {
		if y, ok, err := namespace.StoredPolicy(ctx, liveRT.Redis, liveRT.Keys); err != nil {
			return Metadata{}, false, err
		} else if ok {
			policyYAML = y
		}
	}
	hash := sha256.Sum256(policyYAML)
	policyHash := hex.EncodeToString(hash[:8])
	if existing, ok, err := LoadMetadata(ctx, rt.Namespace); err != nil {
		return Metadata{}, false, err
	} else if ok {
		if !existing.From.Equal(cfg.From) || !existing.To.Equal(cfg.To) || existing.Outputs != cfg.Outputs || existing.PolicyHash != policyHash {
			return Metadata{}, false, fmt.Errorf("namespace %s holds a replay with other arguments (from %s, to %s, outputs %s); drop it first",
				cfg.Namespace, existing.From.Format(time.RFC3339), existing.To.Format(time.RFC3339), existing.Outputs)
		}
		return existing, true, nil
	}
	if found, err := state.HasCustomers(ctx, rt.Redis, rt.Keys); err != nil {
		return Metadata{}, false, err
	} else if found {
		return Metadata{}, false, fmt.Errorf("namespace %s already holds customer state and is not a replay; choose a fresh namespace", cfg.Namespace)
	}
	if err := checkRetained(ctx, rt, cfg.From); err != nil {
		return Metadata{}, false, err
	}
	if policyYAML != nil {
		p, err := scoring.ParsePolicy(policyYAML)
		if err != nil {
			return Metadata{}, false, fmt.Errorf("--policy: %w", err)
		}
		if err := namespace.StorePolicy(ctx, rt.Redis, rt.Keys, policyYAML); err != nil {
			return Metadata{}, false, err
		}
		rt.Policy = p
	}
	meta := Metadata{From: cfg.From, To: cfg.To, Outputs: cfg.Outputs, PolicyHash: policyHash, Live: liveRT.Keys.Namespace(),
		Ends: map[string]stream.Offsets{}, Status: "running", Started: time.Now().UTC()}
	for _, logical := range event.InputTopics() {
		topic := rt.Topics.Physical(logical)
		starts, err := rt.Admin.OffsetsForTime(ctx, topic, cfg.From)
		if err != nil {
			return Metadata{}, false, err
		}
		var ends stream.Offsets
		if cfg.To.IsZero() {
			ends, err = rt.Admin.EndOffsets(ctx, topic)
		} else {
			ends, err = rt.Admin.OffsetsForTime(ctx, topic, cfg.To)
		}
		if err != nil {
			return Metadata{}, false, err
		}
		meta.Ends[logical] = ends
		if err := rt.Admin.CommitGroupOffsets(ctx, Group(cfg.Namespace), topic, starts); err != nil {
			return Metadata{}, false, err
		}
	}
	return meta, false, saveMetadata(ctx, rt.Namespace, meta)
}

// checkRetained fails when an input partition no longer holds every record from from on
// (stream.Admin.CheckRetained: records deleted from its start, the earliest left later than
// from), naming each such partition, its earliest retained time and the topic's retention:
// the replay would silently rebuild state from part of the history. A topic that started
// after from, and so never had older records, passes.
func checkRetained(ctx context.Context, rt *Target, from time.Time) error {
	var missing []error
	for _, logical := range event.InputTopics() {
		err := rt.Admin.CheckRetained(ctx, rt.Topics.Physical(logical), from)
		var nr *stream.NotRetainedError
		switch {
		case errors.As(err, &nr):
			missing = append(missing, err)
		case err != nil:
			return fmt.Errorf("checking that the input topics still hold --from %s: %w", from.UTC().Format(time.RFC3339), err)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("--from %s is no longer on the input topics, so the replay would miss history; replay --from the latest of the earliest retained times below, or later:\n%w",
			from.UTC().Format(time.RFC3339), errors.Join(missing...))
	}
	return nil
}

func ensureShadowTopics(ctx context.Context, rt Target, cfg Config) error {
	if cfg.Outputs != OutputsShadow {
		return nil
	}
	var specs []stream.TopicSpec
	for _, name := range shadowTopics(rt.Topics, cfg.Namespace) {
		specs = append(specs, stream.TopicSpec{Name: name, Partitions: rt.Partitions, ReplicationFactor: rt.ReplicationFactor, Retention: rt.Retention})
	}
	return rt.Admin.EnsureTopics(ctx, specs...)
}

// countingSink drops rejections of a replay without outputs, counting them.
type countingSink struct{ n *int64 }

func (s countingSink) DeadLetter(_ context.Context, r []stream.Rejection) error {
	atomic.AddInt64(s.n, int64(len(r))) // the merge's and the relay's (unreadable outbox entries)
	return nil
}

// apply merges the range into the namespace, running the relay and the sweeper beside it,
// and waits until everything derived is published.
func apply(ctx context.Context, rt *Target, cfg Config, meta Metadata, sum *Summary, work prometheus.Registerer) error {
	group := Group(cfg.Namespace)
	var sources []*source
	readCtx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	var readers sync.WaitGroup
	readErr := make(chan error, 64)
	var total int64
	for _, logical := range event.InputTopics() {
		topic := rt.Topics.Physical(logical)
		positions, err := rt.Admin.GroupOffsets(ctx, group, topic)
		if err != nil {
			return err
		}
		ends := meta.Ends[logical]
		parts := make([]int, 0, len(ends))
		for p := range ends {
			parts = append(parts, p)
		}
		sort.Ints(parts)
		for _, p := range parts {
			s := &source{topic: topic, partition: p, next: positions[p], end: ends[p], ch: make(chan stream.Message, 2000)}
			sources = append(sources, s)
			if s.end > s.next {
				total += s.end - s.next
			}
			readers.Add(1)
			go func() {
				defer readers.Done()
				defer close(s.ch)
				if err := rt.Admin.ReadRange(readCtx, s.topic, s.partition, s.next, s.end, s.ch); err != nil && readCtx.Err() == nil {
					readErr <- err
				}
			}()
		}
	}
	defer readers.Wait()

	store, err := state.New(ctx, rt.Redis, rt.Keys, nil)
	if err != nil {
		return err
	}
	store.Concurrency = state.PipelinedConcurrency // ApplyCompute is safe for it
	wm, err := rt.watermarks(ctx)
	if err != nil {
		return err
	}
	validator, err := event.NewValidator(event.DefaultLimits())
	if err != nil {
		return err
	}
	// The replay derives its own cut points at the same boundaries as live, from the same
	// history (the sweeper below seals them); the merge follows them.
	scorer := pipeline.NewScorer(rt.Policy, rt.Codec, true)
	watch := pipeline.CutpointWatch{Redis: rt.Redis, Keys: rt.Keys, Scorer: scorer, Log: rt.Log, Every: replayPoll}
	if err := watch.Load(ctx); err != nil {
		return err
	}
	processor := &pipeline.Processor{Scorer: scorer, Store: store, Watermarks: wm, Suppressor: namespace.NewSuppressor(rt.Redis, rt.Deployment)}
	// The sweeper's clock, and the processor's before it closes a customer's days, wait for
	// every partition with records left in the range (those done before a resume have
	// reported already).
	var sink stream.DeadLetterSink = countingSink{n: &sum.Rejected}
	topicFor := func(string) string { return "" }
	if cfg.Outputs == OutputsShadow {
		sink = &stream.DeadLetterWriter{Producer: rt.Producer, Encoder: rt.Codec, Service: "replay", Topic: ShadowTopic(rt.Topics.Physical(event.TopicDeadLetter), cfg.Namespace)}
		topicFor = func(logical string) string { return ShadowTopic(rt.Topics.Physical(logical), cfg.Namespace) }
	}
	handler := ingest.Guard(ingest.Handler(rt.Codec, validator, rt.Topics.Logical, processor), nil, sink)

	var requiredFields []string
	for _, s := range sources {
		if s.end > s.next {
			requiredFields = append(requiredFields, watermark.Field(s.topic, s.partition))
		}
	}
	required := func(context.Context) ([]string, error) { return requiredFields, nil }
	processor.Required = required
	// The relay and the sweeper of the namespace run beside the merge.
	bgCtx, stopBackground := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bgErr := make(chan error, 3)
	for _, task := range []func(context.Context) error{
		func(ctx context.Context) error { return runRelay(ctx, rt, topicFor, sink) },
		func(ctx context.Context) error { return runSweeper(ctx, rt, required, work) },
		watch.Run,
	} {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := task(bgCtx); err != nil {
				bgErr <- err
			}
		}()
	}
	defer func() { stopBackground(); bg.Wait() }()

	m := &merger{sources: sources, timeOf: pipeline.InputTime(ctx, rt.Codec)}
	progress := newProgress(cfg.Progress, sources, total)
	defer progress.stop()
	caughtUpAtEnd := cfg.To.IsZero()
	merging := time.Now()
	for {
		select {
		case err := <-readErr:
			return err
		case err := <-bgErr:
			return err
		default:
		}
		msgs, err := m.next(ctx, cfg.BatchSize)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			break
		}
		waiting := time.Now()
		err = waitForGate(ctx, scorer, m.timeOf(msgs[0]), bgErr)
		sum.Waiting += time.Since(waiting)
		if err != nil {
			return err
		}
		// The watermark sees a partition as caught up when the replay reaches the end of its
		// range, and only for a replay up to "now": a bounded replay's clock stops at its end.
		for i := range msgs {
			msgs[i].HighWaterMark = 0
			if caughtUpAtEnd {
				msgs[i].HighWaterMark = meta.Ends[rt.Topics.Logical(msgs[i].Topic)][msgs[i].Partition]
			}
		}
		if err := handleWithRetry(ctx, handler, msgs, rt.Log); err != nil {
			return err
		}
		if err := commitPositions(ctx, rt.Admin, group, msgs); err != nil {
			return err
		}
		sum.Events += int64(len(msgs))
		progress.add(msgs)
	}
	draining := time.Now()
	sum.Applying = draining.Sub(merging) - sum.Waiting
	err = drain(ctx, rt, requiredFields, bgErr)
	sum.Draining = time.Since(draining)
	return err
}

// replayPoll is how often a replay's sweeper, cut-point deriver and watches look again when
// they found nothing to do. A replay of a year of history waits at every cut-point boundary
// (about 53) for the sweeper to evaluate every customer through it, the deriver to seal it
// and the merge to see it sealed: at the services' polls (200 ms, 100 ms, 100 ms) that chain
// idles for most of a replay on history with few events per customer. A replay is a batch
// job and its polls are cheap reads.
const replayPoll = 10 * time.Millisecond

// drainQuiet is how long a replay's namespace must stay with nothing due and nothing in its
// outbox before the replay ends: several polls of its sweeper and relay, each of which
// would have shown work they had taken on (a due customer stays due, an outbox entry stays
// in the outbox, until its write or its publication is done).
const drainQuiet = 10 * replayPoll

// waitForGate holds the merge while the next record is further past the cut-point gate than
// a customer's state can keep open (pipeline.Scorer.Gate).
func waitForGate(ctx context.Context, scorer *pipeline.Scorer, next time.Time, bgErr <-chan error) error {
	for {
		gate, lead, ok := scorer.Gate()
		if !ok || !next.After(gate.Add(lead)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-bgErr:
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runRelay runs the namespace's outbox relay, publishing on the topics topicFor names ("":
// nowhere) and sending the entries it cannot read to the replay's dead-letter sink, until
// ctx ends.
func runRelay(ctx context.Context, rt *Target, topicFor func(string) string, deadLetters stream.DeadLetterSink) error {
	r, err := relay.New(ctx, relay.Config{TopicFor: topicFor, DeadLetter: deadLetters}, rt.Redis, rt.Keys, rt.Producer, relay.NewMetrics(nil), rt.Log)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// runSweeper runs the namespace's inactivity sweeper and cut-point deriver, whose clock waits
// for the required partitions, until ctx ends. Its derived events carry the replay
// marker.
func runSweeper(ctx context.Context, rt *Target, required func(context.Context) ([]string, error), reg prometheus.Registerer) error {
	store, err := state.New(ctx, rt.Redis, rt.Keys, state.NewMetrics(nil))
	if err != nil {
		return err
	}
	wm, err := rt.watermarks(ctx)
	if err != nil {
		return err
	}
	scorer := pipeline.NewScorer(rt.Policy, rt.Codec, true)
	sw, err := pipeline.NewSweeper(ctx, pipeline.SweeperConfig{Required: required, Poll: replayPoll}, rt.Redis, store, scorer, wm, reg, rt.Log)
	if err != nil {
		return err
	}
	watch := pipeline.CutpointWatch{Redis: rt.Redis, Keys: rt.Keys, Scorer: scorer, Log: rt.Log, Every: replayPoll}
	if err := watch.Load(ctx); err != nil {
		return err
	}
	deriver := pipeline.NewCutpointDeriver(pipeline.CutpointDeriver{Redis: rt.Redis, Store: store, Watermarks: wm,
		Required: required, Policy: rt.Policy, Log: rt.Log, Poll: replayPoll, FitWorkers: runtime.GOMAXPROCS(0)}, reg)
	var tasks supervise.Group
	tasks.Add(sw.Run, deriver.Run, watch.Run)
	return tasks.Run(ctx)
}

// handleWithRetry retries a failing batch (Redis or Kafka briefly unavailable) until ctx ends.
func handleWithRetry(ctx context.Context, h stream.Handler, msgs []stream.Message, log *zap.Logger) error {
	backoff := 100 * time.Millisecond
	for {
		err := h.HandleBatch(ctx, stream.NewBatch(msgs))
		if err == nil {
			return nil
		}
		log.Warn("replay batch failed; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return fmt.Errorf("replay interrupted: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// commitPositions records the replay's progress in its consumer group.
func commitPositions(ctx context.Context, admin *stream.Admin, group string, msgs []stream.Message) error {
	next := map[string]stream.Offsets{}
	for _, m := range msgs {
		if next[m.Topic] == nil {
			next[m.Topic] = stream.Offsets{}
		}
		if m.Offset+1 > next[m.Topic][m.Partition] {
			next[m.Topic][m.Partition] = m.Offset + 1
		}
	}
	for topic, offs := range next {
		if err := admin.CommitGroupOffsets(ctx, group, topic, offs); err != nil {
			return err
		}
	}
	return nil
}

// drain waits until the sweeper has nothing due and the outbox is empty, and has stayed so
// for drainQuiet.
func drain(ctx context.Context, rt *Target, required []string, bgErr <-chan error) error {
	quietSince := time.Time{}
	for {
		select {
		case err := <-bgErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * replayPoll):
		}
		busy, err := pending(ctx, rt, required)
		if err != nil {
			return err
		}
		if busy {
			quietSince = time.Time{}
			continue
		}
		if quietSince.IsZero() {
			quietSince = time.Now()
		}
		if time.Since(quietSince) > drainQuiet {
			return nil
		}
	}
}

// pending reports whether outbox entries or due deadlines remain.
func pending(ctx context.Context, rt *Target, required []string) (bool, error) {
	clock, ok, err := func() (time.Time, bool, error) {
		wm, err := rt.watermarks(ctx)
		if err != nil {
			return time.Time{}, false, err
		}
		return wm.Clock(ctx, required...)
	}()
	if err != nil {
		return false, err
	}
	if !ok && len(required) > 0 {
		return true, nil // a partition has not reported yet: the sweeper cannot have run
	}
	return state.Pending(ctx, rt.Redis, rt.Keys, clock, ok)
}

// progress prints one status line a second: a bar, events/s, records left per topic, ETA.
type progress struct {
	w     io.Writer
	total int64
	mu    sync.Mutex
	left  map[string]int64 // by physical topic
	done  int64
	start time.Time
	quit  chan struct{}
	wg    sync.WaitGroup
}

func newProgress(w io.Writer, sources []*source, total int64) *progress {
	p := &progress{w: w, total: total, left: map[string]int64{}, start: time.Now(), quit: make(chan struct{})}
	for _, s := range sources {
		p.left[s.topic] += max(s.end-s.next, 0)
	}
	if w == nil {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				p.print(true)
				return
			case <-t.C:
				p.print(false)
			}
		}
	}()
	return p
}

func (p *progress) add(msgs []stream.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += int64(len(msgs))
	for _, m := range msgs {
		p.left[m.Topic]--
	}
}

func (p *progress) stop() {
	close(p.quit)
	p.wg.Wait()
}

func (p *progress) print(final bool) {
	p.mu.Lock()
	done := p.done
	topics := make([]string, 0, len(p.left))
	for t := range p.left {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	parts := make([]string, 0, len(topics))
	for _, t := range topics {
		name := strings.TrimPrefix(t, "loyalty.")
		name = name[:strings.Index(name+".", ".")]
		parts = append(parts, fmt.Sprintf("%s: %d left", name, p.left[t]))
	}
	p.mu.Unlock()
	elapsed := time.Since(p.start).Seconds()
	rate := float64(done) / max(elapsed, 0.001)
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(done)/float64(p.total), 1)
	}
	const width = 24
	filled := int(frac * width)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	eta := "--"
	if rate > 0 && p.total > done {
		eta = time.Duration(float64(p.total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r[%s] %5.1f%% %8.0f events/s  %s  ETA %s   %s", bar, 100*frac, rate, strings.Join(parts, ", "), eta, end)
}
