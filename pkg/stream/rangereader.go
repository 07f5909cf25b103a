package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
)

// ReadRange reads one partition from offset from (inclusive) to offset to (exclusive) and
// sends the records to out in offset order, then returns nil. It reads outside any consumer
// group: the caller tracks and commits its position (replay does, to its own group).
func ReadRange(ctx context.Context, brokers []string, sec Security, topic string, partition int, from, to int64, out chan<- Message) error {
	if from >= to {
		return nil
	}
	dialer, err := sec.dialer()
	if err != nil {
		return err
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: 1000})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return fmt.Errorf("seeking %s/%d to %d: %w", topic, partition, from, err)
	}
	for {
		m, err := r.FetchMessage(ctx)
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
