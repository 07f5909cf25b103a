package stream

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

// Dead-letter record headers. The envelope in the value carries the same facts; the headers
// let operators filter the topic without decoding it.
const (
	HeaderErrorCode       = "dlq.error.code"
	HeaderErrorMessage    = "dlq.error.message"
	HeaderSourceTopic     = "dlq.source.topic"
	HeaderSourcePartition = "dlq.source.partition"
	HeaderSourceOffset    = "dlq.source.offset"
	HeaderService         = "dlq.service"
)

// Encoder turns an event into a record value (codec.Codec satisfies it).
type Encoder interface {
	Encode(e event.Event) ([]byte, error)
}

// DeadLetterWriter publishes rejections to the dead-letter topic as event.DeadLetter
// envelopes that keep the original key and value bytes.
type DeadLetterWriter struct {
	Producer *Producer
	Encoder  Encoder
	Topic    string // default event.TopicDeadLetter
	Service  string
	// Now is the wall clock for the failed_at field; nil means time.Now.
	Now func() time.Time
}

// DeadLetter implements DeadLetterSink.
func (w *DeadLetterWriter) DeadLetter(ctx context.Context, rejected []Rejection) error {
	topic := w.Topic
	if topic == "" {
		topic = event.TopicDeadLetter
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	records := make([]Record, len(rejected))
	for i, r := range rejected {
		msg := r.Err.Error()
		if len(msg) > 4096 {
			msg = msg[:4096]
		}
		env := event.DeadLetter{
			SourceTopic: r.Message.Topic, SourcePartition: int32(r.Message.Partition), SourceOffset: r.Message.Offset,
			Key: r.Message.Key, Value: r.Message.Value, ErrorCode: r.Code, ErrorMessage: msg,
			Service: w.Service, FailedAt: now(),
		}
		value, err := w.Encoder.Encode(env)
		if err != nil {
			return fmt.Errorf("encoding dead letter: %w", err)
		}
		records[i] = Record{Topic: topic, Key: r.Message.Key, Value: value, Headers: []Header{
			{Key: HeaderErrorCode, Value: []byte(r.Code)},
			{Key: HeaderErrorMessage, Value: []byte(msg)},
			{Key: HeaderSourceTopic, Value: []byte(r.Message.Topic)},
			{Key: HeaderSourcePartition, Value: []byte(partitionLabel(r.Message.Partition))},
			{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(r.Message.Offset, 10))},
			{Key: HeaderService, Value: []byte(w.Service)},
		}}
	}
	return w.Producer.Produce(ctx, records...)
}
