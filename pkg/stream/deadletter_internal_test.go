package stream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

// jsonEncoder stands in for the codec: JSON makes the envelope larger than Avro would (byte
// slices become base64), which the bound must hold for too.
type jsonEncoder struct{}

func (jsonEncoder) Encode(e event.Event) ([]byte, error) { return json.Marshal(e) }

func header(r Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func decodeEnvelope(t *testing.T, r Record) event.DeadLetter {
	t.Helper()
	var d event.DeadLetter
	if err := json.Unmarshal(r.Value, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func rejection(key, value []byte, err error) Rejection {
	return Rejection{Message: Message{Topic: "loyalty.purchases.v1", Partition: 3, Offset: 123456, Key: key, Value: value},
		Code: "invalid", Err: err}
}

// Every envelope stays within the limit; what is cut is marked, and the source position and
// code are always kept.
func TestDeadLetterEnvelopesStayWithinTheRecordLimit(t *testing.T) {
	const max = 64 << 10
	w := &DeadLetterWriter{Encoder: jsonEncoder{}, Service: "purchases", MaxRecordBytes: max,
		Now: func() time.Time { return time.Unix(0, 0) }}
	limit := max - DeadLetterHeadroom
	big := bytes.Repeat([]byte{0xAB}, 200<<10)
	sum := sha256.Sum256(big)
	longText := strings.Repeat("é", 40<<10) // 2 bytes a rune: cut on rune boundaries
	tests := []struct {
		name string
		r    Rejection
		want func(t *testing.T, d event.DeadLetter, r Record)
	}{
		{"small record untouched", rejection([]byte("c-1"), []byte("value"), errors.New("amount_minor: negative")),
			func(t *testing.T, d event.DeadLetter, _ Record) {
				if d.ValueTruncated || d.KeyTruncated || string(d.Value) != "value" || d.ErrorMessage != "amount_minor: negative" {
					t.Errorf("changed: %+v", d)
				}
			}},
		{"large value truncated with its size and digest", rejection([]byte("c-1"), big, errors.New("order_id: too long")),
			func(t *testing.T, d event.DeadLetter, _ Record) {
				if !d.ValueTruncated || d.ValueSize != int64(len(big)) || d.ValueSHA256 != hex.EncodeToString(sum[:]) {
					t.Errorf("truncation not described: truncated %v, size %d, sha %q", d.ValueTruncated, d.ValueSize, d.ValueSHA256)
				}
				if len(d.Value) == 0 || !bytes.HasPrefix(big, d.Value) || d.ErrorMessage != "order_id: too long" || d.KeyTruncated {
					t.Errorf("value %d bytes (a prefix: %v), error %q, key truncated %v", len(d.Value), bytes.HasPrefix(big, d.Value), d.ErrorMessage, d.KeyTruncated)
				}
			}},
		{"error text cut after the value, before the key", rejection(bytes.Repeat([]byte("k"), 2<<10), big, errors.New(longText)),
			func(t *testing.T, d event.DeadLetter, r Record) {
				if !d.ValueTruncated || len(d.Value) != 0 || d.KeyTruncated || len(d.Key) != 2<<10 ||
					len(d.ErrorMessage) >= maxErrorText || len(d.ErrorMessage) <= minErrorText || !strings.HasPrefix(longText, d.ErrorMessage) {
					t.Errorf("value %d bytes, key %d bytes (truncated %v), error text %d bytes", len(d.Value), len(d.Key), d.KeyTruncated, len(d.ErrorMessage))
				}
				if header(r, HeaderErrorMessage) != d.ErrorMessage {
					t.Error("the header's error text differs from the envelope's")
				}
			}},
		{"huge key cut last", rejection(bytes.Repeat([]byte("k"), 100<<10), []byte("v"), errors.New(longText)),
			func(t *testing.T, d event.DeadLetter, r Record) {
				if !d.KeyTruncated || !d.ValueTruncated || len(d.ErrorMessage) != minErrorText || len(d.Key) == 0 || !bytes.Equal(r.Key, d.Key) {
					t.Errorf("key %d bytes (truncated %v), record key %d, error text %d bytes", len(d.Key), d.KeyTruncated, len(r.Key), len(d.ErrorMessage))
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, limit := w, limit
			if strings.HasPrefix(tc.name, "error text") { // the smallest limit: value and error text compete
				w, limit = &DeadLetterWriter{Encoder: jsonEncoder{}, Service: "purchases", MaxRecordBytes: minMaxRecordBytes},
					minMaxRecordBytes-DeadLetterHeadroom
			}
			recs, err := w.envelopes([]Rejection{tc.r})
			if err != nil {
				t.Fatal(err)
			}
			r := recs[0]
			if n := recordSize(r); n > limit {
				t.Fatalf("envelope record of %d bytes, over the limit of %d", n, limit)
			}
			d := decodeEnvelope(t, r)
			if d.SourceTopic != "loyalty.purchases.v1" || d.SourcePartition != 3 || d.SourceOffset != 123456 || d.ErrorCode != "invalid" ||
				header(r, HeaderSourceOffset) != "123456" || header(r, HeaderSourcePartition) != "3" || header(r, HeaderErrorCode) != "invalid" {
				t.Fatalf("source position or code lost: %+v, headers %v", d, r.Headers)
			}
			tc.want(t, d, r)
		})
	}
}

func TestDeadLetterWriterValidatesItsLimit(t *testing.T) {
	p := &Producer{}
	if err := (&DeadLetterWriter{Producer: p, Encoder: jsonEncoder{}}).Validate(); err != nil {
		t.Errorf("default limit: %v", err)
	}
	if err := (&DeadLetterWriter{Producer: p, Encoder: jsonEncoder{}, MaxRecordBytes: 1000}).Validate(); err == nil {
		t.Error("a limit of 1000 bytes was accepted")
	}
	if err := (&DeadLetterWriter{Encoder: jsonEncoder{}}).Validate(); err == nil {
		t.Error("a writer without a producer was accepted")
	}
}
