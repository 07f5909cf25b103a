package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
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
	// Cutpoints swaps stored cut points into the processor's scorer.
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

// CutpointWatch polls a namespace's stored cut points and swaps a new version into the
// scorer's policy.
type CutpointWatch struct {
	Redis  redisconn.Client
	Keys   keyspace.Keyspace
	Scorer *Scorer
	Every  time.Duration // 0: 30s
	Log    *zap.Logger
}

// Run watches until ctx ends.
func (w CutpointWatch) Run(ctx context.Context) error {
	every := w.Every
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cp, ok, err := namespace.LoadCutpoints(ctx, w.Redis, w.Keys)
		if err != nil || !ok || cp.Version == w.Scorer.Policy().Cutpoints.Version {
			continue
		}
		if p, err := w.Scorer.Policy().WithCutpoints(cp); err == nil {
			w.Scorer.SetPolicy(p)
			w.Log.Info("cut points updated", zap.String("version", cp.Version))
		}
	}
}

// CutpointRefresh derives new cut points from the population histograms every interval.
// Concurrent sweepers may both refresh; the result is the same data under two version names,
// which is harmless.
type CutpointRefresh struct {
	Redis redisconn.Client
	Keys  keyspace.Keyspace
	Every time.Duration
	Log   *zap.Logger
}

// Run refreshes until ctx ends.
func (r CutpointRefresh) Run(ctx context.Context) error {
	t := time.NewTicker(r.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			version := "cp-" + now.UTC().Format("20060102T150405Z")
			cp, err := namespace.ComputeFromHistograms(ctx, r.Redis, r.Keys, version, 100)
			if errors.Is(err, namespace.ErrPopulationTooSmall) {
				continue
			}
			if err == nil {
				err = namespace.StoreCutpoints(ctx, r.Redis, r.Keys, cp)
			}
			if err != nil {
				r.Log.Warn("refreshing cut points", zap.Error(err))
			}
		}
	}
}
