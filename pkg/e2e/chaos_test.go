package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/e2e"
	"github.com/loyalty-scoring/loyalty/pkg/embedded"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/replay"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// chaosFull selects the full-size chaos run (also CHAOS_FULL=1): ≥ 200,000 events, 20
// kills, two-minute outages. The default is the CI size.
var chaosFull = flag.Bool("chaos.full", os.Getenv("CHAOS_FULL") == "1", "run the chaos suite at full size")

// chaosSize is how big a chaos run is.
type chaosSize struct {
	events int
	kills  int
	outage time.Duration
	// traffic is how long the generated history takes to arrive (its events happen over it).
	traffic time.Duration
	// gap separates the faults.
	gap time.Duration
	// oversize is the number of oversized poison records (1 MiB each).
	oversize int
	// run bounds the run's wall time, traffic included: it must not cross a UTC midnight
	// (awayFromMidnight), so the -timeout (CHAOS_TIMEOUT) must cover twice this plus 6 minutes.
	run time.Duration
}

func sizeOfChaos() chaosSize {
	if *chaosFull {
		return chaosSize{events: 210_000, kills: 20, outage: 2 * time.Minute, traffic: 15 * time.Minute, gap: 15 * time.Second, oversize: 5, run: 45 * time.Minute}
	}
	return chaosSize{events: 5_000, kills: 6, outage: 15 * time.Second, traffic: 50 * time.Second, gap: 2 * time.Second, oversize: 2, run: 10 * time.Minute}
}

// chaosServices are the six services, each killed in turn.
var chaosServices = []string{"purchases", "logins", "feedback", "relay", "sweeper", "notifier"}

// poison is one record the pipeline must refuse.
type poison struct {
	kind  string
	topic string
	key   string
	// codes are the acceptable dead-letter codes (any when empty).
	codes []string
}

// TestChaos runs every service as real processes on a Kafka broker and a redis-server of its
// own, feeds them a generated three-topic history with about 1% poison in it as live traffic,
// and meanwhile SIGKILLs services, restarts the broker and Redis, takes each away for an
// outage, rebalances a consumer group over three instances, promotes a replay, erases
// customers and corrupts stored states. In the end the state must equal a clean replay of the
// same topics, no derived event may be missing, the webhook receiver must have accepted every
// action at most once, every poison record must be dead-lettered or quarantined, and no
// partition may have stalled longer than a retry period outside the faults. Run it with
// `make chaos` (CI size) or `make chaos CHAOS_FULL=1`.
func TestChaos(t *testing.T) {
	size := sizeOfChaos()
	awayFromMidnight(t, size.run)
	wall := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// ---- infrastructure of our own: it gets killed and restarted ----
	script, err := filepath.Abs(filepath.Join("..", "..", "deploy", "local", "kafka", "kafka.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		bins     map[string]string
		buildErr error
		built    = make(chan struct{})
	)
	go func() {
		defer close(built)
		bins, buildErr = e2e.Build(ctx, t.TempDir(), append(slices.Clone(chaosServices), "loyaltyctl")...)
	}()
	// CHAOS_KEEP_DIR=dir keeps the broker's and Redis's data there for a post-mortem (the
	// segments, the AOF), instead of temporary directories removed at the end.
	kdir, rdir := t.TempDir(), t.TempDir()
	if keep := os.Getenv("CHAOS_KEEP_DIR"); keep != "" {
		kdir, rdir = filepath.Join(keep, "kafka"), filepath.Join(keep, "redis")
		_ = os.MkdirAll(rdir, 0o755)
	}
	kafka, err := e2e.StartKafkaNode(ctx, script, kdir)
	if err != nil {
		t.Fatalf("the chaos suite starts a Kafka broker of its own with deploy/local/kafka/kafka.sh "+
			"(Java 17+ and Maven: sudo apt-get install -y default-jre-headless maven): %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("CHAOS_KEEP_DIR") != "" {
			_ = kafka.Stop(context.Background())
			return
		}
		_ = kafka.Clean(context.Background())
	})
	rds, err := embedded.StartPersistentRedis(ctx, rdir)
	if errors.Is(err, embedded.ErrNoRedisServer) {
		t.Fatal("the chaos suite runs a redis-server of its own: sudo apt-get install -y redis-server")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rds.Close() })
	<-built
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	t.Logf("own Kafka at %v, own Redis (AOF) at %s, binaries built [+%s]", kafka.Brokers, rds.Addr, since(wall))

	w := &world{t: t, brokers: kafka.Brokers, redis: rds.Addr, suffix: "." + testinfra.Name("chaos"), logDir: t.TempDir(),
		shards: 16, bins: bins}
	if w.admin, err = stream.NewAdmin(w.brokers, stream.Security{}, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.admin.Close() })
	reg, err := wiring.Registry(registryConfig())
	if err != nil {
		t.Fatal(err)
	}
	if w.codec, err = codec.New(ctx, reg); err != nil {
		t.Fatal(err)
	}
	// The input topics as an operator creates them, allowing records above the consumers'
	// limit (ingest.MaxRecordBytes) so that oversized values reach them and must be refused.
	var specs []stream.TopicSpec
	for _, topic := range event.Topics(event.RoleInput) {
		specs = append(specs, stream.TopicSpec{Name: topic + w.suffix, Partitions: 6, ReplicationFactor: 1,
			MaxTimestampAhead: stream.DefaultMaxTimestampAhead, Config: map[string]string{"max.message.bytes": "4194304"}})
	}
	if err := w.admin.EnsureTopics(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			w.dumpLogs()
		}
	})

	// ---- the webhook receiver ----
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	receiver := &e2e.WebhookReceiver{Secret: []byte(fmt.Sprintf("%x", secret)), FailEvery: 10}
	srv := httptest.NewServer(receiver)
	defer srv.Close()

	// ---- the pipeline under a supervisor ----
	ns0 := testinfra.Name("chaos")
	cluster := &e2e.Cluster{Brokers: w.brokers, Redis: w.redis, Namespace: ns0, Suffix: w.suffix, Bins: bins, LogDir: w.logDir,
		ReadyTimeout: 3 * time.Minute,
		Env: map[string]string{"LOYALTY_SHARDS": fmt.Sprint(w.shards), "BATCH_SIZE": "200",
			"NOTIFIER_WEBHOOK_SECRET": string(receiver.Secret), "NOTIFIER_BACKOFF_BASE": "500ms", "NOTIFIER_BACKOFF_MAX": "5s",
			"NOTIFIER_MAX_ATTEMPTS": "50",
			"NOTIFIER_CHANNEL_CARE": srv.URL + "/care", "NOTIFIER_CHANNEL_WIN_BACK": srv.URL + "/win-back",
			"NOTIFIER_CHANNEL_VIP_WELCOME": srv.URL + "/vip-welcome", "NOTIFIER_CHANNEL_DOWNGRADE_WARNING": srv.URL + "/downgrade-warning"}}
	sup := &e2e.Supervisor{Cluster: cluster}
	t.Cleanup(func() { _ = sup.StopAll(10 * time.Second) })
	for _, s := range chaosServices {
		if _, err := sup.Add(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var active atomic.Value
	active.Store(ns0)
	obs0 := w.observer(ns0)
	monitor := &e2e.LagMonitor{Admin: w.admin, Services: e2e.ConsumerServices(), Topic: obs0.InputTopic, Interval: 500 * time.Millisecond,
		Group: func(svc string) string { return replay.ConsumerGroup(active.Load().(string), svc) }}
	monCtx, stopMonitor := context.WithCancel(ctx)
	monDone := make(chan struct{})
	go func() { defer close(monDone); monitor.Run(monCtx) }()
	t.Logf("six services running in namespace %s [+%s]", ns0, since(wall))

	// ---- live traffic: the history as it happens, with poison in it ----
	start := time.Now().UTC()
	history := e2e.History(e2e.HistoryConfig{Customers: e2e.CustomersFor(size.events, 365), Days: 365,
		End: start.Add(size.traffic), Span: size.traffic, Seed: 11, Prefix: "x"})
	customers := customersOf(history)
	tr := newTraffic(t, w, history, size.oversize)
	trafficDone := make(chan struct{})
	go func() { defer close(trafficDone); tr.run(ctx) }()

	// ---- the faults ----
	ch := &chaos{t: t, w: w, sup: sup, kafka: kafka, redis: rds, ctl: ctlRunner(t, bins["loyaltyctl"], cluster)}
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 2))
	victims := make([]string, size.kills)
	for i := range victims {
		victims[i] = chaosServices[i%len(chaosServices)]
	}
	rng.Shuffle(len(victims), func(i, j int) { victims[i], victims[j] = victims[j], victims[i] })
	third := size.kills / 3
	ch.kills(victims[:third], rng, size.gap)
	ch.rebalance(ctx, "purchases", size.gap)
	ch.fault("redis restart", "redis-server (SIGKILL, AOF)", nil, func() error {
		if err := rds.Kill(); err != nil {
			return err
		}
		return rds.Start(ctx)
	})
	ch.kills(victims[third:2*third], rng, size.gap)
	ch.fault("redis outage", fmt.Sprintf("redis-server down %s", size.outage), nil, func() error {
		if err := rds.Stop(); err != nil {
			return err
		}
		time.Sleep(size.outage)
		return rds.Start(ctx)
	})
	time.Sleep(size.gap)
	ch.fault("broker restart", "kafka (SIGKILL)", nil, func() error {
		if err := kafka.Kill(); err != nil {
			return err
		}
		return kafka.Start(ctx)
	})
	time.Sleep(size.gap)
	ch.fault("kafka outage", fmt.Sprintf("kafka down %s", size.outage), nil, func() error {
		if err := kafka.Stop(ctx); err != nil {
			return err
		}
		time.Sleep(size.outage)
		return kafka.Start(ctx)
	})
	ch.scaleDown("purchases")
	promoted := ch.promote(ctx, &active)
	erased := ch.erase(customers[3], customers[7])
	corrupted := ch.corrupt(ctx, promoted, tr, customers[11], customers[12], customers[13])
	ch.kills(victims[2*third:], rng, size.gap)
	t.Logf("faults done [+%s]", since(wall))

	// ---- the end: everything consumed, evaluated, published and delivered ----
	tr.stop()
	select {
	case <-trafficDone:
	case <-time.After(5 * time.Minute):
		t.Fatalf("the input traffic could not be produced within five minutes of the end of the faults; last error: %v", tr.lastErr.Load())
	}
	obsP := w.observer(promoted)
	if err := obsP.WaitDone(ctx, 10*time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	waitOutboxEmpty(t, obs0)
	waitDelivered(receiver, time.Minute)
	stopMonitor()
	<-monDone
	exits := sup.Exits()
	if err := sup.StopAll(30 * time.Second); err != nil {
		t.Errorf("stopping the services: %v", err)
	}
	t.Logf("pipeline done [+%s]", since(wall))

	// ---- the clean run: a replay of the same topics into a fresh namespace ----
	clean := testinfra.Name("clean")
	ch.ctl("replay", "--from", "2000-01-01", "--namespace", clean, "--outputs", "shadow")
	cleanState, err := w.observer(clean).State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	liveState, err := obsP.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var shadows []string
	for _, topic := range obs0.OutputTopics() {
		shadows = append(shadows, replay.ShadowTopic(topic, clean))
	}
	cleanDerived := readTopics(t, w, shadows...)
	liveDerived := readTopics(t, w, obs0.OutputTopics()...)
	t.Logf("clean replay done [+%s]", since(wall))

	excluded := map[string]bool{}
	for _, c := range append(slices.Clone(erased), corrupted...) {
		excluded[c] = true
	}
	compared := 0
	t.Run("the final state equals a clean run of the same history", func(t *testing.T) {
		for _, c := range erased {
			if st, ok := liveState[c]; ok {
				t.Errorf("erased customer %s still has state in %s: %v", c, promoted, st)
			}
		}
		for c := range excluded {
			delete(cleanState, c)
			delete(liveState, c)
		}
		compared = len(cleanState)
		if len(cleanState) == 0 {
			t.Fatal("the clean replay has no customers")
		}
		compareStates(t, cleanState, liveState)
	})
	dups := 0
	t.Run("no derived event is lost and duplicates repeat the same event", func(t *testing.T) {
		keep := func(ds []e2e.Derived) []e2e.Derived {
			return slices.DeleteFunc(slices.Clone(ds), func(d e2e.Derived) bool { return excluded[d.Customer] })
		}
		want, got := keep(cleanDerived), keep(liveDerived)
		if len(want) == 0 {
			t.Fatal("the clean replay derived nothing")
		}
		dups = len(got) - len(distinctIDs(got))
		compareDerived(t, want, got)
	})
	dead := readDeadLetters(t, w)
	t.Run("every poison record is dead-lettered with its reason, corrupt states are quarantined", func(t *testing.T) {
		checkPoison(t, tr.poisons(), dead)
		checkQuarantine(t, w, promoted, corrupted)
	})
	reqs := receiver.Requests()
	faults := ch.faultList()
	t.Run("the receiver accepted every action at most once, nothing re-sent after the promote", func(t *testing.T) {
		checkWebhooks(t, reqs, faults, ch.promotedAt)
	})
	stalls, sampleErrs := monitor.Stalls()
	attr := e2e.Attribute(stalls, faults, monitor.Progress(), 2*time.Second)
	longest, longestFault, longestFree := time.Duration(0), "", time.Duration(0)
	for _, s := range attr.Free {
		longestFree = max(longestFree, s.Duration())
	}
	for i, r := range attr.Recovery {
		if r > longest {
			longest, longestFault = r, faults[i].Kind+" ("+faults[i].Target+")"
		}
	}
	t.Run("no partition stalled longer than one retry period outside the faults", func(t *testing.T) {
		// The consumers retry a failing batch at most 10 s apart (docs/design.md, "Outages are
		// waited out"): that is the retry period. A stall is measured from lag samples, so each
		// of its ends is known to within a sample period: the bound allows one on each side.
		const retryPeriod = 10 * time.Second
		bound := retryPeriod + 2*monitor.Interval
		for _, s := range attr.Free {
			if s.Duration() > bound {
				t.Errorf("partition %s stalled %s with %d records left (%s to %s), outside any fault",
					s.Partition, s.Duration().Round(100*time.Millisecond), s.Left, s.From.Format("15:04:05.0"), s.To.Format("15:04:05.0"))
			}
		}
		t.Logf("%d stalls observed, %d outside faults; %d lag samples failed (broker down)", len(stalls), len(attr.Free), sampleErrs)
	})
	crashes := 0
	for _, e := range exits {
		if e.Kind == e2e.ExitCrashed {
			crashes++
			t.Errorf("%s exited by itself (%s); log: %s", e.Name, e.Err, e.Log)
		}
	}

	// ---- the table ----
	count := func(kind e2e.ExitKind) int {
		n := 0
		for _, e := range exits {
			if e.Kind == kind {
				n++
			}
		}
		return n
	}
	outages := 0
	for _, f := range faults {
		if strings.HasSuffix(f.Kind, "outage") {
			outages++
		}
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("size", map[bool]string{true: "full", false: "CI"}[*chaosFull])
	row("events (history + live, valid)", tr.valid())
	row("poison records", len(tr.poisons()))
	row("kills (SIGKILL)", count(e2e.ExitKilled))
	row("restarts (by the supervisor: kills, promote exits, crashes)", sup.Starts()-len(chaosServices)-2)
	row("promote exits (code 3)", count(e2e.ExitPromoted))
	row("unexpected exits", crashes)
	row("broker / Redis restarts", "1 / 1")
	row("outages", fmt.Sprintf("%d (Kafka %s, Redis %s)", outages, size.outage, size.outage))
	row("rebalance", "purchases 1 → 3 → 1 instances")
	row("erased / corrupted customers", fmt.Sprintf("%d / %d", len(erased), len(corrupted)))
	row("derived events (clean run / live distinct)", fmt.Sprintf("%d / %d", len(distinctIDs(cleanDerived)), len(distinctIDs(liveDerived))))
	row("duplicates (same id, same bytes)", dups)
	row("dead letters", len(dead))
	row("webhook requests / distinct actions", fmt.Sprintf("%d / %d", len(reqs), len(distinctKeys(reqs))))
	row("customers compared (erased, corrupted excluded)", compared)
	row("longest stall outside faults (bound: retry period 10s + 2 lag samples)", longestFree.Round(100*time.Millisecond))
	row("longest recovery time", fmt.Sprintf("%s after %s", longest.Round(100*time.Millisecond), longestFault))
	row("wall time", since(wall))
	_ = tw.Flush()
	t.Logf("chaos run:\n%s", b.String())
	for i, f := range faults {
		t.Logf("  fault %-15s %-35s %s → %s, recovery %s", f.Kind, f.Target, f.From.Format("15:04:05.0"), f.To.Format("15:04:05.0"),
			attr.Recovery[i].Round(100*time.Millisecond))
	}
}

// awayFromMidnight waits, when a UTC day would end within need, until the next day is a few
// minutes old: the run's events all happen on one day, so that no day closes under a live
// run that its clean replay would see differently (see liveWindow).
// It fails at once, saying so, when the wait and the run would not fit in the test's -timeout.
func awayFromMidnight(t *testing.T, need time.Duration) {
	now := time.Now().UTC()
	wait := midnightWait(now, need)
	if wait == 0 {
		return
	}
	if deadline, ok := t.Deadline(); ok && now.Add(wait+need).After(deadline) {
		t.Fatalf("the run would cross the UTC midnight in %s, and waiting %s for it plus the run (%s) exceeds -timeout: raise CHAOS_TIMEOUT to at least %s",
			time.Until(now.Truncate(24*time.Hour).Add(24*time.Hour)).Round(time.Second), wait.Round(time.Second), need, (2*need + 6*time.Minute).Round(time.Minute))
	}
	t.Logf("waiting %s for the UTC day to change", wait.Round(time.Second))
	time.Sleep(wait)
}

// wallClockWait is how long a run needing need from now must wait so that the next daily
// instant at offset from UTC midnight does not fall within it: until margin after that
// instant, or not at all.
func wallClockWait(now time.Time, offset, need, margin time.Duration) time.Duration {
	now = now.UTC()
	next := now.Truncate(24 * time.Hour).Add(offset)
	if !next.After(now) {
		next = next.Add(24 * time.Hour)
	}
	if next.Sub(now) >= need {
		return 0
	}
	return next.Sub(now) + margin
}

// midnightWait is how long a chaos run needing need from now must wait so that it does not
// cross a UTC midnight: until 6 minutes into the next day, or not at all.
func midnightWait(now time.Time, need time.Duration) time.Duration {
	return wallClockWait(now, 0, need, 6*time.Minute)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Second) }

// customersOf returns the history's customer ids, sorted.
func customersOf(history []event.Input) []string {
	seen := map[string]bool{}
	for _, in := range history {
		seen[in.Customer()] = true
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// ---- traffic -----------------------------------------------------------------------------

// traffic produces the history when its events happen, one poison record per hundred, and
// after it a trickle of logins until stopped. A failed produce (the broker is down) is
// retried until it succeeds.
type traffic struct {
	t       *testing.T
	w       *world
	history []event.Input
	recs    []stream.Record
	at      []time.Time
	done    chan struct{}

	mu      sync.Mutex
	poison  []poison
	nValid  int
	extra   []stream.Record
	stopped atomic.Bool
	lastErr atomic.Value
}

func newTraffic(t *testing.T, w *world, history []event.Input, oversize int) *traffic {
	tr := &traffic{t: t, w: w, history: history, done: make(chan struct{})}
	topic := map[string]string{"Purchase": event.TopicPurchases, "Login": event.TopicLogins, "Feedback": event.TopicFeedback}
	inputs := []string{event.TopicPurchases, event.TopicLogins, event.TopicFeedback}
	kinds := []string{"undecodable", "missing fields", "absurd value", "mis-keyed"}
	n := 0
	for i, in := range history {
		tr.recs = append(tr.recs, stream.Record{Topic: topic[in.Schema()] + w.suffix, Key: []byte(in.Customer()), Value: w.mustEncode(in)})
		tr.at = append(tr.at, in.Time())
		tr.nValid++
		if i%100 != 50 {
			continue
		}
		kind := kinds[n%len(kinds)]
		if n%25 == 24 && oversize > 0 {
			kind = "oversized"
			oversize--
		}
		n++
		p := poison{kind: kind, topic: inputs[n%3] + w.suffix, key: fmt.Sprintf("poison-%d", n)}
		var value []byte
		switch kind {
		case "undecodable":
			value = []byte(fmt.Sprintf("\x07 not a framed record %d", n))
			// any code: which one the codec gives unframed bytes is its own business
		case "missing fields":
			p.topic = event.TopicPurchases + w.suffix
			value = w.mustEncode(event.Purchase{EventID: p.key, OccurredAt: in.Time(), Kind: event.KindPurchase, AmountMinor: 100, Currency: "USD"})
			p.codes = []string{"invalid"}
		case "absurd value":
			p.topic = event.TopicPurchases + w.suffix
			value = w.mustEncode(event.Purchase{EventID: p.key, CustomerID: p.key, OccurredAt: in.Time(), OrderID: p.key,
				Kind: event.KindPurchase, AmountMinor: 1 << 60, Currency: "USD"})
			p.codes = []string{"invalid"}
		case "mis-keyed":
			p.topic = event.TopicLogins + w.suffix
			value = w.mustEncode(event.Login{EventID: p.key + "-login", CustomerID: in.Customer(), OccurredAt: in.Time(), Channel: event.ChannelWeb})
			p.codes = []string{ingest.CodeKeyMismatch}
		case "oversized":
			value = make([]byte, ingest.MaxRecordBytes+1024)
			_, _ = rand.Read(value)
			p.codes = []string{"oversize"}
		}
		tr.poison = append(tr.poison, p)
		tr.recs = append(tr.recs, stream.Record{Topic: p.topic, Key: []byte(p.key), Value: value})
		tr.at = append(tr.at, in.Time())
	}
	return tr
}

func (w *world) mustEncode(e event.Event) []byte {
	v, err := w.codec.Encode(e)
	if err != nil {
		w.t.Fatal(err)
	}
	return v
}

// add produces one more record as soon as possible, valid or poison.
func (tr *traffic) add(rec stream.Record, p *poison) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.extra = append(tr.extra, rec)
	if p != nil {
		tr.poison = append(tr.poison, *p)
	} else {
		tr.nValid++
	}
}

func (tr *traffic) stop() { tr.stopped.Store(true) }

func (tr *traffic) poisons() []poison {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.poison)
}

func (tr *traffic) valid() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.nValid
}

func (tr *traffic) run(ctx context.Context) {
	// Requests large enough for the oversized poison (the input topics allow 4 MiB records).
	p, err := stream.NewProducer(stream.ProducerConfig{Brokers: tr.w.brokers, BatchBytes: 4 << 20}, zap.NewNop())
	if err != nil {
		tr.t.Error(err)
		return
	}
	defer p.Close()
	send := func(recs []stream.Record) {
		for failures := 0; ctx.Err() == nil; failures++ {
			err := p.Produce(ctx, recs...)
			if err == nil {
				tr.lastErr.Store("")
				return
			}
			tr.lastErr.Store(err.Error())
			if failures%20 == 0 {
				tr.t.Logf("producing %d input records failed %d times (retrying): %v", len(recs), failures+1, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	i, n, rng := 0, 0, mrand.New(mrand.NewPCG(7, 7))
	customers := customersOf(tr.history)
	for ctx.Err() == nil {
		tr.mu.Lock()
		extra := tr.extra
		tr.extra = nil
		tr.mu.Unlock()
		if len(extra) > 0 {
			send(extra)
		}
		now := time.Now()
		j := i
		for j < len(tr.recs) && !tr.at[j].After(now) && j-i < 500 {
			j++
		}
		if j > i {
			send(tr.recs[i:j])
			i = j
			continue
		}
		if i == len(tr.recs) {
			if tr.stopped.Load() {
				tr.mu.Lock()
				left := len(tr.extra)
				tr.mu.Unlock()
				if left == 0 {
					return
				}
				continue
			}
			// after the history: a trickle of logins until the faults are over
			c := customers[rng.IntN(len(customers))]
			n++
			tr.add(stream.Record{Topic: event.TopicLogins + tr.w.suffix, Key: []byte(c), Value: tr.w.mustEncode(event.Login{
				EventID: fmt.Sprintf("%s-trickle-%d", c, n), CustomerID: c, OccurredAt: time.Now().UTC(), Channel: event.ChannelApp})}, nil)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- faults ------------------------------------------------------------------------------

type chaos struct {
	t     *testing.T
	w     *world
	sup   *e2e.Supervisor
	kafka *e2e.KafkaNode
	redis *embedded.PersistentRedis
	ctl   func(args ...string) string

	mu         sync.Mutex
	faults     []e2e.Fault
	promotedAt time.Time
}

// fault injects and repairs one fault, then waits until every service is ready again, and
// records the window.
func (c *chaos) fault(kind, target string, affects []string, inject func() error) {
	c.t.Helper()
	f := e2e.Fault{Kind: kind, Target: target, From: time.Now(), Affects: affects}
	if err := inject(); err != nil {
		c.t.Fatalf("%s of %s: %v", kind, target, err)
	}
	if err := c.sup.WaitReady(context.Background(), 3*time.Minute); err != nil {
		c.t.Fatalf("after the %s of %s: %v", kind, target, err)
	}
	f.To = time.Now()
	c.mu.Lock()
	c.faults = append(c.faults, f)
	c.mu.Unlock()
	c.t.Logf("%s: %s, repaired in %s", kind, target, f.To.Sub(f.From).Round(100*time.Millisecond))
}

func (c *chaos) faultList() []e2e.Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.faults)
}

// kills SIGKILLs one instance of each victim in turn; the supervisor restarts it.
func (c *chaos) kills(victims []string, rng *mrand.Rand, gap time.Duration) {
	for _, svc := range victims {
		slots := c.sup.Slots(svc)
		i := slots[rng.IntN(len(slots))]
		affects := []string{}
		if slices.Contains(e2e.ConsumerServices(), svc) {
			affects = []string{svc}
		}
		c.fault("kill", svc, affects, func() error {
			c.sup.Kill(i)
			return nil
		})
		time.Sleep(gap)
	}
}

// rebalance grows service's group to three instances.
func (c *chaos) rebalance(ctx context.Context, svc string, gap time.Duration) {
	c.fault("rebalance", svc+" 1 → 3 instances", []string{svc}, func() error {
		for range 2 {
			if _, err := c.sup.Add(ctx, svc); err != nil {
				return err
			}
		}
		return nil
	})
	time.Sleep(gap)
}

// scaleDown stops all but the first instance of svc.
func (c *chaos) scaleDown(svc string) {
	c.fault("rebalance", svc+" 3 → 1 instance", []string{svc}, func() error {
		slots := c.sup.Slots(svc)
		for _, i := range slots[1:] {
			if err := c.sup.Remove(i, 40*time.Second); err != nil {
				return err
			}
		}
		return nil
	})
}

// promote replays the input topics into a new namespace and promotes it, as an operator
// does, while traffic flows; the services exit with code 3 and the supervisor restarts them
// on the promoted namespace.
func (c *chaos) promote(ctx context.Context, active *atomic.Value) string {
	ns := testinfra.Name("promoted")
	c.fault("promote", ns, nil, func() error {
		before := len(c.sup.Exits())
		c.ctl("replay", "--from", "2000-01-01", "--namespace", ns, "--outputs", "shadow")
		c.mu.Lock()
		c.promotedAt = time.Now()
		c.mu.Unlock()
		c.ctl("promote", "--namespace", ns)
		active.Store(ns)
		want := 0
		for _, s := range chaosServices {
			want += len(c.sup.Slots(s))
		}
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
			n := 0
			for _, e := range c.sup.Exits()[before:] {
				if e.Kind == e2e.ExitPromoted {
					n++
				}
			}
			if n >= want {
				return nil
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%d of %d services exited with code 3 within two minutes of the promote", n, want)
			}
		}
	})
	return ns
}

// erase erases customers with loyaltyctl while traffic flows.
func (c *chaos) erase(ids ...string) []string {
	c.fault("erase", strings.Join(ids, ", "), []string{}, func() error {
		for _, id := range ids {
			c.ctl("erase", id, "--requested-by", "chaos-suite")
		}
		return nil
	})
	return ids
}

// corrupt overwrites the stored state of customers in namespace ns with garbage — one
// becomes a string of nonsense, one a compact value whose bytes after the head are flipped,
// the others hashes of nonsense (the former layout) — and sends each a login, which must
// quarantine it.
func (c *chaos) corrupt(ctx context.Context, ns string, tr *traffic, ids ...string) []string {
	keys, err := keyspace.New(ns, c.w.shards)
	if err != nil {
		c.t.Fatal(err)
	}
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{c.w.redis}})
	if err != nil {
		c.t.Fatal(err)
	}
	defer rdb.Close()
	for i, id := range ids {
		key := keys.Customer(id)
		var err error
		switch i {
		case 0:
			err = rdb.Set(ctx, key, "garbage \xff\xfe", 0).Err()
		case 1:
			var raw []byte
			if raw, err = rdb.Get(ctx, key).Bytes(); err == nil {
				_, n := binary.Uvarint(raw[1:]) // magic byte, version, then the state
				for j := 1 + n; j < len(raw); j++ {
					raw[j] ^= 0xa5
				}
				err = rdb.Set(ctx, key, raw, 0).Err()
			}
		default:
			if err = rdb.Del(ctx, key).Err(); err == nil {
				err = rdb.HSet(ctx, key, "_v", "1", "id", id, "v", "1", "w0", "\x00garbage{", "zz", "???").Err()
			}
		}
		if err != nil {
			c.t.Fatalf("corrupting %s: %v", id, err)
		}
		tr.add(stream.Record{Topic: event.TopicLogins + c.w.suffix, Key: []byte(id), Value: c.w.mustEncode(event.Login{
			EventID: id + "-after-corruption", CustomerID: id, OccurredAt: time.Now().UTC(), Channel: event.ChannelWeb})},
			&poison{kind: "corrupt state", topic: event.TopicLogins + c.w.suffix, key: id, codes: []string{"corrupt_state", "quarantined"}})
	}
	c.t.Logf("corrupted the stored state of %v", ids)
	return ids
}

// ctlRunner runs loyaltyctl against the cluster's deployment and fails the test on error.
func ctlRunner(t *testing.T, bin string, cl *e2e.Cluster) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		env := []string{}
		for _, kv := range os.Environ() {
			k, _, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(k, "LOYALTY_") || k == "KAFKA_BROKERS" || k == "REDIS_ADDR" {
				continue
			}
			env = append(env, kv)
		}
		cmd.Env = append(env, "KAFKA_BROKERS="+strings.Join(cl.Brokers, ","), "REDIS_ADDR="+cl.Redis,
			"LOYALTY_NAMESPACE="+cl.Namespace, "LOYALTY_DEPLOYMENT="+cl.Namespace, "LOYALTY_TOPIC_SUFFIX="+cl.Suffix,
			"LOYALTY_SHARDS="+cl.Env["LOYALTY_SHARDS"], "LOG_LEVEL=warn")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("loyaltyctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}

// ---- reading results ---------------------------------------------------------------------

func readTopics(t *testing.T, w *world, topics ...string) []e2e.Derived {
	t.Helper()
	ctx := context.Background()
	to, err := e2e.Positions(ctx, w.admin, topics...)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := e2e.ReadDerived(ctx, w.admin, w.codec, nil, to)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func distinctIDs(ds []e2e.Derived) map[string]bool {
	out := map[string]bool{}
	for _, d := range ds {
		out[d.ID] = true
	}
	return out
}

// deadLetter is one record of the dead-letter topic, by its headers.
type deadLetter struct {
	key, code, reason, source string
}

func readDeadLetters(t *testing.T, w *world) []deadLetter {
	t.Helper()
	ctx := context.Background()
	topic := event.TopicDeadLetter + w.suffix
	ends, err := w.admin.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("reading the dead-letter topic %s: %v", topic, err)
	}
	var out []deadLetter
	for p, end := range ends {
		ch := make(chan stream.Message, 1024)
		errc := make(chan error, 1)
		go func() { defer close(ch); errc <- w.admin.ReadRange(ctx, topic, p, 0, end, ch) }()
		for m := range ch {
			d := deadLetter{key: string(m.Key)}
			for _, h := range m.Headers {
				switch h.Key {
				case stream.HeaderErrorCode:
					d.code = string(h.Value)
				case stream.HeaderErrorMessage:
					d.reason = string(h.Value)
				case stream.HeaderSourceTopic:
					d.source = string(h.Value)
				}
			}
			out = append(out, d)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func checkPoison(t *testing.T, poisons []poison, dead []deadLetter) {
	byKey := map[string][]deadLetter{}
	for _, d := range dead {
		byKey[d.source+"|"+d.key] = append(byKey[d.source+"|"+d.key], d)
	}
	kinds := map[string]int{}
	for _, p := range poisons {
		kinds[p.kind]++
		ds := byKey[p.topic+"|"+p.key]
		found := false
		for _, d := range ds {
			if (len(p.codes) == 0 || slices.Contains(p.codes, d.code)) && d.reason != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s record %q on %s is not on the dead-letter topic with code %v and a reason (dead letters with its key: %+v)",
				p.kind, p.key, p.topic, p.codes, ds)
		}
	}
	t.Logf("poison records by kind: %v; %d dead letters", kinds, len(dead))
}

func checkQuarantine(t *testing.T, w *world, ns string, corrupted []string) {
	keys, err := keyspace.New(ns, w.shards)
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{w.redis}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	qs, err := state.ListQuarantined(context.Background(), rdb, keys)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, q := range qs {
		reasons[q.Customer] = q.Reason
	}
	for _, c := range corrupted {
		if reasons[c] == "" {
			t.Errorf("customer %s, whose stored state was overwritten with garbage, is not quarantined with a reason (quarantined: %v)", c, reasons)
		}
	}
}

// checkWebhooks checks that no action was accepted (2xx) twice unless a fault that can
// interrupt a delivery between the receiver's answer and the notifier's record of it (a
// notifier kill, a Redis restart or outage) happened right then, that no acknowledged action
// was sent again after the promote, and that every signature verified.
func checkWebhooks(t *testing.T, reqs []e2e.WebhookRequest, faults []e2e.Fault, promotedAt time.Time) {
	if len(reqs) == 0 {
		t.Fatal("the receiver got no webhook at all: the notifier decided or delivered nothing")
	}
	accepted := map[string]time.Time{}
	explained, undelivered := 0, 0
	for _, r := range reqs {
		if r.Err != "" {
			t.Errorf("webhook %s (attempt %s) failed verification: %s", r.Key, r.Attempt, r.Err)
			continue
		}
		if r.Status/100 != 2 {
			continue
		}
		first, seen := accepted[r.Key]
		if !seen {
			accepted[r.Key] = r.At
			continue
		}
		if interrupted(first, faults) {
			explained++
			continue
		}
		if !promotedAt.IsZero() && r.At.After(promotedAt) && first.Before(promotedAt) {
			t.Errorf("action %s, accepted at %s before the promote, was sent again at %s after it", r.Key,
				first.Format("15:04:05.000"), r.At.Format("15:04:05.000"))
			continue
		}
		t.Errorf("action %s was accepted twice (%s and %s, attempt %s) with no fault in between", r.Key,
			first.Format("15:04:05.000"), r.At.Format("15:04:05.000"), r.Attempt)
	}
	for k := range distinctKeys(reqs) {
		if _, ok := accepted[k]; !ok {
			undelivered++
			t.Errorf("action %s was never accepted", k)
		}
	}
	t.Logf("%d requests, %d actions accepted, %d repeats after a fault that interrupted the delivery, %d never accepted",
		len(reqs), len(accepted), explained, undelivered)
}

// interrupted reports whether a fault that can lose a delivery's record began within a few
// seconds after the receiver accepted it, or was under way then.
func interrupted(at time.Time, faults []e2e.Fault) bool {
	for _, f := range faults {
		relevant := (f.Kind == "kill" && f.Target == "notifier") || strings.HasPrefix(f.Kind, "redis")
		if !relevant {
			continue
		}
		if (!at.Before(f.From) && !at.After(f.To)) || (f.From.After(at) && f.From.Sub(at) < 5*time.Second) {
			return true
		}
	}
	return false
}

func distinctKeys(reqs []e2e.WebhookRequest) map[string]bool {
	out := map[string]bool{}
	for _, r := range reqs {
		out[r.Key] = true
	}
	return out
}

// waitDelivered waits until every action the receiver saw was accepted, or timeout passes.
func waitDelivered(r *e2e.WebhookReceiver, timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		ok := map[string]bool{}
		reqs := r.Requests()
		for _, q := range reqs {
			if q.Status/100 == 2 {
				ok[q.Key] = true
			}
		}
		if len(ok) == len(distinctKeys(reqs)) {
			return
		}
	}
}

// waitOutboxEmpty waits until the retired namespace's outboxes are empty: the promoted
// namespace's relay drains them.
func waitOutboxEmpty(t *testing.T, o *e2e.Observer) {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		var n int64
		for s := range o.Keys.Shards() {
			l, err := o.Redis.XLen(ctx, o.Keys.Outbox(s)).Result()
			if err != nil {
				t.Fatal(err)
			}
			n += l
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the retired namespace %s still has %d outbox entries three minutes after the end", o.Keys.Namespace(), n)
			return
		}
	}
}

func TestARunWaitsPastADailyInstantOnlyWhenItWouldFallWithin(t *testing.T) {
	day := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	const midnight, dayClose = 0, 2 * time.Hour
	for _, c := range []struct {
		now              time.Time
		at, need, margin time.Duration
		want             time.Duration
	}{
		{day.Add(12 * time.Hour), midnight, 10 * time.Minute, 6 * time.Minute, 0},
		{day.Add(24*time.Hour - 10*time.Minute), midnight, 10 * time.Minute, 6 * time.Minute, 0}, // ends at midnight sharp
		{day.Add(24*time.Hour - 9*time.Minute), midnight, 10 * time.Minute, 6 * time.Minute, 15 * time.Minute},
		{day.Add(24*time.Hour - time.Second), midnight, 10 * time.Minute, 6 * time.Minute, 6*time.Minute + time.Second},
		{day.Add(2 * time.Minute), midnight, 10 * time.Minute, 6 * time.Minute, 0},
		{day.Add(time.Hour + 55*time.Minute), dayClose, 5 * time.Minute, time.Minute, 0}, // ends at the close sharp
		{day.Add(time.Hour + 56*time.Minute), dayClose, 5 * time.Minute, time.Minute, 5 * time.Minute},
		{day.Add(time.Hour + 45*time.Minute), dayClose, 20 * time.Minute, time.Minute, 16 * time.Minute},
		{day.Add(2*time.Hour + time.Second), dayClose, 20 * time.Minute, time.Minute, 0}, // just after: the next is a day away
	} {
		if got := wallClockWait(c.now, c.at, c.need, c.margin); got != c.want {
			t.Errorf("at %s needing %s before the instant at +%s: wait %s, want %s", c.now.Format("15:04:05"), c.need, c.at, got, c.want)
		}
	}
}
