package ingest_test

import (
	"context"
	"fmt"
	"reflect"
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

type collector struct {
	mu      sync.Mutex
	records []ingest.Record
	dead    []event.DeadLetter
}

func (c *collector) HandleRecords(_ context.Context, _ *stream.Batch, rs []ingest.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, rs...)
	return nil
}

func (c *collector) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.records), len(c.dead)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func score(n int32) *int32 { return &n }

// TestEventsRoundTripThroughKafkaAndBadRecordsAreDeadLettered is the foundation's end-to-end
// check: every input type goes through the codec to Kafka and back in a consumer group
// unchanged, while an undecodable and an invalid record land on the dead-letter topic with
// their reasons and the valid records around them are processed.
func TestEventsRoundTripThroughKafkaAndBadRecordsAreDeadLettered(t *testing.T) {
	brokers := testinfra.Kafka(t)
	t.Logf("kafka: %v (real: %v)", brokers, testinfra.RealKafka())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := zaptest.NewLogger(t)

	suffix := testinfra.Name("t")
	topic := func(base string) string { return base + "." + suffix }
	logical := func(t string) string { return strings.TrimSuffix(t, "."+suffix) }
	purchases, logins, feedback, dlq := topic(event.TopicPurchases), topic(event.TopicLogins), topic(event.TopicFeedback), topic(event.TopicDeadLetter)
	var specs []stream.TopicSpec
	for _, name := range []string{purchases, logins, feedback, dlq} {
		specs = append(specs, stream.TopicSpec{Name: name, Partitions: 3, ReplicationFactor: 1})
	}
	admin, err := stream.NewAdmin(brokers, stream.Security{}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.EnsureTopics(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	// A second call finds the topics there and succeeds: bootstrap is idempotent.
	if err := admin.EnsureTopics(ctx, specs...); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}

	reg, err := codec.NewEmbeddedRegistry()
	if err != nil {
		t.Fatal(err)
	}
	c, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()

	now := time.Now().UTC().Truncate(time.Millisecond)
	valid := []event.Input{
		event.Purchase{EventID: "p1", CustomerID: "c1", OccurredAt: now, OrderID: "o1", Kind: event.KindPurchase, AmountMinor: 1999, Currency: "EUR", Channel: "WEB"},
		event.Purchase{EventID: "p2", CustomerID: "c1", OccurredAt: now, OrderID: "o2", Kind: event.KindRefund, AmountMinor: 500, Currency: "EUR", RefundOfOrderID: "o1"},
		event.Login{EventID: "l1", CustomerID: "c2", OccurredAt: now, Channel: event.ChannelStore},
		event.Feedback{EventID: "f1", CustomerID: "c3", OccurredAt: now, Kind: event.FeedbackCSAT, Score: score(2)},
		event.Feedback{EventID: "f2", CustomerID: "c3", OccurredAt: now, Kind: event.FeedbackComplaintClosed, CaseID: "k1"},
	}
	topicOf := map[string]string{"Purchase": purchases, "Login": logins, "Feedback": feedback}
	var records []stream.Record
	add := func(topic, key string, value []byte) {
		records = append(records, stream.Record{Topic: topic, Key: []byte(key), Value: value})
	}
	for i, e := range valid {
		value, err := c.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		add(topicOf[e.Schema()], e.Customer(), value)
		if i == 1 { // bad records between good ones on the same key and partition
			add(purchases, "c1", []byte("not avro at all"))
			bad, _ := c.Encode(event.Purchase{EventID: "p3", CustomerID: "c1", OccurredAt: now, OrderID: "o3", Kind: event.KindPurchase, AmountMinor: -5, Currency: "EUR"})
			add(purchases, "c1", bad)
		}
	}
	nps11, _ := c.Encode(event.Feedback{EventID: "f3", CustomerID: "c3", OccurredAt: now, Kind: event.FeedbackNPS, Score: score(11)})
	add(feedback, "c3", nps11)
	// Valid records keyed by something else than their customer, or not keyed at all.
	misKeyed, _ := c.Encode(event.Purchase{EventID: "p4", CustomerID: "c1", OccurredAt: now, OrderID: "o4", Kind: event.KindPurchase, AmountMinor: 700, Currency: "EUR"})
	add(purchases, "c9", misKeyed)
	unkeyed, _ := c.Encode(event.Login{EventID: "l2", CustomerID: "c2", OccurredAt: now, Channel: event.ChannelWeb})
	add(logins, "", unkeyed)
	if err := producer.Produce(ctx, records...); err != nil {
		t.Fatal(err)
	}

	got := &collector{}
	validator, _ := event.NewValidator(event.DefaultLimits())
	sink := &stream.DeadLetterWriter{Producer: producer, Encoder: c, Topic: dlq, Service: "test"}
	handler := stream.Chain(ingest.Handler(c, validator, logical, got),
		stream.Instrument(stream.NewMetrics(nil)), stream.DeadLetter(sink), stream.Recover())
	group := testinfra.Name("group")
	consumer, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: group,
		Topics: []string{purchases, logins, feedback}, Linger: 20 * time.Millisecond}, handler, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	waitFor(t, "the valid records", func() bool { n, _ := got.counts(); return n >= len(valid) })

	// The dead-letter topic, read as any consumer would.
	dlqConsumer, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: group + "-dlq", Topics: []string{dlq}},
		stream.HandlerFunc(func(ctx context.Context, b *stream.Batch) error {
			for _, m := range b.Messages {
				e, err := c.Decode(ctx, m.Value)
				if err != nil {
					return err
				}
				d := e.(event.DeadLetter)
				if code := header(m, stream.HeaderErrorCode); code != d.ErrorCode {
					return fmt.Errorf("header code %q, envelope %q", code, d.ErrorCode)
				}
				got.mu.Lock()
				got.dead = append(got.dead, d)
				got.mu.Unlock()
			}
			return nil
		}), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	dlqDone := make(chan error, 1)
	go func() { dlqDone <- dlqConsumer.Run(runCtx) }()
	waitFor(t, "five dead letters", func() bool { _, n := got.counts(); return n >= 5 })
	stop()
	if err := <-done; err != nil {
		t.Fatalf("consumer: %v", err)
	}
	if err := <-dlqDone; err != nil {
		t.Fatalf("dead-letter consumer: %v", err)
	}

	got.mu.Lock()
	defer got.mu.Unlock()
	byID := map[string]event.Input{}
	for _, r := range got.records {
		byID[r.Event.ID()] = r.Event
	}
	if len(got.records) != len(valid) {
		t.Fatalf("processed %d records, want exactly the %d valid ones", len(got.records), len(valid))
	}
	for _, e := range valid {
		if !reflect.DeepEqual(byID[e.ID()], e) {
			t.Errorf("%s: got %+v, want %+v", e.ID(), byID[e.ID()], e)
		}
	}
	codes := map[string]event.DeadLetter{}
	for _, d := range got.dead {
		codes[d.ErrorCode+"/"+logical(d.SourceTopic)] = d
	}
	if d, ok := codes["not_framed/"+event.TopicPurchases]; !ok || string(d.Value) != "not avro at all" {
		t.Errorf("undecodable record not dead-lettered with its bytes: %+v", got.dead)
	}
	if d, ok := codes["invalid/"+event.TopicPurchases]; !ok || !strings.Contains(d.ErrorMessage, "amount_minor") {
		t.Errorf("invalid purchase not dead-lettered naming amount_minor: %+v", got.dead)
	}
	if d, ok := codes["invalid/"+event.TopicFeedback]; !ok || !strings.Contains(d.ErrorMessage, "score: 11 is outside the NPS range") {
		t.Errorf("invalid NPS not dead-lettered with its reason: %+v", got.dead)
	}
	if d, ok := codes[ingest.CodeKeyMismatch+"/"+event.TopicPurchases]; !ok || string(d.Key) != "c9" ||
		!strings.Contains(d.ErrorMessage, `record key "c9" differs from its customer_id "c1"`) {
		t.Errorf("mis-keyed purchase not dead-lettered with its reason: %+v", got.dead)
	}
	if d, ok := codes[ingest.CodeKeyMismatch+"/"+event.TopicLogins]; !ok || !strings.Contains(d.ErrorMessage, "record has no key") {
		t.Errorf("unkeyed login not dead-lettered with its reason: %+v", got.dead)
	}
	if len(got.dead) != 5 {
		t.Errorf("%d dead letters, want 5: %+v", len(got.dead), got.dead)
	}
}

func header(m stream.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
