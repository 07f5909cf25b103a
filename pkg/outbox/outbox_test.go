package outbox_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/outbox"
)

func TestPackedEventsReadBackInOrder(t *testing.T) {
	events := []outbox.Event{
		{Topic: "loyalty.segment-changes.v1", EventID: "c1-seg-20240102", Value: bytes.Repeat([]byte{0, 0xff}, 300)},
		{Topic: "loyalty.churn-risk.v1", EventID: "c1-churn-1", Value: []byte("x"), SourceTime: time.UnixMilli(1_733_000_000_456)},
		{Topic: "loyalty.tier-changes.v1", EventID: "c1-tier-2", Value: nil, SourceTime: time.UnixMilli(0)},
	}
	got, err := outbox.Unpack(outbox.Pack(nil, events))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(events) {
		t.Fatalf("%d events, want %d", len(got), len(events))
	}
	for i, e := range got {
		w := events[i]
		if e.Topic != w.Topic || e.EventID != w.EventID || !bytes.Equal(e.Value, w.Value) || !e.SourceTime.Equal(w.SourceTime) {
			t.Errorf("event %d = %+v, want %+v", i, e, w)
		}
	}
	if got[0].SourceTime != (time.Time{}) {
		t.Errorf("an event without a source time read back with %v", got[0].SourceTime)
	}
}

func TestDecodeReadsBothLayouts(t *testing.T) {
	packed := outbox.Pack(nil, []outbox.Event{{Topic: "t1", EventID: "a", Value: []byte("v1")}, {Topic: "t2", EventID: "b", Value: []byte("v2")}})
	entry, err := outbox.Decode(map[string]any{"k": "c1", "e": string(packed)})
	if err != nil || entry.Key != "c1" || len(entry.Events) != 2 || entry.Events[1].EventID != "b" || string(entry.Events[1].Value) != "v2" {
		t.Fatalf("packed entry read as %+v, %v", entry, err)
	}
	entry, err = outbox.Decode(map[string]any{"t": "t1", "k": "c2", "id": "ev", "v": "value", "st": "1733000000456"})
	want := outbox.Entry{Key: "c2", Events: []outbox.Event{{Topic: "t1", EventID: "ev", Value: []byte("value"), SourceTime: time.UnixMilli(1733000000456)}}}
	if err != nil || !reflect.DeepEqual(entry, want) {
		t.Fatalf("former entry read as %+v, %v; want %+v", entry, err, want)
	}
	entry, err = outbox.Decode(map[string]any{"t": "t1", "k": "c2", "id": "ev", "v": "value", "st": "soon"})
	if err != nil || !entry.Events[0].SourceTime.IsZero() {
		t.Fatalf("a former entry whose source time does not parse read as %+v, %v; want the event without it", entry, err)
	}
}

func TestCorruptEntriesAreRefusedWithTheReason(t *testing.T) {
	good := outbox.Pack(nil, []outbox.Event{{Topic: "t", EventID: "id", Value: []byte("value")}})
	for name, values := range map[string]map[string]any{
		"empty packed value":     {"k": "c", "e": ""},
		"format 0":               {"k": "c", "e": "\x00" + string(good[1:])},
		"no events":              {"k": "c", "e": string(good[:1])},
		"truncated value":        {"k": "c", "e": string(good[:len(good)-1])},
		"length past the end":    {"k": "c", "e": "\x01\x05t"},
		"overlong varint":        {"k": "c", "e": "\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"},
		"padded varint":          {"k": "c", "e": "\x01\x81\x00t\x02id\x00\x00"},
		"no topic":               {"k": "c", "e": "\x01\x00\x02id\x00\x00"},
		"absurd source time":     {"k": "c", "e": "\x01\x01t\x02id\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00"},
		"former without an id":   {"t": "t", "k": "c", "v": "v"},
		"former without a topic": {"id": "i", "k": "c", "v": "v"},
		"former, topic empty":    {"t": "", "id": "i", "k": "c", "v": "v"},
	} {
		if entry, err := outbox.Decode(values); !errors.Is(err, outbox.ErrCorrupt) || errors.Is(err, outbox.ErrUnknownLayout) {
			t.Errorf("%s: read as %+v, %v; want ErrCorrupt", name, entry, err)
		}
	}
}

// An entry a later release wrote is not corrupt: it waits for a relay that reads it.
func TestEntriesOfALaterLayoutAreToldApart(t *testing.T) {
	good := outbox.Pack(nil, []outbox.Event{{Topic: "t", EventID: "id", Value: []byte("value")}})
	for name, values := range map[string]map[string]any{
		"a later format byte":  {"k": "c", "e": "\x02" + string(good[1:])},
		"fields of its own":    {"k": "c", "x": "something new"},
		"no fields we know of": {},
	} {
		if entry, err := outbox.Decode(values); !errors.Is(err, outbox.ErrUnknownLayout) || errors.Is(err, outbox.ErrCorrupt) {
			t.Errorf("%s: read as %+v, %v; want ErrUnknownLayout", name, entry, err)
		}
	}
}

func FuzzUnpack(f *testing.F) {
	f.Add(outbox.Pack(nil, []outbox.Event{{Topic: "t", EventID: "id", Value: []byte("v"), SourceTime: time.UnixMilli(5)}}))
	f.Add([]byte{1, 1, 't', 1, 'i', 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := outbox.Unpack(b)
		if err != nil {
			if errors.Is(err, outbox.ErrCorrupt) == errors.Is(err, outbox.ErrUnknownLayout) {
				t.Fatalf("error %v wraps not exactly one of ErrCorrupt and ErrUnknownLayout", err)
			}
			return
		}
		// What reads back packs to the same bytes: the encoding has one form per event list.
		if again := outbox.Pack(nil, events); !bytes.Equal(again, b) {
			t.Fatalf("%x read back and packed again as %x", b, again)
		}
	})
}
