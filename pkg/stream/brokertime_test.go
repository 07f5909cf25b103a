package stream_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// lockedSink keeps the rejections it is given, as the dead-letter topic would; the consumer
// calls it from its own goroutine.
type lockedSink struct {
	mu       sync.Mutex
	rejected []stream.Rejection
}

func (s *lockedSink) DeadLetter(_ context.Context, r []stream.Rejection) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected = append(s.rejected, r...)
	return nil
}

// accepted collects the records validation let through.
type accepted struct {
	mu      sync.Mutex
	records []ingest.Record
}

func (a *accepted) HandleRecords(_ context.Context, _ *stream.Batch, rs []ingest.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.records = append(a.records, rs...)
	return nil
}

// A producer whose clock says 2030 cannot move a customer's clock there. Validation takes a
// record's Kafka timestamp as "now" for its future-skew check, and:
//
//   - on a topic created as the services create input topics (MaxTimestampAhead: CreateTime,
//     message.timestamp.after.max.ms one minute) the broker refuses a record stamped in 2030,
//     and a purchase with occurred_at in 2030 from a producer with a correct clock is rejected
//     by the consumer as future-skewed;
//   - on a LogAppendTime topic the broker accepts the 2030 stamp (it no longer checks it) and
//     kafka-go's reader reports it anyway instead of the broker's append time, so the 2030
//     purchase passes: LogAppendTime is no guard with kafka-go, and CheckProducerClock flags it;
//   - on a topic at Kafka 4's default (records up to an hour ahead) a producer 50 minutes ahead
//     gets a purchase 55 minutes in the future accepted; CheckProducerClock flags it too.
//
// The in-process kfake broker stores these settings but enforces neither (it only honours a
// batch's own LogAppendTime flag, which producers do not set), so this runs on a real broker.
func TestInputTopicsBoundProducersClocks(t *testing.T) {
	brokers := testinfra.RealKafkaBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := zaptest.NewLogger(t)
	admin := newAdmin(t, brokers)
	bounded, appendTime, loose := testinfra.Name("ts-bounded"), testinfra.Name("ts-append"), testinfra.Name("ts-loose")
	if err := admin.EnsureTopics(ctx,
		stream.TopicSpec{Name: bounded, Partitions: 1, ReplicationFactor: 1, MaxTimestampAhead: stream.DefaultMaxTimestampAhead},
		stream.TopicSpec{Name: appendTime, Partitions: 1, ReplicationFactor: 1, Config: map[string]string{stream.TimestampTypeConfig: stream.LogAppendTime}},
		stream.TopicSpec{Name: loose, Partitions: 1, ReplicationFactor: 1},
	); err != nil {
		t.Fatal(err)
	}
	if err := admin.CheckProducerClock(ctx, bounded, stream.DefaultMaxTimestampAhead); err != nil {
		t.Errorf("CheckProducerClock(bounded) = %v, want nil", err)
	}
	for _, topic := range []string{appendTime, loose} {
		err := admin.CheckProducerClock(ctx, topic, stream.DefaultMaxTimestampAhead)
		if !errors.Is(err, stream.ErrProducerClock) ||
			!strings.Contains(err.Error(), "--add-config message.timestamp.type=CreateTime,message.timestamp.after.max.ms=60000") {
			t.Errorf("CheckProducerClock(%s) = %v, want ErrProducerClock with the fix", topic, err)
		}
	}

	reg, err := codec.NewEmbeddedRegistry()
	if err != nil {
		t.Fatal(err)
	}
	c, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	encode := func(id string, at time.Time) []byte {
		t.Helper()
		v, err := c.Encode(event.Purchase{EventID: id, CustomerID: "c-" + id, OccurredAt: at, OrderID: "o-" + id,
			Kind: event.KindPurchase, AmountMinor: 1000, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	producer, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	future := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	err = producer.Produce(ctx, stream.Record{Topic: bounded, Key: []byte("c-far"), Value: encode("far", future), Time: future})
	if err == nil || !strings.Contains(err.Error(), "Invalid Timestamp") {
		t.Errorf("a record stamped in 2030 on the bounded topic: %v, want the broker's INVALID_TIMESTAMP", err)
	}
	ahead := time.Now().Add(50 * time.Minute).Truncate(time.Millisecond)
	before := time.Now().Add(-time.Second) // broker and test share the machine's clock
	if err := producer.Produce(ctx,
		stream.Record{Topic: bounded, Key: []byte("c-honest"), Value: encode("honest", future)}, // stamped now
		stream.Record{Topic: appendTime, Key: []byte("c-append"), Value: encode("append", future), Time: future},
		stream.Record{Topic: loose, Key: []byte("c-ahead"), Value: encode("ahead", ahead.Add(5*time.Minute)), Time: ahead},
	); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Add(time.Second)

	// The real consumer path: group consumer, the consumers' middleware chain, decode and
	// validate.
	validator, err := event.NewValidator(event.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	sink, ok := &lockedSink{}, &accepted{}
	consumer, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: testinfra.Name("ts-group"),
		Topics: []string{bounded, appendTime, loose}, Linger: 20 * time.Millisecond},
		ingest.Guard(ingest.Handler(c, validator, func(string) string { return event.TopicPurchases }, ok), nil, sink), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	deadline := time.Now().Add(time.Minute)
	for {
		sink.mu.Lock()
		ok.mu.Lock()
		n := len(sink.rejected) + len(ok.records)
		ok.mu.Unlock()
		sink.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer handled %d of the 3 records in a minute", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("consumer: %v", err)
	}

	if len(sink.rejected) != 1 || sink.rejected[0].Message.Topic != bounded {
		t.Fatalf("rejected %+v, want the record of the bounded topic only", sink.rejected)
	}
	r := sink.rejected[0]
	if r.Message.Time.Before(before) || r.Message.Time.After(after) {
		t.Errorf("bounded topic's record stamped %s, want the wall clock in [%s, %s]", r.Message.Time, before, after)
	}
	if r.Code != "invalid" || !strings.Contains(r.Err.Error(), "occurred_at") || !strings.Contains(r.Err.Error(), "in the future") {
		t.Errorf("rejection %s: %v; want invalid, occurred_at in the future", r.Code, r.Err)
	}
	// The holes the bound closes: both future purchases accepted, each "now" set by its producer.
	want := map[string]time.Time{appendTime: future, loose: ahead}
	if len(ok.records) != 2 {
		t.Fatalf("accepted %+v, want the LogAppendTime and the loose topic's records", ok.records)
	}
	for _, rec := range ok.records {
		if w, found := want[rec.Message.Topic]; !found || !rec.Message.Time.Equal(w) {
			t.Errorf("accepted %s stamped %s, want %s (the producer's clock)", rec.Message.Topic, rec.Message.Time, w)
		}
	}
}
