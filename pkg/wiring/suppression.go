package wiring

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// RestoreSuppression adds every customer id announced on the erasures topic to the
// deployment's suppression list, and returns how many records it read. The Redis set is what
// the consumers check, but it is only as durable as Redis (an AOF window, a restore from an
// older backup, a fresh Redis rebuilt by a replay); the erasures topic, kept forever and
// compacted per customer, is the durable list. Consumer services and replays restore it
// before they apply anything, so an erased customer never comes back. Records that do not
// decode are logged and skipped.
func (rt *Runtime) RestoreSuppression(ctx context.Context) (int, error) {
	topic := rt.Topic(event.TopicErasures)
	first, err := rt.Admin.OffsetsForTime(ctx, topic, time.Time{})
	if err != nil {
		return 0, fmt.Errorf("restoring the suppression list: %w", err)
	}
	ends, err := rt.Admin.EndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("restoring the suppression list: %w", err)
	}
	out := make(chan stream.Message, 256)
	errs := make(chan error, len(first))
	var wg sync.WaitGroup
	for p, from := range first {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- rt.Admin.ReadRange(ctx, topic, p, from, ends[p], out)
		}()
	}
	go func() { wg.Wait(); close(out); close(errs) }()
	var ids []string
	read := 0
	for m := range out {
		read++
		e, err := rt.Codec.Decode(ctx, m.Value)
		erased, ok := e.(event.CustomerErased)
		if err != nil || !ok || erased.CustomerID == "" {
			rt.Log.Warn("skipping a record of the erasures topic that is not an erasure", zap.String("topic", topic),
				zap.Int("partition", m.Partition), zap.Int64("offset", m.Offset), zap.Error(err))
			continue
		}
		ids = append(ids, erased.CustomerID)
	}
	for err := range errs {
		if err != nil {
			return read, fmt.Errorf("restoring the suppression list: %w", err)
		}
	}
	if err := namespace.SuppressAll(ctx, rt.Redis, rt.Deployment, ids); err != nil {
		return read, err
	}
	return read, nil
}
