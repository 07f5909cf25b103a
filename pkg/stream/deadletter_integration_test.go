package stream_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// A record of about 1 MB that fails validation is dead-lettered and the consumer commits
// past it, although the envelope (value, error text twice, source position) would be larger
// than the dead-letter topic accepts: the writer cuts the carried value, marking it truncated
// with the original's size and SHA-256, and keeps the source position and code. The
// dead-letter topic's max.message.bytes is set to the writer's default limit (1,000,000) so
// the check does not depend on the broker's default; a real broker enforces it (kfake does
// not check record sizes), hence RealKafkaBroker.
func TestANearlyOneMegabyteRecordIsDeadLetteredAndCommittedPast(t *testing.T) {
	brokers := testinfra.RealKafkaBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := zaptest.NewLogger(t)
	admin := newAdmin(t, brokers)
	input, dlq := testinfra.Name("dlq-big-in"), testinfra.Name("dlq-big-out")
	if err := admin.EnsureTopics(ctx,
		stream.TopicSpec{Name: input, Partitions: 1, ReplicationFactor: 1},
		stream.TopicSpec{Name: dlq, Partitions: 1, ReplicationFactor: 1,
			Config: map[string]string{"max.message.bytes": "1000000"}},
	); err != nil {
		t.Fatal(err)
	}
	reg, err := codec.NewEmbeddedRegistry()
	if err != nil {
		t.Fatal(err)
	}
	c, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	// An order id of almost a megabyte: a valid frame whose validation fails.
	big, err := c.Encode(event.Purchase{EventID: "p-big", CustomerID: "c-big", OccurredAt: now,
		OrderID: strings.Repeat("o", 1_000_000), Kind: event.KindPurchase, AmountMinor: 100, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	small, err := c.Encode(event.Purchase{EventID: "p-ok", CustomerID: "c-big", OccurredAt: now, OrderID: "o-ok",
		Kind: event.KindPurchase, AmountMinor: 100, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	producer, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := producer.Produce(ctx, stream.Record{Topic: input, Key: []byte("c-big"), Value: big}); err != nil {
		t.Fatal(err)
	}
	if err := producer.Produce(ctx, stream.Record{Topic: input, Key: []byte("c-big"), Value: small}); err != nil {
		t.Fatal(err)
	}

	validator, err := event.NewValidator(event.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	ok := &accepted{}
	sink := &stream.DeadLetterWriter{Producer: producer, Encoder: c, Topic: dlq, Service: "purchases"}
	group := testinfra.Name("dlq-big-group")
	consumer, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: group, Topics: []string{input},
		Linger: 20 * time.Millisecond},
		ingest.Guard(ingest.Handler(c, validator, func(string) string { return event.TopicPurchases }, ok), nil, sink), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	deadline := time.Now().Add(time.Minute)
	for {
		offs, err := admin.GroupOffsets(ctx, group, input)
		if err != nil {
			t.Fatal(err)
		}
		if offs[0] == 2 {
			break // both records committed: the big one did not stall the partition
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group committed %v in a minute, want offset 2 past the big record", offs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("consumer: %v", err)
	}
	if len(ok.records) != 1 || ok.records[0].Event.ID() != "p-ok" {
		t.Fatalf("accepted %+v, want p-ok only", ok.records)
	}

	out := make(chan stream.Message, 1)
	if err := admin.ReadRange(ctx, dlq, 0, 0, 1, out); err != nil {
		t.Fatal(err)
	}
	m := <-out
	if len(m.Key)+len(m.Value) > 1_000_000-stream.DeadLetterHeadroom {
		t.Errorf("dead letter of %d bytes", len(m.Key)+len(m.Value))
	}
	e, err := c.Decode(ctx, m.Value)
	if err != nil {
		t.Fatal(err)
	}
	d := e.(event.DeadLetter)
	sum := sha256.Sum256(big)
	if d.SourceTopic != input || d.SourcePartition != 0 || d.SourceOffset != 0 || d.ErrorCode != "invalid" ||
		!strings.Contains(d.ErrorMessage, "order_id") {
		t.Errorf("envelope lost the source position, code or reason: %s/%d@%d %s %q", d.SourceTopic, d.SourcePartition,
			d.SourceOffset, d.ErrorCode, d.ErrorMessage)
	}
	if !d.ValueTruncated || d.ValueSize != int64(len(big)) || d.ValueSHA256 != hex.EncodeToString(sum[:]) ||
		len(d.Value) == 0 || len(d.Value) >= len(big) || !bytes.HasPrefix(big, d.Value) {
		t.Errorf("value: truncated %v, size %d (want %d), sha %s, %d bytes kept (a prefix: %v)", d.ValueTruncated, d.ValueSize,
			len(big), d.ValueSHA256, len(d.Value), bytes.HasPrefix(big, d.Value))
	}
	t.Logf("source value %d bytes, dead letter %d bytes carrying %d of them", len(big), len(m.Value), len(d.Value))
}
