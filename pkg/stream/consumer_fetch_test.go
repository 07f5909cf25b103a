package stream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"
)

// scriptedReader answers FetchMessage from a script of errors and messages, then blocks.
type scriptedReader struct {
	mu        sync.Mutex
	script    []any // error or kafka.Message
	committed []kafka.Message
}

func (r *scriptedReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	r.mu.Lock()
	if len(r.script) > 0 {
		next := r.script[0]
		r.script = r.script[1:]
		r.mu.Unlock()
		if err, ok := next.(error); ok {
			return kafka.Message{}, err
		}
		return next.(kafka.Message), nil
	}
	r.mu.Unlock()
	<-ctx.Done()
	return kafka.Message{}, ctx.Err()
}

func (r *scriptedReader) CommitMessages(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.committed = append(r.committed, msgs...)
	return nil
}

func (r *scriptedReader) Close() error { return nil }

func (r *scriptedReader) commits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.committed)
}

func newScriptedConsumer(t *testing.T, r *scriptedReader, handled chan<- Message) *Consumer {
	t.Helper()
	cfg := ConsumerConfig{Brokers: []string{"127.0.0.1:1"}, GroupID: "g", Topics: []string{"t"},
		BatchSize: 10, Linger: time.Millisecond, RetryBackoffMax: 20 * time.Millisecond}.WithDefaults()
	h := HandlerFunc(func(_ context.Context, b *Batch) error {
		for _, m := range b.Messages {
			handled <- m
		}
		return nil
	})
	return &Consumer{cfg: cfg, reader: r, handler: h, metrics: NewMetrics(nil), log: zaptest.NewLogger(t)}
}

// A fresh broker answers the first fetches of a new partition with NOT_LEADER_OR_FOLLOWER:
// the consumer must wait and fetch again, not exit (which made services crash-loop on a
// broker started seconds before).
func TestConsumerRetriesTransientFetchErrors(t *testing.T) {
	r := &scriptedReader{script: []any{
		kafka.NotLeaderForPartition, kafka.LeaderNotAvailable, kafka.GroupCoordinatorNotAvailable,
		kafka.Message{Topic: "t", Partition: 0, Offset: 7, Value: []byte("v")},
	}}
	handled := make(chan Message, 1)
	c := newScriptedConsumer(t, r, handled)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case m := <-handled:
		if m.Offset != 7 {
			t.Errorf("handled offset %d, want 7", m.Offset)
		}
	case err := <-done:
		t.Fatalf("consumer exited on a transient fetch error: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the record after the transient errors was never handled")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	var counted dto.Metric
	if err := c.metrics.fetchErrors.Write(&counted); err != nil {
		t.Fatal(err)
	}
	if got := counted.GetCounter().GetValue(); got != 3 {
		t.Errorf("loyalty_fetch_errors_total = %v, want 3", got)
	}
	if r.commits() != 1 {
		t.Errorf("%d offsets committed, want 1", r.commits())
	}
}

func TestConsumerStopsOnAFatalFetchError(t *testing.T) {
	fatal := errors.New("sasl authentication failed")
	c := newScriptedConsumer(t, &scriptedReader{script: []any{fatal}}, make(chan Message, 1))
	err := c.Run(context.Background())
	if !errors.Is(err, fatal) {
		t.Fatalf("Run = %v, want the fatal fetch error", err)
	}
}
