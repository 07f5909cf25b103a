package stream_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

func setup(t *testing.T, n int) (brokers []string, topic string, producer *stream.Producer) {
	t.Helper()
	brokers, topic, p := newTopic(t, 2)
	produce(t, p, topic, 0, n)
	return brokers, topic, p
}

// newTopic creates a topic of the given partitions on the test broker and a producer for it.
func newTopic(t *testing.T, partitions int) (brokers []string, topic string, producer *stream.Producer) {
	t.Helper()
	brokers = testinfra.Kafka(t)
	topic = testinfra.Name("stream-test")
	if err := newAdmin(t, brokers).EnsureTopics(context.Background(), stream.TopicSpec{Name: topic, Partitions: partitions, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return brokers, topic, p
}

func produce(t *testing.T, p *stream.Producer, topic string, from, to int) {
	t.Helper()
	var recs []stream.Record
	for i := from; i < to; i++ {
		recs = append(recs, stream.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i%7)), Value: []byte(fmt.Sprint(i))})
	}
	if err := p.Produce(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

// run consumes with handler until stopWhen is true, then shuts the consumer down.
func run(t *testing.T, brokers []string, topic, group string, h stream.Handler, stopWhen func() bool) {
	t.Helper()
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: group, Topics: []string{topic},
		BatchSize: 10, Linger: 10 * time.Millisecond, RetryBackoffMax: 50 * time.Millisecond}, h, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for !stopWhen() {
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

type seen struct {
	mu sync.Mutex
	m  map[string]int
}

func (s *seen) add(b *stream.Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range b.Messages {
		s.m[string(m.Value)]++
	}
}

func (s *seen) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func TestAFailingBatchIsRetriedUntilItSucceedsAndOnlyThenCommitted(t *testing.T) {
	brokers, topic, p := setup(t, 50)
	group := testinfra.Name("g")
	var failures atomic.Int32
	s := &seen{m: map[string]int{}}
	h := stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error {
		if failures.Add(1) <= 3 {
			return errors.New("redis unavailable")
		}
		s.add(b)
		return nil
	})
	run(t, brokers, topic, group, h, func() bool { return s.len() == 50 })
	if failures.Load() <= 3 {
		t.Fatal("the handler was never failed")
	}

	// Same group again: committed records are not redelivered; new ones are.
	produce(t, p, topic, 50, 60)
	again := &seen{m: map[string]int{}}
	run(t, brokers, topic, group, stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error {
		again.add(b)
		return nil
	}), func() bool { return again.len() >= 10 })
	for v := range again.m {
		n, err := strconv.Atoi(v)
		if err != nil || n < 50 {
			t.Errorf("record %d was redelivered after its batch was committed", n)
		}
	}
}

func TestShutdownDrainsTheInFlightBatchAndCommitsIt(t *testing.T) {
	brokers, topic, _ := setup(t, 10)
	group := testinfra.Name("g")
	started := make(chan struct{})
	var once sync.Once
	s := &seen{m: map[string]int{}}
	slow := stream.HandlerFunc(func(ctx context.Context, b *stream.Batch) error {
		once.Do(func() { close(started) })
		select {
		case <-time.After(300 * time.Millisecond): // shutdown begins meanwhile
		case <-ctx.Done():
			return ctx.Err()
		}
		s.add(b)
		return nil
	})
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: group, Topics: []string{topic}, BatchSize: 100, Linger: 200 * time.Millisecond}, slow, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	drained := s.len()
	if drained == 0 {
		t.Fatal("the in-flight batch was abandoned at shutdown")
	}
	// Whatever was drained was committed: a new member of the group sees only the rest.
	rest := &seen{m: map[string]int{}}
	run(t, brokers, topic, group, stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error { rest.add(b); return nil }),
		func() bool { return drained+rest.len() >= 10 })
	for v := range rest.m {
		if s.m[v] > 0 {
			t.Errorf("record %s was drained and committed, yet redelivered", v)
		}
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	_, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: []string{"localhost:9092"}, Topics: []string{"t"}}, nil, nil, zaptest.NewLogger(t))
	if err == nil || !containsAll(err.Error(), "GroupID") {
		t.Fatalf("got %v", err)
	}
	_, err = stream.NewProducer(stream.ProducerConfig{Brokers: []string{"nohostport"}}, zaptest.NewLogger(t))
	if err == nil || !containsAll(err.Error(), "Brokers") {
		t.Fatalf("got %v", err)
	}
	err = stream.Security{SASLMechanism: "GSSAPI"}.Validate()
	if err == nil || !containsAll(err.Error(), "SASLMechanism") {
		t.Fatalf("got %v", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestAnOutageLongerThanTheDrainTimeoutIsWaitedOut: a handler failing (Redis down, say) for
// many drain timeouts keeps the consumer running and retrying the same batch; once it succeeds
// everything is handled and Run has not returned. Shutdown during the outage then stops the
// retries within the drain timeout without an error exit.
func TestAnOutageLongerThanTheDrainTimeoutIsWaitedOut(t *testing.T) {
	brokers, topic, p := setup(t, 20)
	var down atomic.Bool
	down.Store(true)
	var failures atomic.Int32
	s := &seen{m: map[string]int{}}
	h := stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error {
		if down.Load() {
			failures.Add(1)
			return errors.New("redis: connection refused")
		}
		s.add(b)
		return nil
	})
	const drain = 100 * time.Millisecond
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: testinfra.Name("g"), Topics: []string{topic},
		BatchSize: 10, Linger: 10 * time.Millisecond, DrainTimeout: drain, RetryBackoffMax: 20 * time.Millisecond}, h, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	// The outage lasts until the batch failed for at least 10 drain timeouts.
	first := time.Now()
	for failures.Load() == 0 || time.Since(first) < 10*drain {
		select {
		case err := <-done:
			t.Fatalf("the consumer exited during the outage: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	down.Store(false)
	waitUntil := time.Now().Add(60 * time.Second)
	for s.len() < 20 {
		select {
		case err := <-done:
			t.Fatalf("the consumer exited after the outage: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(waitUntil) {
			t.Fatalf("handled %d of 20 records after the outage", s.len())
		}
	}
	// A second outage, and a shutdown while a batch fails in it: Run stops cleanly, the batch
	// uncommitted (redelivered to the next owner).
	down.Store(true)
	before := failures.Load()
	produce(t, p, topic, 20, 30)
	for failures.Load() == before {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run at shutdown during an outage: %v, want a clean stop", err)
	}
}

// TestACommitIntervalCommitsOnTheIntervalAndAtShutdown: with CommitInterval the handled
// offsets reach the broker within the interval while the consumer runs, and the last ones
// when it shuts down, so a new member of the group gets nothing handled again.
func TestACommitIntervalCommitsOnTheIntervalAndAtShutdown(t *testing.T) {
	brokers, topic, p := setup(t, 30)
	group := testinfra.Name("g")
	admin := newAdmin(t, brokers)
	ctx := context.Background()
	committedAll := func() bool {
		ends, err := admin.EndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		got, err := admin.GroupOffsets(ctx, group, topic)
		if err != nil {
			t.Fatal(err)
		}
		for part, end := range ends {
			if got[part] != end {
				return false
			}
		}
		return true
	}
	s := &seen{m: map[string]int{}}
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: group, Topics: []string{topic},
		BatchSize: 10, Linger: 10 * time.Millisecond, CommitInterval: time.Second},
		stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error { s.add(b); return nil }), nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	for deadline := time.Now().Add(60 * time.Second); s.len() < 30 || !committedAll(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("handled %d of 30 records, committed all: %t, after 60s", s.len(), committedAll())
		}
	}
	// More records, handled, then shutdown at once: the interval has not passed.
	produce(t, p, topic, 30, 40)
	for deadline := time.Now().Add(60 * time.Second); s.len() < 40; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("handled %d of 40 records after 60s", s.len())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !committedAll() {
		t.Fatal("the offsets handled before shutdown were not committed by it")
	}
}
