package stream_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// TestOneProduceOfManyLargeRecordsFitsTheBrokersRequestLimit: 600 records of 8 KB for one key
// (one partition), about 4.8 MB, in one Produce: the producer splits them into requests the
// broker accepts (message.max.bytes, about 1 MB by default) instead of sending one batch the
// broker refuses on every retry, which would stall a relay's outbox shard.
func TestOneProduceOfManyLargeRecordsFitsTheBrokersRequestLimit(t *testing.T) {
	brokers := testinfra.Kafka(t)
	topic := testinfra.Name("large-batch")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := newAdmin(t, brokers).EnsureTopics(ctx, stream.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recs := make([]stream.Record, 600)
	for i := range recs {
		recs[i] = stream.Record{Topic: topic, Key: []byte("one-customer"), Value: append([]byte(fmt.Sprintf("%06d", i)), bytes.Repeat([]byte{'x'}, 8<<10)...)}
	}
	if err := p.Produce(ctx, recs...); err != nil {
		t.Fatalf("producing 600 records of 8 KB to one partition: %v", err)
	}
	ends, err := newAdmin(t, brokers).EndOffsets(ctx, topic)
	if err != nil || ends[0] != int64(len(recs)) {
		t.Fatalf("end offset %v (%v), want all %d records written", ends, err, len(recs))
	}
}
