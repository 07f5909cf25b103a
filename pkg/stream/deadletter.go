package stream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

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

// Dead-letter record size. Kafka refuses a record batch larger than the topic's
// max.message.bytes (the broker's message.max.bytes, 1,048,588 by default), and the envelope
// carries the original value plus the error text twice (envelope and header): a record near
// the limit could never be dead-lettered and its partition would stall.
const (
	// DefaultMaxRecordBytes is the record size limit the writer assumes when none is
	// configured: a round figure below Kafka's default.
	DefaultMaxRecordBytes = 1_000_000
	// DeadLetterHeadroom is what the writer keeps free under the limit for the batch and
	// record framing (about 100 bytes) and the envelope's own fields' length prefixes.
	DeadLetterHeadroom = 4096
	// minMaxRecordBytes is the smallest limit accepted: an envelope with its fixed fields and
	// a useful error text must fit.
	minMaxRecordBytes = 16 << 10
	// maxErrorText bounds the error text of an envelope (and its header).
	maxErrorText = 4096
	// minErrorText is how far the error text is cut before the key is.
	minErrorText = 256
)

// DeadLetterWriter publishes rejections to the dead-letter topic as event.DeadLetter
// envelopes that keep the original key and value bytes. Each envelope record (key, value and
// headers) stays within MaxRecordBytes less DeadLetterHeadroom: when it would not, the carried
// value is cut first (ValueTruncated, with the original's size and SHA-256), then the error
// text, then the key (KeyTruncated); the source topic, partition, offset and error code are
// never cut.
type DeadLetterWriter struct {
	Producer *Producer
	Encoder  Encoder
	Topic    string // default event.TopicDeadLetter
	Service  string
	// MaxRecordBytes is the largest record the dead-letter topic accepts (its
	// max.message.bytes); 0 means DefaultMaxRecordBytes.
	MaxRecordBytes int
	// Now is the wall clock for the failed_at field; nil means time.Now.
	Now func() time.Time
}

// Validate reports the first problem, naming the field.
func (w *DeadLetterWriter) Validate() error {
	switch {
	case w.Producer == nil || w.Encoder == nil:
		return errors.New("DeadLetterWriter: Producer and Encoder are required")
	case w.MaxRecordBytes != 0 && w.MaxRecordBytes < minMaxRecordBytes:
		return fmt.Errorf("MaxRecordBytes: %d is below %d", w.MaxRecordBytes, minMaxRecordBytes)
	}
	return nil
}

// limit is the most bytes an envelope record may take.
func (w *DeadLetterWriter) limit() int {
	if w.MaxRecordBytes == 0 {
		return DefaultMaxRecordBytes - DeadLetterHeadroom
	}
	return w.MaxRecordBytes - DeadLetterHeadroom
}

// DeadLetter implements DeadLetterSink. Records are produced in groups that together stay
// within the limit, so no partition's batch exceeds what the broker accepts.
func (w *DeadLetterWriter) DeadLetter(ctx context.Context, rejected []Rejection) error {
	if err := w.Validate(); err != nil {
		return err
	}
	records, err := w.envelopes(rejected)
	if err != nil {
		return err
	}
	limit := w.limit()
	for start := 0; start < len(records); {
		end, size := start+1, recordSize(records[start])
		for end < len(records) && size+recordSize(records[end]) <= limit {
			size += recordSize(records[end])
			end++
		}
		if err := w.Producer.Produce(ctx, records[start:end]...); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// envelopes builds the dead-letter records of rejected, each within the limit.
func (w *DeadLetterWriter) envelopes(rejected []Rejection) ([]Record, error) {
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
		rec, err := w.envelope(topic, r, now())
		if err != nil {
			return nil, err
		}
		records[i] = rec
	}
	return records, nil
}

// envelope builds one dead-letter record within the limit (see DeadLetterWriter).
func (w *DeadLetterWriter) envelope(topic string, r Rejection, failedAt time.Time) (Record, error) {
	env := event.DeadLetter{
		SourceTopic: r.Message.Topic, SourcePartition: int32(r.Message.Partition), SourceOffset: r.Message.Offset,
		Key: r.Message.Key, Value: r.Message.Value, ErrorCode: r.Code, ErrorMessage: cutText(r.Err.Error(), maxErrorText),
		Service: w.Service, FailedAt: failedAt,
	}
	limit := w.limit()
	for {
		rec, err := w.record(topic, env)
		if err != nil {
			return Record{}, err
		}
		over := recordSize(rec) - limit
		switch {
		case over <= 0:
			return rec, nil
		case len(env.Value) > 0:
			if !env.ValueTruncated {
				sum := sha256.Sum256(r.Message.Value)
				env.ValueTruncated, env.ValueSize, env.ValueSHA256 = true, int64(len(r.Message.Value)), hex.EncodeToString(sum[:])
			}
			// Keep the share of the value that fits, as the encoder sizes it (Avro: one
			// byte a byte); the next round checks and cuts more if needed.
			empty := env
			empty.Value = env.Value[:0]
			base, err := w.record(topic, empty)
			if err != nil {
				return Record{}, err
			}
			room, share := limit-recordSize(base), recordSize(rec)-recordSize(base)
			keep := 0
			if room > 0 && share > 0 {
				keep = min(int(int64(len(env.Value))*int64(room)/int64(share)), len(env.Value)-1)
			}
			env.Value = env.Value[:keep]
		case len(env.ErrorMessage) > minErrorText:
			// The text is in the envelope and in a header: each byte cut saves two.
			env.ErrorMessage = cutText(env.ErrorMessage, max(len(env.ErrorMessage)-(over+1)/2, minErrorText))
		case len(env.Key) > 0:
			// The key is the record's key and in the envelope.
			env.Key, env.KeyTruncated = env.Key[:len(env.Key)-min((over+1)/2, len(env.Key))], true
		default:
			return Record{}, fmt.Errorf("dead letter of %s/%d@%d: %d bytes over the limit of %d with value, error text and key cut",
				r.Message.Topic, r.Message.Partition, r.Message.Offset, over, limit)
		}
	}
}

// record encodes env as the dead-letter record on topic, with its headers.
func (w *DeadLetterWriter) record(topic string, env event.DeadLetter) (Record, error) {
	value, err := w.Encoder.Encode(env)
	if err != nil {
		return Record{}, fmt.Errorf("encoding dead letter: %w", err)
	}
	return Record{Topic: topic, Key: env.Key, Value: value, Headers: []Header{
		{Key: HeaderErrorCode, Value: []byte(env.ErrorCode)},
		{Key: HeaderErrorMessage, Value: []byte(env.ErrorMessage)},
		{Key: HeaderSourceTopic, Value: []byte(env.SourceTopic)},
		{Key: HeaderSourcePartition, Value: []byte(partitionLabel(int(env.SourcePartition)))},
		{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(env.SourceOffset, 10))},
		{Key: HeaderService, Value: []byte(env.Service)},
	}}, nil
}

// recordSize is what a record takes in a batch, less the framing DeadLetterHeadroom covers.
func recordSize(r Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// cutText returns s cut to at most n bytes, on a UTF-8 boundary.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
