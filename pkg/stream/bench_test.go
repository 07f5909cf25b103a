package stream_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

const benchRecords = 50_000

// BenchmarkConsumer measures consumer-group throughput (fetch, batch, commit) with a no-op
// handler: each iteration reads the same pre-produced topic with a fresh group. Run it
// against the real broker with KAFKA_BROKERS set (make bench does).
func BenchmarkConsumer(b *testing.B) {
	brokers := testinfra.Kafka(b)
	topic := testinfra.Name("bench")
	ctx := context.Background()
	if err := newAdmin(b, brokers).EnsureTopics(ctx, stream.TopicSpec{Name: topic, Partitions: 4, ReplicationFactor: 1}); err != nil {
		b.Fatal(err)
	}
	p, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	value := make([]byte, 80) // about the size of an encoded purchase
	recs := make([]stream.Record, 0, 5000)
	for i := range benchRecords {
		recs = append(recs, stream.Record{Topic: topic, Key: []byte(fmt.Sprintf("customer-%d", i%5000)), Value: value})
		if len(recs) == cap(recs) {
			if err := p.Produce(ctx, recs...); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		var n atomic.Int64
		h := stream.HandlerFunc(func(_ context.Context, batch *stream.Batch) error {
			n.Add(int64(len(batch.Messages)))
			return nil
		})
		c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: testinfra.Name("bench-g"), Topics: []string{topic}}, h, nil, zap.NewNop())
		if err != nil {
			b.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx) }()
		for n.Load() < benchRecords {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchRecords*b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkProduce measures synchronous produce throughput in batches of 1000 records.
func BenchmarkProduce(b *testing.B) {
	brokers := testinfra.Kafka(b)
	topic := testinfra.Name("bench-p")
	ctx := context.Background()
	if err := newAdmin(b, brokers).EnsureTopics(ctx, stream.TopicSpec{Name: topic, Partitions: 4, ReplicationFactor: 1}); err != nil {
		b.Fatal(err)
	}
	p, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	recs := make([]stream.Record, 1000)
	for i := range recs {
		recs[i] = stream.Record{Topic: topic, Key: []byte(fmt.Sprintf("customer-%d", i)), Value: make([]byte, 80)}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Produce(ctx, recs...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(recs)*b.N)/b.Elapsed().Seconds(), "records/s")
}
