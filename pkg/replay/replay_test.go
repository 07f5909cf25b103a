package replay_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/e2e"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/replay"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

type env struct {
	t       *testing.T
	brokers []string
	redis   string
	// redisCluster is REDIS_CLUSTER: "true" when redis holds the seeds of a Redis Cluster.
	redisCluster string
	suffix       string
	live         string
	policy       string // POLICY_FILE, optional
	log          *zap.Logger
}

// waitDone waits until the live services of rt have nothing left to do: every input record
// committed, the outbox empty and no inactivity deadline due (the sweeper caught up).
func (e *env) waitDone(rt *wiring.Runtime) {
	e.t.Helper()
	obs := &e2e.Observer{Admin: rt.Admin, Redis: rt.Redis, Keys: rt.Keys, Suffix: e.suffix, Lateness: rt.Policy.AllowedLateness}
	if err := obs.WaitDone(context.Background(), 10*time.Minute, nil); err != nil {
		e.t.Fatal(err)
	}
}

// runtimeOf opens a namespace for inspection.
func (e *env) runtimeOf(ns string) *wiring.Runtime {
	rt, err := wiring.NewRuntime(context.Background(), e.config(ns), e.log, wiring.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(rt.Close)
	return rt
}

func (e *env) config(ns string) config.Common {
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"KAFKA_BROKERS": e.brokers[0], "REDIS_ADDR": e.redis, "REDIS_CLUSTER": e.redisCluster, "LOYALTY_NAMESPACE": ns,
			"HTTP_ADDR": "off", "KAFKA_PARTITIONS": "3", "LOYALTY_SHARDS": "8", "BATCH_LINGER": "10ms", "LOYALTY_TOPIC_SUFFIX": e.suffix, "POLICY_FILE": e.policy, "LOYALTY_DEPLOYMENT": e.live}[k]
	}, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

// history: customers with purchases and refunds over eight months, plus, with multiTopic,
// logins and feedback interleaved in event time.
func history(now time.Time, multiTopic bool) []event.Input {
	base := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -240)
	var in []event.Input
	n := 0
	for c := range 40 {
		id := fmt.Sprintf("cust-%02d", c)
		every := 5 + c%9
		stop := 240 - (c%4)*50 // a quarter go silent early
		for d := c % 7; d < stop; d += every {
			n++
			at := base.AddDate(0, 0, d).Add(time.Duration(c) * time.Minute)
			amount := int64(2000 + (c*731+d*97)%20000)
			order := fmt.Sprintf("%s-o%d", id, n)
			in = append(in, event.Purchase{EventID: fmt.Sprintf("p%d", n), CustomerID: id, OccurredAt: at, OrderID: order,
				Kind: event.KindPurchase, AmountMinor: amount, Currency: "USD"})
			if (c+d)%11 == 0 {
				n++
				in = append(in, event.Purchase{EventID: fmt.Sprintf("r%d", n), CustomerID: id, OccurredAt: at.Add(48 * time.Hour),
					OrderID: order + "-r", Kind: event.KindRefund, AmountMinor: amount / 2, Currency: "USD", RefundOfOrderID: order})
			}
			if multiTopic {
				n++
				in = append(in, event.Login{EventID: fmt.Sprintf("l%d", n), CustomerID: id, OccurredAt: at.Add(-3 * time.Hour), Channel: event.ChannelWeb})
			}
		}
		if multiTopic && c%5 == 0 {
			score := int32(c % 11)
			n++
			in = append(in, event.Feedback{EventID: fmt.Sprintf("f%d", n), CustomerID: id, OccurredAt: base.AddDate(0, 0, 100), Kind: event.FeedbackNPS, Score: &score})
		}
	}
	slices.SortStableFunc(in, func(a, b event.Input) int { return a.Time().Compare(b.Time()) })
	return in
}

func runServices(t *testing.T, rt *wiring.Runtime) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		}()
	}
	for _, svc := range []struct{ name, topic string }{{"purchases", event.TopicPurchases}, {"logins", event.TopicLogins}, {"feedback", event.TopicFeedback}} {
		run(func(ctx context.Context) error {
			return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: svc.name, Topics: []string{svc.topic}})
		})
	}
	run(func(ctx context.Context) error { return wiring.RunRelay(ctx, rt, nil) })
	run(func(ctx context.Context) error { return wiring.RunSweeper(ctx, rt) })
	return func() { cancel(); wg.Wait() }
}

// readAll reads every record of topics from the beginning until no new record arrived for
// quiet, and returns the derived events in arrival order.
func readAll(t *testing.T, e *env, rt *wiring.Runtime, quiet time.Duration, topics ...string) []event.Event {
	var mu sync.Mutex
	var out []event.Event
	last := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: e.brokers, GroupID: testinfra.Name("read"), Topics: topics, Linger: 5 * time.Millisecond},
		stream.HandlerFunc(func(ctx context.Context, b *stream.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range b.Messages {
				ev, err := rt.Codec.Decode(ctx, m.Value)
				if err != nil {
					return err
				}
				out = append(out, ev)
			}
			last = time.Now()
			return nil
		}), nil, e.log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	for {
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		idle := time.Since(last)
		mu.Unlock()
		if idle > quiet {
			break
		}
	}
	cancel()
	<-done
	return out
}

// ids lists each customer's derived event ids per output topic, in topic order (each topic
// is ordered per customer; the interleaving of three topics is not).
func ids(evs []event.Event) map[string][]string {
	by := map[string][]string{}
	for _, ev := range evs {
		switch v := ev.(type) {
		case event.TierChanged:
			by[v.CustomerID+"/tier"] = append(by[v.CustomerID+"/tier"], v.EventID)
		case event.ChurnRiskChanged:
			by[v.CustomerID+"/churn"] = append(by[v.CustomerID+"/churn"], v.EventID)
		case event.SegmentChanged:
			by[v.CustomerID+"/segment"] = append(by[v.CustomerID+"/segment"], v.EventID)
		}
	}
	return by
}

func newEnv(t *testing.T) *env {
	redis, cluster := testinfra.RedisEnv(t)
	return &env{t: t, brokers: testinfra.Kafka(t), redis: redis, redisCluster: cluster, suffix: testinfra.TopicSuffix(t, "rp"),
		live: testinfra.Namespace(t, "live"), log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
}

func (e *env) produce(rt *wiring.Runtime, inputs []event.Input) {
	topic := map[string]string{"Purchase": event.TopicPurchases, "Login": event.TopicLogins, "Feedback": event.TopicFeedback}
	recs := make([]stream.Record, 0, len(inputs))
	for _, in := range inputs {
		v, err := rt.Codec.Encode(in)
		if err != nil {
			e.t.Fatal(err)
		}
		recs = append(recs, stream.Record{Topic: rt.Topic(topic[in.Schema()]), Key: []byte(in.Customer()), Value: v})
	}
	if err := rt.Producer.Produce(context.Background(), recs...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) outputs(rt *wiring.Runtime, ns string) []string {
	var out []string
	for _, t := range []string{event.TopicTierChanges, event.TopicChurnRisk, event.TopicSegmentChanges} {
		if ns == "" {
			out = append(out, rt.Topic(t))
		} else {
			out = append(out, replay.ShadowTopic(rt.Topic(t), ns))
		}
	}
	return out
}

func (e *env) states(ns string, customers int) map[string]map[string]string {
	ctx := context.Background()
	rt, err := wiring.NewRuntime(ctx, e.config(ns), e.log, wiring.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	defer rt.Close()
	st, _ := state.New(ctx, rt.Redis, rt.Keys, nil)
	out := map[string]map[string]string{}
	for c := range customers {
		id := fmt.Sprintf("cust-%02d", c)
		fields, err := st.Get(ctx, id)
		if err != nil {
			e.t.Fatalf("%s in %s: %v", id, ns, err)
		}
		out[id] = fields
	}
	return out
}

func markedAsReplay(t *testing.T, evs []event.Event) {
	for _, ev := range evs {
		ok := true
		switch v := ev.(type) {
		case event.TierChanged:
			ok = v.Replay
		case event.ChurnRiskChanged:
			ok = v.Replay
		case event.SegmentChanged:
			ok = v.Replay
		}
		if !ok {
			t.Fatalf("a replayed event without the replay marker: %+v", ev)
		}
	}
}

func sameIDs(t *testing.T, what string, want, got map[string][]string) {
	t.Helper()
	for k, w := range want {
		if g := got[k]; !slices.Equal(g, w) {
			t.Errorf("%s: %s:\n want %v\n got  %v", what, k, w, g)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: events for %d customer/kind pairs, want %d", what, len(got), len(want))
	}
}

// TestAReplayOfThePurchaseHistoryEqualsTheLiveRun checks the engineers' promise on the
// backfill case (a purchase history, as in the retail data set): replaying the input topics
// into a fresh namespace reproduces live state and the live derived events with the same ids,
// in the same order per customer and topic, all marked as replayed.
func TestAReplayOfThePurchaseHistoryEqualsTheLiveRun(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rt, err := wiring.NewRuntime(ctx, e.config(e.live), e.log, wiring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	inputs := history(time.Now(), false)
	// History arrives as a backlog the live services work through (a caught-up partition
	// counts as the wall clock, so a trickle of months-old events would not be "live").
	e.produce(rt, inputs)
	stop := runServices(t, rt)
	e.waitDone(rt)
	stop()
	live := readAll(t, e, rt, 2*time.Second, e.outputs(rt, "")...)
	if len(live) == 0 {
		t.Fatal("the live run derived nothing")
	}

	ns := testinfra.Namespace(t, "rp")
	var progress strings.Builder
	sum, err := wiring.Replay(ctx, e.config(e.live), replay.Config{Namespace: ns, Outputs: replay.OutputsShadow, Progress: &progress}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Events != int64(len(inputs)) {
		t.Fatalf("replayed %d events, produced %d", sum.Events, len(inputs))
	}
	if !strings.Contains(progress.String(), "100.0%") || !strings.Contains(progress.String(), "events/s") {
		t.Errorf("progress output lacks the final line: %q", progress.String())
	}
	replayed := readAll(t, e, rt, 2*time.Second, e.outputs(rt, ns)...)
	markedAsReplay(t, replayed)
	sameIDs(t, "replay vs live", ids(live), ids(replayed))
	liveStates, replayStates := e.states(e.live, 40), e.states(ns, 40)
	for id, want := range liveStates {
		if got := replayStates[id]; !maps.Equal(got, want) {
			t.Errorf("customer %s state differs:\n live   %v\n replay %v", id, want, got)
		}
	}
	// Running it again finds the replay done and changes nothing.
	again, err := wiring.Replay(ctx, e.config(e.live), replay.Config{Namespace: ns, Outputs: replay.OutputsShadow}, e.log)
	if err != nil || again.Events != 0 || !again.Resumed {
		t.Fatalf("re-running a finished replay: %+v %v", again, err)
	}
	t.Logf("%d inputs, %d derived events, replay %.0f events/s", len(inputs), len(live), sum.PerSecond)
}

// TestReplayingAllThreeTopicsTwiceGivesTheSameResult: the merge of purchases, logins and
// feedback in event time makes a replay deterministic, whatever the speed of each topic.
func TestReplayingAllThreeTopicsTwiceGivesTheSameResult(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rt, err := wiring.NewRuntime(ctx, e.config(e.live), e.log, wiring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	e.produce(rt, history(time.Now(), true))
	a, b := testinfra.Namespace(t, "ra"), testinfra.Namespace(t, "rb")
	for _, ns := range []string{a, b} {
		if _, err := wiring.Replay(ctx, e.config(e.live), replay.Config{Namespace: ns, Outputs: replay.OutputsShadow, BatchSize: 97}, e.log); err != nil {
			t.Fatal(err)
		}
	}
	first := readAll(t, e, rt, 2*time.Second, e.outputs(rt, a)...)
	second := readAll(t, e, rt, 2*time.Second, e.outputs(rt, b)...)
	if len(first) == 0 {
		t.Fatal("the replay derived nothing")
	}
	sameIDs(t, "second replay vs first", ids(first), ids(second))
	sa, sb := e.states(a, 40), e.states(b, 40)
	for id := range sa {
		if !maps.Equal(sa[id], sb[id]) {
			t.Errorf("customer %s differs between the two replays: %s", id, strings.Join(e2e.FieldDiff(sa[id], sb[id]), "; "))
		}
	}
	checkDrop(t, e, rt, a, b)
}

// checkDrop drops replay namespace ns with its Kafka outputs and checks that its keys, shadow
// topics and consumer group are gone, while those of replay other and the live namespace
// stay.
func checkDrop(t *testing.T, e *env, live *wiring.Runtime, ns, other string) {
	t.Helper()
	ctx := context.Background()
	rt := e.runtimeOf(ns)
	topics := replay.Topics{Suffix: rt.TopicSuffix}
	if _, err := replay.Drop(ctx, live.ReplayNamespace(), live.Deployment, e.live); err == nil {
		t.Fatal("dropping the live namespace was accepted")
	}
	n, err := replay.Drop(ctx, rt.ReplayNamespace(), rt.Deployment, e.live)
	if err != nil || n == 0 {
		t.Fatalf("drop deleted %d keys (%v)", n, err)
	}
	deleted, err := replay.DropOutputs(ctx, rt.Admin, topics, ns)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(event.DerivedTopics()) + 1; len(deleted) != want {
		t.Fatalf("deleted shadow topics %v, want the %d derived and dead-letter ones", deleted, want)
	}
	if left, err := rt.Redis.Keys(ctx, rt.Keys.Prefix()+"*").Result(); err != nil || len(left) > 0 {
		t.Errorf("%d keys of the dropped namespace left (%v): %v", len(left), err, left[:min(5, len(left))])
	}
	testinfra.WaitTopicsGone(t, rt.Admin, ".replay."+ns)
	if offs, err := rt.Admin.GroupOffsets(ctx, replay.Group(ns), live.Topic(event.TopicPurchases)); err != nil || len(offs) > 0 {
		t.Errorf("the dropped replay's group still has offsets %v (%v)", offs, err)
	}
	if kept, err := rt.Admin.Topics(ctx, ".replay."+other); err != nil || len(kept) != len(deleted) {
		t.Errorf("the other replay's shadow topics: %v (%v), want %d", kept, err, len(deleted))
	}
	if offs, err := rt.Admin.GroupOffsets(ctx, replay.Group(other), live.Topic(event.TopicPurchases)); err != nil || len(offs) == 0 {
		t.Errorf("the other replay's group lost its offsets (%v)", err)
	}
	if again, err := replay.DropOutputs(ctx, rt.Admin, topics, ns); err != nil || len(again) != 0 {
		t.Errorf("dropping the outputs again: %v (%v), want nothing and no error", again, err)
	}
}

func TestAReplayRefusesTheLiveNamespaceAndBadArguments(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := wiring.Replay(ctx, e.config(e.live), replay.Config{Namespace: e.live, Outputs: replay.OutputsNone}, e.log); err == nil {
		t.Error("replaying into the live namespace was accepted")
	}
	if _, err := wiring.Replay(ctx, e.config(e.live), replay.Config{Namespace: "x", Outputs: "kafka"}, e.log); err == nil || !strings.Contains(err.Error(), "--outputs") {
		t.Errorf("bad --outputs: %v", err)
	}
}
