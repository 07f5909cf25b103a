package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// ReadRange reads one partition from offset from (inclusive) to offset to (exclusive) and
// sends the records to out in offset order, then returns nil. It reads outside any consumer
// group: the caller tracks and commits its position (replay does, to its own group). It
// connects with a kafka.Reader of its own (a reader does not share the Admin's transport);
// transient errors are retried under the Admin's policy, counted from the last record read.
func (a *Admin) ReadRange(ctx context.Context, topic string, partition int, from, to int64, out chan<- Message) error {
	if from >= to {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: a.brokers, Topic: topic, Partition: partition, Dialer: a.dialer,
		MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: 1000})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return fmt.Errorf("seeking %s/%d to %d: %w", topic, partition, from, err)
	}
	var (
		failing  time.Time // first of the current run of transient errors
		attempts int
	)
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil && ctx.Err() == nil && Retriable(err) && !errors.Is(err, io.EOF) {
			// The reader reconnects by itself; it reports errors after a few failed attempts.
			if attempts++; attempts == 1 {
				failing = time.Now()
			}
			wait := a.policy.backoff(attempts)
			if time.Since(failing)+wait <= a.policy.Total {
				a.log.Debug("retrying kafka read", zap.String("topic", topic), zap.Int("partition", partition),
					zap.Int("attempt", attempts), zap.Error(err))
				if !sleepCtx(ctx, wait) {
					return ctx.Err()
				}
				continue
			}
			return fmt.Errorf("reading %s/%d: still failing after %d attempts in %s: %w", topic, partition, attempts,
				time.Since(failing).Round(time.Millisecond), err)
		}
		attempts = 0
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("reading %s/%d: reader closed before offset %d", topic, partition, to)
			}
			return fmt.Errorf("reading %s/%d: %w", topic, partition, err)
		}
		if m.Offset >= to {
			return nil
		}
		msg := Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, HighWaterMark: m.HighWaterMark,
			Key: m.Key, Value: m.Value, Time: m.Time}
		if len(m.Headers) > 0 {
			msg.Headers = make([]Header, len(m.Headers))
			for i, h := range m.Headers {
				msg.Headers[i] = Header{Key: h.Key, Value: h.Value}
			}
		}
		select {
		case out <- msg:
		case <-ctx.Done():
			return ctx.Err()
		}
		if m.Offset+1 >= to {
			return nil
		}
	}
}
