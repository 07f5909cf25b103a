package pipeline_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// env is one isolated pipeline: its own topics (by suffix) and Redis namespace on a shared
// broker and server.
type env struct {
	t       *testing.T
	brokers []string
	redis   string
	// redisCluster is REDIS_CLUSTER: "true" when redis holds the seeds of a Redis Cluster.
	redisCluster string
	suffix       string
	ns           string
	log          *zap.Logger
}

func newEnv(t *testing.T) *env {
	redis, cluster := testinfra.RedisEnv(t)
	return &env{t: t, brokers: testinfra.Kafka(t), redis: redis, redisCluster: cluster,
		suffix: testinfra.TopicSuffix(t, "e2e"), ns: testinfra.Namespace(t, "ns"), log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
}

func (e *env) runtime(ctx context.Context, ns string, replay bool) *wiring.Runtime {
	e.t.Helper()
	return e.runtimeWith(ctx, ns, replay, nil)
}

// runtimeWith is runtime with more (or other) environment variables.
func (e *env) runtimeWith(ctx context.Context, ns string, replay bool, extra map[string]string) *wiring.Runtime {
	e.t.Helper()
	vars := map[string]string{"KAFKA_BROKERS": e.brokers[0], "REDIS_ADDR": e.redis, "REDIS_CLUSTER": e.redisCluster, "LOYALTY_NAMESPACE": ns,
		"HTTP_ADDR": "off", "KAFKA_PARTITIONS": "3", "LOYALTY_SHARDS": "8", "BATCH_LINGER": "10ms"}
	maps.Copy(vars, extra)
	cfg, err := config.Load(func(k string) string { return vars[k] }, "")
	if err != nil {
		e.t.Fatal(err)
	}
	rt, err := wiring.NewRuntime(ctx, cfg, e.log, wiring.Options{Replay: replay, TopicSuffix: e.suffix})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(rt.Close)
	return rt
}

// services runs every pipeline service in-process until the returned stop is called.
type services struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (s *services) stop() {
	s.cancel()
	s.wg.Wait()
}

func (e *env) start(rt *wiring.Runtime, consumers bool) *services {
	ctx, cancel := context.WithCancel(context.Background())
	s := &services{cancel: cancel}
	run := func(name string, f func(context.Context) error) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				e.t.Errorf("%s: %v", name, err)
			}
		}()
	}
	if consumers {
		for _, svc := range []struct{ name, topic string }{{"purchases", event.TopicPurchases}, {"logins", event.TopicLogins}, {"feedback", event.TopicFeedback}} {
			run(svc.name, func(ctx context.Context) error {
				return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: svc.name, Topics: []string{svc.topic}})
			})
		}
	}
	run("relay", func(ctx context.Context) error { return wiring.RunRelay(ctx, rt, nil) })
	run("sweeper", func(ctx context.Context) error { return wiring.RunSweeper(ctx, rt) })
	return s
}

// produce encodes inputs and produces them to the env's input topics, keyed by customer.
func (e *env) produce(rt *wiring.Runtime, inputs []event.Input) {
	e.t.Helper()
	topic := map[string]string{"Purchase": event.TopicPurchases, "Login": event.TopicLogins, "Feedback": event.TopicFeedback}
	recs := make([]stream.Record, 0, len(inputs))
	for _, in := range inputs {
		v, err := rt.Codec.Encode(in)
		if err != nil {
			e.t.Fatal(err)
		}
		recs = append(recs, stream.Record{Topic: rt.Topic(topic[in.Schema()]), Key: []byte(in.Customer()), Value: v})
	}
	for i := 0; i < len(recs); i += 5000 {
		if err := rt.Producer.Produce(context.Background(), recs[i:min(i+5000, len(recs))]...); err != nil {
			e.t.Fatal(err)
		}
	}
}

// outputs collects the decoded derived events from the given physical topics.
type outputs struct {
	mu     sync.Mutex
	events []event.Event
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *env) collect(rt *wiring.Runtime, topics ...string) *outputs {
	o := &outputs{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: e.brokers, GroupID: testinfra.Name("collect"), Topics: topics, Linger: 5 * time.Millisecond},
		stream.HandlerFunc(func(ctx context.Context, b *stream.Batch) error {
			for _, m := range b.Messages {
				ev, err := rt.Codec.Decode(ctx, m.Value)
				if err != nil {
					return fmt.Errorf("output record does not decode: %w", err)
				}
				o.mu.Lock()
				o.events = append(o.events, ev)
				o.mu.Unlock()
			}
			return nil
		}), nil, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	go func() { defer close(o.done); _ = c.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-o.done })
	return o
}

func (o *outputs) snapshot() []event.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]event.Event(nil), o.events...)
}

// waitQuiet waits until cond holds and no new output arrived for quiet.
func (o *outputs) waitQuiet(t *testing.T, timeout, quiet time.Duration, cond func([]event.Event) bool) []event.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, lastChange := -1, time.Now()
	for {
		evs := o.snapshot()
		if len(evs) != last {
			last, lastChange = len(evs), time.Now()
		}
		if cond(evs) && time.Since(lastChange) >= quiet {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out with %d output events", len(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func idOf(e event.Event) (id, customer string) {
	switch v := e.(type) {
	case event.TierChanged:
		return v.EventID, v.CustomerID
	case event.ChurnRiskChanged:
		return v.EventID, v.CustomerID
	case event.SegmentChanged:
		return v.EventID, v.CustomerID
	}
	return "", ""
}
