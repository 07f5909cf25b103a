// Package stream is the pipeline's only door to Kafka (segmentio/kafka-go): consumer-group
// consumers that hand micro-batches to a handler and commit only after it succeeds, a producer
// keyed by customer, an Admin (topic bootstrap, offsets, group positions, range reads, topic
// and group deletion; one per process, retrying Kafka's transient errors), and the middleware
// that keeps one bad record from ever blocking a partition (recover, dead-letter, metrics).
package stream

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Message is one consumed Kafka record.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	// HighWaterMark is the partition's end offset when the record was fetched; the consumer
	// is caught up on the partition when Offset+1 == HighWaterMark.
	HighWaterMark int64
	Key           []byte
	Value         []byte
	Headers       []Header
	// Time is the record's Kafka timestamp (not the event time inside the value).
	Time time.Time
}

// Rejection is a record the handler could not process, with a short machine code
// ("malformed", "invalid", "handler_panic", ...) and the error in full.
type Rejection struct {
	Message Message
	Code    string
	Err     error
}

// Batch is a micro-batch of records from one consumer, in fetch order (per partition in
// offset order). Handlers mark records they cannot process with Reject; the dead-letter
// middleware publishes those before the batch is committed.
type Batch struct {
	Messages []Message
	mu       sync.Mutex // guards rejected: a handler may reject from several goroutines
	rejected map[int]Rejection
}

// NewBatch returns a batch of msgs.
func NewBatch(msgs []Message) *Batch { return &Batch{Messages: msgs} }

// Reject marks record i as not processable. Rejecting a record twice keeps the first reason.
func (b *Batch) Reject(i int, code string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rejected == nil {
		b.rejected = map[int]Rejection{}
	}
	if _, done := b.rejected[i]; !done {
		b.rejected[i] = Rejection{Message: b.Messages[i], Code: code, Err: err}
	}
}

// Rejected reports whether record i was rejected.
func (b *Batch) Rejected(i int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.rejected[i]
	return ok
}

// Rejections returns the rejected records in batch order.
func (b *Batch) Rejections() []Rejection {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Rejection, 0, len(b.rejected))
	for i := range b.Messages {
		if r, ok := b.rejected[i]; ok {
			out = append(out, r)
		}
	}
	return out
}

// Handler processes a batch. Returning an error means "nothing of this batch may be
// committed": the consumer retries the whole batch, so handlers must be idempotent per record
// (ours are: state remembers the last applied offset per partition). Per-record problems are
// not errors; they are Rejections.
type Handler interface {
	HandleBatch(ctx context.Context, b *Batch) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, b *Batch) error

// HandleBatch implements Handler.
func (f HandlerFunc) HandleBatch(ctx context.Context, b *Batch) error { return f(ctx, b) }

// Middleware wraps a Handler with cross-cutting behaviour.
type Middleware func(Handler) Handler

// Chain applies middleware so that the first one listed is the outermost.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// PanicError is returned (or recorded as a rejection) when a handler panicked.
type PanicError struct{ Value any }

func (e PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }
