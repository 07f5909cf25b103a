// Package outbox is the layout of an outbox stream entry: the derived events of one
// customer's write, waiting in Redis for the relay to publish them.
//
// An entry holds two fields: "k", the customer id (the events' Kafka key, which a GDPR
// erasure matches), and "e", the customer's events packed as one binary value (Pack). One
// entry per write rather than one per event takes one XADD in the apply script, one stream
// entry to read and one id to delete per write, whatever the number of events it derived.
//
// Entries of the former layout, one event per entry in the fields "t" (logical topic), "k",
// "id" (event id), "v" (the record value) and "st" (the input record's Kafka timestamp in
// milliseconds, optional), are still read: the notifier writes its actions so, and entries
// written before an upgrade wait in the outbox until the relay publishes them.
package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Field names of an entry.
const (
	FieldKey    = "k"
	FieldEvents = "e"
	// The former layout's fields, one event per entry.
	FieldTopic      = "t"
	FieldEventID    = "id"
	FieldValue      = "v"
	FieldSourceTime = "st"
)

// format is the first byte of a packed value; a new layout takes the next one, and Unpack
// keeps reading this one.
const format = 1

// Event is one derived event of an entry.
type Event struct {
	Topic   string // logical output topic, e.g. event.TopicTierChanges
	EventID string
	Value   []byte // the encoded record value
	// SourceTime is the Kafka timestamp of the input record that caused the event; zero for
	// an end-of-day change, which has none.
	SourceTime time.Time
}

// Entry is one outbox entry read back: the customer and its events, oldest first.
type Entry struct {
	Key    string
	Events []Event
}

// Pack appends the packed events to dst: the format byte, then per event its topic, its
// event id, its source time in milliseconds plus one as a uvarint (0: none) and its value,
// each string a uvarint length followed by its bytes.
func Pack(dst []byte, events []Event) []byte {
	dst = append(dst, format)
	for _, e := range events {
		dst = appendString(dst, e.Topic)
		dst = appendString(dst, e.EventID)
		var st uint64
		if !e.SourceTime.IsZero() && e.SourceTime.UnixMilli() >= 0 {
			st = uint64(e.SourceTime.UnixMilli()) + 1
		}
		dst = binary.AppendUvarint(dst, st)
		dst = binary.AppendUvarint(dst, uint64(len(e.Value)))
		dst = append(dst, e.Value...)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// ErrCorrupt reports an entry of a known layout that cannot be read.
var ErrCorrupt = errors.New("corrupt outbox entry")

// ErrUnknownLayout reports an entry of a layout this version does not know: a later release
// wrote it, and a relay of that release can publish it.
var ErrUnknownLayout = errors.New("outbox entry of an unknown layout (written by a later release?)")

// Unpack reads a packed value. Every event's topic and event id are non-empty; the values
// are sub-slices of b. A value of a later format is refused with ErrUnknownLayout, anything
// else it cannot read with ErrCorrupt.
func Unpack(b []byte) ([]Event, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	if b[0] > format {
		return nil, fmt.Errorf("%w: format %d, this version reads up to %d", ErrUnknownLayout, b[0], format)
	}
	if b[0] != format {
		return nil, fmt.Errorf("%w: format %d", ErrCorrupt, b[0])
	}
	r := reader{b: b[1:]}
	var events []Event
	for len(r.b) > 0 {
		topic, id := r.bytes(), r.bytes()
		st := r.uvarint()
		value := r.bytes()
		if r.err != nil {
			return nil, fmt.Errorf("%w: event %d: %w", ErrCorrupt, len(events)+1, r.err)
		}
		if len(topic) == 0 || len(id) == 0 {
			return nil, fmt.Errorf("%w: event %d lacks its topic or event id", ErrCorrupt, len(events)+1)
		}
		e := Event{Topic: string(topic), EventID: string(id), Value: value}
		if st > 0 {
			if st-1 > uint64(maxMillis) {
				return nil, fmt.Errorf("%w: event %d: source time %d ms is out of range", ErrCorrupt, len(events)+1, st-1)
			}
			e.SourceTime = time.UnixMilli(int64(st - 1))
		}
		events = append(events, e)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: no events", ErrCorrupt)
	}
	return events, nil
}

// maxMillis bounds a source time (the year 9999): anything later is corruption.
var maxMillis = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC).UnixMilli()

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || (n > 1 && r.b[n-1] == 0) { // a minimal varint does not end in a zero byte
		r.err = errors.New("truncated, overlong or padded varint")
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("a length of %d bytes where %d are left", n, len(r.b))
		r.b = nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Decode reads an entry's fields (a stream entry's values, as go-redis returns them) in
// either layout; errors wrap ErrCorrupt or ErrUnknownLayout.
func Decode(values map[string]any) (Entry, error) {
	str := func(k string) string { s, _ := values[k].(string); return s }
	if packed, ok := values[FieldEvents].(string); ok {
		events, err := Unpack([]byte(packed))
		if err != nil {
			return Entry{}, err
		}
		return Entry{Key: str(FieldKey), Events: events}, nil
	}
	known := false
	for _, f := range []string{FieldTopic, FieldEventID, FieldValue, FieldSourceTime} {
		_, ok := values[f]
		known = known || ok
	}
	if !known {
		return Entry{}, fmt.Errorf("%w: none of the fields of a known layout", ErrUnknownLayout)
	}
	e := Event{Topic: str(FieldTopic), EventID: str(FieldEventID), Value: []byte(str(FieldValue))}
	if e.Topic == "" || e.EventID == "" {
		return Entry{}, fmt.Errorf("%w: the entry lacks a topic or an event id", ErrCorrupt)
	}
	// The source time only feeds the latency metric: one that does not parse is left out.
	if ms, err := strconv.ParseInt(str(FieldSourceTime), 10, 64); err == nil && ms >= 0 && ms <= maxMillis {
		e.SourceTime = time.UnixMilli(ms)
	}
	return Entry{Key: str(FieldKey), Events: []Event{e}}, nil
}
