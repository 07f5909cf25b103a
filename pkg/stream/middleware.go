package stream

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Recover turns a handler panic into rejections instead of a crash loop. When a batch
// panics, its records are re-run one at a time, so only the record that panics is rejected
// (code "handler_panic") and the rest are processed. Handlers must be idempotent, which the
// consumer contract already requires.
func Recover() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, b *Batch) error {
			err := callSafely(ctx, next, b)
			var p PanicError
			if !errors.As(err, &p) {
				return err
			}
			if len(b.Messages) == 1 {
				b.Reject(0, "handler_panic", p)
				return nil
			}
			for i := range b.Messages {
				if b.Rejected(i) {
					continue
				}
				one := NewBatch(b.Messages[i : i+1])
				if err := callSafely(ctx, next, one); err != nil {
					if errors.As(err, &p) {
						b.Reject(i, "handler_panic", p)
						continue
					}
					return err
				}
				for _, r := range one.Rejections() {
					b.Reject(i, r.Code, r.Err)
				}
			}
			return nil
		})
	}
}

func callSafely(ctx context.Context, h Handler, b *Batch) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = PanicError{Value: v}
		}
	}()
	return h.HandleBatch(ctx, b)
}

// DeadLetterSink receives rejected records. It must return only after they are durable
// (acknowledged by Kafka), because the batch is committed right after.
type DeadLetterSink interface {
	DeadLetter(ctx context.Context, rejected []Rejection) error
}

// DeadLetter publishes the batch's rejections to sink after the handler succeeded. If the
// sink fails the batch fails too and is retried, so a rejected record is never committed
// without being on the dead-letter topic.
func DeadLetter(sink DeadLetterSink) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, b *Batch) error {
			if err := next.HandleBatch(ctx, b); err != nil {
				return err
			}
			rejected := b.Rejections()
			if len(rejected) == 0 {
				return nil
			}
			if err := sink.DeadLetter(ctx, rejected); err != nil {
				return fmt.Errorf("dead-lettering %d records: %w", len(rejected), err)
			}
			return nil
		})
	}
}

// Oversize rejects records whose value is larger than maxBytes before any decoding, with
// code "oversize".
func Oversize(maxBytes int) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, b *Batch) error {
			for i, m := range b.Messages {
				if len(m.Value) > maxBytes {
					b.Reject(i, "oversize", fmt.Errorf("value of %d bytes exceeds the limit of %d", len(m.Value), maxBytes))
				}
			}
			return next.HandleBatch(ctx, b)
		})
	}
}

// Instrument records batch counts, sizes, latency and rejections in m.
func Instrument(m *Metrics) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, b *Batch) error {
			start := time.Now()
			err := next.HandleBatch(ctx, b)
			m.observeBatch(b, time.Since(start), err)
			return err
		})
	}
}
