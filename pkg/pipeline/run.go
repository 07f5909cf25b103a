package pipeline

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/supervise"
)

// Consumer is one consumer service (purchases, logins or feedback): a Kafka consumer group
// whose batches are decoded, validated and applied to the store by Processor, while the
// scorer follows the namespace's stored cut points.
type Consumer struct {
	// Kafka configures the group: brokers, physical topics, group id, batching.
	Kafka     stream.ConsumerConfig
	Processor *Processor
	Decoder   ingest.Decoder
	// Logical maps a physical topic to its logical name (strips a test's topic suffix).
	Logical     func(physical string) string
	DeadLetters stream.DeadLetterSink
	Metrics     *stream.Metrics
	// Cutpoints keeps the processor's scorer under the namespace's sealed cut points.
	Cutpoints CutpointWatch
	// Heartbeat, when set, reports the group's caught-up partitions to the watermark.
	Heartbeat *Heartbeat
	Log       *zap.Logger
}

// Run consumes until ctx ends.
func (c Consumer) Run(ctx context.Context) error {
	validator, err := event.NewValidator(event.DefaultLimits())
	if err != nil {
		return fmt.Errorf("validator: %w", err)
	}
	handler := ingest.Guard(ingest.Handler(c.Decoder, validator, c.Logical, c.Processor), c.Metrics, c.DeadLetters)
	consumer, err := stream.NewConsumer(c.Kafka, handler, c.Metrics, c.Log)
	if err != nil {
		return err
	}
	var tasks supervise.Group
	tasks.Add(consumer.Run, c.Cutpoints.Run)
	if c.Heartbeat != nil {
		tasks.Add(c.Heartbeat.Run)
	}
	return tasks.Run(ctx)
}
