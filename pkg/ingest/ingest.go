// Package ingest is the first stage of every consumer service: it decodes each record of a
// micro-batch with the codec, checks it is the contract its topic carries, validates it, and
// rejects (for dead-lettering) whatever fails, so the service's own handler only ever sees
// valid input events.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// Record is a decoded, valid input event with the Kafka record it came from.
type Record struct {
	Message stream.Message
	Event   event.Input
	batch   *stream.Batch
	index   int
}

// Reject marks the record for the dead-letter topic (a rule of a later stage refused it).
func (r Record) Reject(code string, err error) { r.batch.Reject(r.index, code, err) }

// Source returns the record's position as carried by derived events.
func (r Record) Source() event.Source {
	return event.Source{Topic: r.Message.Topic, Partition: int32(r.Message.Partition), Offset: r.Message.Offset}
}

// RecordsHandler processes the valid records of a batch, in batch order. It is called for
// every batch, even one whose records were all rejected (records is then empty), so it can
// account for the batch's position on each partition.
type RecordsHandler interface {
	HandleRecords(ctx context.Context, b *stream.Batch, records []Record) error
}

// RecordsHandlerFunc adapts a function to RecordsHandler.
type RecordsHandlerFunc func(ctx context.Context, b *stream.Batch, records []Record) error

// HandleRecords implements RecordsHandler.
func (f RecordsHandlerFunc) HandleRecords(ctx context.Context, b *stream.Batch, records []Record) error {
	return f(ctx, b, records)
}

// Decoder is the part of codec.Codec ingest needs.
type Decoder interface {
	Decode(ctx context.Context, value []byte) (event.Event, error)
}

// Handler returns a stream.Handler that decodes and validates every record and passes the
// valid ones to next. A record whose Kafka key is not its customer_id (or is empty) is
// rejected with CodeKeyMismatch. Validation's "now" is the record's Kafka timestamp (falling back to
// the wall clock when absent), so replaying a topic makes exactly the same decisions as the
// live run did. Topic names are matched after stripping any replay suffix the caller mapped
// (the caller passes the logical topic via topicOf; nil means the record's own topic).
func Handler(dec Decoder, validator *event.Validator, topicOf func(string) string, next RecordsHandler) stream.Handler {
	if topicOf == nil {
		topicOf = func(t string) string { return t }
	}
	return stream.HandlerFunc(func(ctx context.Context, b *stream.Batch) error {
		records := make([]Record, 0, len(b.Messages))
		for i, m := range b.Messages {
			if b.Rejected(i) {
				continue
			}
			e, err := dec.Decode(ctx, m.Value)
			if err != nil {
				if !isPermanent(err) {
					return fmt.Errorf("decoding record %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
				}
				b.Reject(i, codec.Code(err), err)
				continue
			}
			// The contract the input topic carries (event.Streams); other topics carry none.
			var want string
			if s, ok := event.StreamOfTopic(topicOf(m.Topic)); ok && s.Role == event.RoleInput {
				want = s.Schema
			}
			if e.Schema() != want {
				b.Reject(i, "wrong_schema", fmt.Errorf("topic %s carries %s records, got %s", m.Topic, want, e.Schema()))
				continue
			}
			in := e.(event.Input)
			now := m.Time
			if now.IsZero() {
				now = time.Now()
			}
			if err := validator.Validate(in, now); err != nil {
				b.Reject(i, "invalid", err)
				continue
			}
			if err := checkKey(m.Key, in.Customer()); err != nil {
				b.Reject(i, CodeKeyMismatch, err)
				continue
			}
			records = append(records, Record{Message: m, Event: in, batch: b, index: i})
		}
		return next.HandleRecords(ctx, b, records)
	})
}

// CodeKeyMismatch is the dead-letter code of a record whose Kafka key is not its customer id.
const CodeKeyMismatch = "key_mismatch"

// checkKey requires a record's Kafka key to be its customer id. The key picks the partition,
// and everything per customer rests on one customer's records of a topic being in one
// partition, in order: the processor's per-customer grouping, the offsets that recognise a
// redelivery, the remembered event ids, event-time alignment. A record keyed otherwise (or not
// at all, which spreads a customer over partitions) would be applied out of order with the
// customer's others, so it is refused rather than guessed at. Every producer in the repository
// keys input records by customer id.
func checkKey(key []byte, customer string) error {
	if len(key) == 0 {
		return fmt.Errorf("record has no key; input records must be keyed by their customer_id %q", customer)
	}
	if string(key) != customer {
		shown := key
		if len(shown) > 64 {
			shown = shown[:64] // the dead letter carries the whole key
		}
		return fmt.Errorf("record key %q differs from its customer_id %q; input records must be keyed by customer_id", shown, customer)
	}
	return nil
}

// isPermanent tells record problems (dead-letter them) from outages (retry the batch).
func isPermanent(err error) bool {
	return errors.Is(err, codec.ErrNotFramed) || errors.Is(err, codec.ErrUnknownSchema) || errors.Is(err, codec.ErrMalformed)
}

// MaxRecordBytes is the largest record value a consumer accepts; larger ones are rejected.
const MaxRecordBytes = 1 << 20

// Guard wraps a consumer's handler in the middleware every consumer of the pipeline runs,
// outermost first: metrics (when metrics is not nil), dead-lettering of the batch's
// rejections to sink, panic recovery, and the rejection of oversized records.
func Guard(h stream.Handler, metrics *stream.Metrics, sink stream.DeadLetterSink) stream.Handler {
	var mw []stream.Middleware
	if metrics != nil {
		mw = append(mw, stream.Instrument(metrics))
	}
	mw = append(mw, stream.DeadLetter(sink), stream.Recover(), stream.Oversize(MaxRecordBytes))
	return stream.Chain(h, mw...)
}
