package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// ProducerConfig configures a Producer.
type ProducerConfig struct {
	Brokers []string
	// BatchTimeout is how long the writer waits to fill a batch. kafka-go's default of one
	// second puts a second of latency on every synchronous write; a few milliseconds keeps
	// batching for throughput without that trap.
	BatchTimeout time.Duration
	// BatchSize bounds the records of one partition's batch (default 250). kafka-go allocates
	// and zeroes room for BatchSize messages for every batch it starts, however few it gets:
	// at 1,000 that was 14% of the relay's CPU (a relay call spreads a few dozen records over
	// each partition); at 250 the relay costs 15% less per event, the broker no more.
	BatchSize    int
	WriteTimeout time.Duration
	// MaxAttempts bounds kafka-go's own retries of a failed write.
	MaxAttempts int
	// BatchBytes bounds the records sent to one partition in one request, and so the
	// largest record (0: DefaultBatchBytes).
	BatchBytes int
	Security   Security
}

// WithDefaults fills unset fields.
func (c ProducerConfig) WithDefaults() ProducerConfig {
	if c.BatchTimeout == 0 {
		c.BatchTimeout = 5 * time.Millisecond
	}
	if c.BatchSize == 0 {
		c.BatchSize = 250
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	return c
}

// Validate reports the first problem, naming the field.
func (c ProducerConfig) Validate() error {
	if err := validateBrokers(c.Brokers); err != nil {
		return err
	}
	switch {
	case c.BatchTimeout < 0 || c.BatchTimeout > 5*time.Second:
		return fmt.Errorf("BatchTimeout: %s is not in 0..5s", c.BatchTimeout)
	case c.BatchSize < 1:
		return errors.New("BatchSize: must be positive")
	case c.WriteTimeout <= 0:
		return errors.New("WriteTimeout: must be positive")
	case c.MaxAttempts < 1:
		return errors.New("MaxAttempts: must be positive")
	case c.BatchBytes < 1:
		return errors.New("BatchBytes: must be positive")
	}
	return c.Security.Validate()
}

// Record is one record to produce. Key is the customer id for every topic of the pipeline, so
// one customer's records stay in order on one partition.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
	Time    time.Time // zero means now
}

// Producer writes records synchronously with acks from all in-sync replicas.
type Producer struct {
	w        *kafka.Writer
	requests *writerRequests
}

// DefaultBatchBytes bounds the records the producer sends to one partition in one request:
// 1 KiB under the broker's default message.max.bytes (1,048,588), which a larger batch would
// exceed, and the broker would refuse it whole (MESSAGE_TOO_LARGE) on every retry: a relay
// batch of large derived events would stall its outbox shard. It is also the largest record
// the producer sends.
const DefaultBatchBytes = 1<<20 - 1<<10

// NewProducer validates cfg (after WithDefaults) and returns a producer. Partitioning is
// murmur2 on the key, the hash the Java client uses, so records produced by any Kafka client
// with the same key land on the same partition as ours.
func NewProducer(cfg ProducerConfig, log *zap.Logger) (*Producer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("producer config: %w", err)
	}
	transport, err := cfg.Security.transport()
	if err != nil {
		return nil, err
	}
	w := &kafka.Writer{
		Addr:                   kafka.TCP(cfg.Brokers...),
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           cfg.BatchTimeout,
		BatchSize:              cfg.BatchSize,
		BatchBytes:             int64(cfg.BatchBytes),
		WriteTimeout:           cfg.WriteTimeout,
		MaxAttempts:            cfg.MaxAttempts,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
		Transport:              transport,
		ErrorLogger:            kafka.LoggerFunc(func(msg string, args ...any) { log.Warn(fmt.Sprintf(msg, args...)) }),
	}
	return &Producer{w: w, requests: newWriterRequests(w)}, nil
}

// PartitionOf returns the partition of a topic with n partitions that the producer writes
// key to (murmur2, as the Java client's default partitioner).
func PartitionOf(key []byte, n int) int {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return (&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: key}, parts...)
}

// Produce writes the records and returns once all of them are acknowledged, or the first
// error. On error some records may have been written: callers retry, and consumers dedupe by
// event id.
func (p *Producer) Produce(ctx context.Context, records ...Record) error {
	if len(records) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(records))
	for i, r := range records {
		var headers []kafka.Header
		if len(r.Headers) > 0 {
			headers = make([]kafka.Header, len(r.Headers))
			for j, h := range r.Headers {
				headers[j] = kafka.Header{Key: h.Key, Value: h.Value}
			}
		}
		msgs[i] = kafka.Message{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: headers, Time: r.Time}
	}
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("producing %d records: %w", len(records), err)
	}
	return nil
}

// Requests returns the collector of the producer's requests to the broker (produce requests,
// records, bytes, retries, errors), for the process's Prometheus registry.
func (p *Producer) Requests() prometheus.Collector { return p.requests }

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.w.Close() }
