package codec_test

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/schemaregistry"
	"github.com/loyalty-scoring/loyalty/schemas"
)

var at = time.Date(2024, 3, 5, 10, 30, 0, 123e6, time.UTC)

func score(n int32) *int32 { return &n }

// samples has one fully populated value of every event type.
var samples = []event.Event{
	event.Purchase{EventID: "e-1", CustomerID: "c-1", OccurredAt: at, OrderID: "o-1", Kind: event.KindPurchase,
		AmountMinor: 12345, Currency: "EUR", Channel: "WEB"},
	event.Purchase{EventID: "e-2", CustomerID: "c-1", OccurredAt: at, OrderID: "o-2", Kind: event.KindRefund,
		AmountMinor: 500, Currency: "EUR", RefundOfOrderID: "o-1"},
	event.Login{EventID: "e-3", CustomerID: "c-2", OccurredAt: at, Channel: event.ChannelApp},
	event.Feedback{EventID: "e-4", CustomerID: "c-3", OccurredAt: at, Kind: event.FeedbackNPS, Score: score(3)},
	event.Feedback{EventID: "e-5", CustomerID: "c-3", OccurredAt: at, Kind: event.FeedbackComplaintOpened, CaseID: "case-9"},
	event.TierChanged{EventID: "d-1", CustomerID: "c-1", OccurredAt: at, FromTier: event.TierSilver, ToTier: event.TierGold,
		Direction: event.DirectionUp, Reasons: []event.Reason{{Code: "NET_SPEND_365D", Message: "net spend 2,100.00 over 365 days", Value: 210000}},
		PolicyVersion: "tiers-2024.1", Source: event.Source{Topic: event.TopicPurchases, Partition: 3, Offset: 99}},
	event.ChurnRiskChanged{EventID: "d-2", CustomerID: "c-1", OccurredAt: at, FromLevel: event.ChurnLow, ToLevel: event.ChurnHigh,
		Score: 0.81, PAlive: 0.12, Reasons: []event.Reason{{Code: "GAP", Message: "no purchase in 74 days, 3.1x their usual gap", Value: 3.1}},
		ModelVersion: "bgnbd-v1", Replay: true, Source: event.Source{Topic: event.TopicLogins, Partition: 0, Offset: 7}},
	event.SegmentChanged{EventID: "d-3", CustomerID: "c-1", OccurredAt: at, FromSegment: "LOYAL", ToSegment: "AT_RISK",
		ValueLayer: "LOW_VALUE_AT_RISK", FromValueLayer: "GROWTH", RFM: event.RFM{R: 1, F: 4, M: 3}, CutpointsVersion: "cp-7",
		PolicyVersion: "default-2025.1", Reasons: []event.Reason{{Code: "RECENCY", Message: "last purchase 80 days ago: recency score 1 of 5", Value: 80}},
		Source: event.Source{Topic: event.TopicPurchases, Partition: 1, Offset: 2}},
	event.ActionDecided{ActionID: "a-1", CustomerID: "c-1", DecidedAt: at, Kind: event.ActionCare, Outcome: event.OutcomeSent,
		Reason: "churn HIGH and tier GOLD", TriggerEventID: "d-2", Channel: "webhook:care"},
	event.DeadLetter{SourceTopic: event.TopicPurchases, SourcePartition: 2, SourceOffset: 41, Key: []byte("c-1"),
		Value: []byte{0, 0, 0}, ErrorCode: "malformed", ErrorMessage: "bad", Service: "purchases", FailedAt: at,
		ValueTruncated: true, ValueSize: 1_000_000, ValueSHA256: strings.Repeat("ab", 32), KeyTruncated: true},
	event.CustomerErased{EventID: "x-1", CustomerID: "c-9", ErasedAt: at, RequestedBy: "ticket-42", KeysRemoved: 5},
}

func newCodec(t testing.TB) (*codec.Codec, *codec.EmbeddedRegistry) {
	t.Helper()
	reg, err := codec.NewEmbeddedRegistry()
	if err != nil {
		t.Fatal(err)
	}
	c, err := codec.New(context.Background(), reg)
	if err != nil {
		t.Fatal(err)
	}
	return c, reg
}

func TestEveryEventTypeRoundTripsUnchanged(t *testing.T) {
	c, _ := newCodec(t)
	for _, e := range samples {
		b, err := c.Encode(e)
		if err != nil {
			t.Fatalf("%s: %v", e.Schema(), err)
		}
		got, err := c.Decode(context.Background(), b)
		if err != nil {
			t.Fatalf("%s: %v", e.Schema(), err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s round trip:\n got %+v\nwant %+v", e.Schema(), got, e)
		}
	}
}

// TestTheWireFormatIsWhatAnyConfluentConsumerReads decodes the bytes the way a third-party
// consumer would: the ID from bytes 1–4, the schema from the registry, plain Avro after that.
func TestTheWireFormatIsWhatAnyConfluentConsumerReads(t *testing.T) {
	c, reg := newCodec(t)
	for _, e := range samples {
		b, err := c.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != 0 {
			t.Fatalf("%s: magic byte %d", e.Schema(), b[0])
		}
		id := int(binary.BigEndian.Uint32(b[1:5]))
		want, _ := c.SchemaID(e.Schema())
		if id != want {
			t.Fatalf("%s: header id %d, registry id %d", e.Schema(), id, want)
		}
		text, err := reg.SchemaByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := goavro.NewCodec(text)
		if err != nil {
			t.Fatal(err)
		}
		native, rest, err := plain.NativeFromBinary(b[5:])
		if err != nil || len(rest) != 0 {
			t.Fatalf("%s: plain Avro decode: %v (%d bytes left)", e.Schema(), err, len(rest))
		}
		if native.(map[string]any)["customer_id"] == nil && native.(map[string]any)["source_topic"] == nil {
			t.Fatalf("%s: decoded record lacks its key fields: %v", e.Schema(), native)
		}
	}
}

func TestEmbeddedIDsAreTheManifestIDs(t *testing.T) {
	c, _ := newCodec(t)
	want := map[string]int{"Purchase": 1, "Login": 2, "Feedback": 3, "TierChanged": 4, "ChurnRiskChanged": 5,
		"SegmentChanged": 10, "ActionDecided": 7, "DeadLetter": 11, "CustomerErased": 9}
	for name, id := range want {
		if got, _ := c.SchemaID(name); got != id {
			t.Errorf("%s: id %d, manifest says %d", name, got, id)
		}
	}
}

func TestBadValuesFailWithTheirReason(t *testing.T) {
	c, _ := newCodec(t)
	good, _ := c.Encode(samples[0])
	unknownID := append([]byte{0, 0, 0, 0x7f, 0x7f}, good[5:]...)
	tests := []struct {
		name  string
		value []byte
		want  error
		code  string
	}{
		{"an empty value is not framed", nil, codec.ErrNotFramed, "not_framed"},
		{"a value shorter than the header is not framed", []byte{0, 0, 1}, codec.ErrNotFramed, "not_framed"},
		{"a wrong magic byte is not framed", append([]byte{1}, good[1:]...), codec.ErrNotFramed, "not_framed"},
		{"an id the registry does not know is an unknown schema", unknownID, codec.ErrUnknownSchema, "unknown_schema"},
		{"a truncated body is malformed", good[:len(good)-3], codec.ErrMalformed, "malformed"},
		{"trailing bytes are malformed", append(append([]byte{}, good...), 1, 2), codec.ErrMalformed, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Decode(context.Background(), tt.value)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if got := codec.Code(err); got != tt.code {
				t.Fatalf("code %q, want %q", got, tt.code)
			}
		})
	}
}

// olderRegistry serves one extra schema: Purchase as it might have looked before `channel`
// existed, under id 100, to show that records written with an older compatible version decode.
type olderRegistry struct {
	*codec.EmbeddedRegistry
	lookups int
}

const purchaseV0 = `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},{"name":"customer_id","type":"string"},
 {"name":"occurred_at","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"order_id","type":"string"},
 {"name":"kind","type":{"type":"enum","name":"PurchaseKind","symbols":["PURCHASE","REFUND"]}},
 {"name":"amount_minor","type":"long"},{"name":"currency","type":"string"}]}`

func (r *olderRegistry) SchemaByID(ctx context.Context, id int) (string, error) {
	r.lookups++
	if id == 100 {
		return purchaseV0, nil
	}
	return r.EmbeddedRegistry.SchemaByID(ctx, id)
}

func TestARecordWrittenWithAnOlderVersionDecodesWithDefaults(t *testing.T) {
	emb, _ := codec.NewEmbeddedRegistry()
	reg := &olderRegistry{EmbeddedRegistry: emb}
	c, err := codec.New(context.Background(), reg)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := goavro.NewCodec(purchaseV0)
	body, err := old.BinaryFromNative(nil, map[string]any{"event_id": "e", "customer_id": "c", "occurred_at": at.UnixMilli(),
		"order_id": "o", "kind": "PURCHASE", "amount_minor": int64(10), "currency": "GBP"})
	if err != nil {
		t.Fatal(err)
	}
	value := append([]byte{0, 0, 0, 0, 100}, body...)
	for range 3 {
		got, err := c.Decode(context.Background(), value)
		if err != nil {
			t.Fatal(err)
		}
		want := event.Purchase{EventID: "e", CustomerID: "c", OccurredAt: at, OrderID: "o", Kind: event.KindPurchase, AmountMinor: 10, Currency: "GBP"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v want %+v", got, want)
		}
	}
	if reg.lookups != 1 {
		t.Fatalf("the older schema must be fetched once and cached, fetched %d times", reg.lookups)
	}
}

type downRegistry struct{ *codec.EmbeddedRegistry }

func (downRegistry) SchemaByID(context.Context, int) (string, error) {
	return "", errors.New("connection refused")
}

func TestAnUnreachableRegistryIsATransientErrorNotADeadLetter(t *testing.T) {
	emb, _ := codec.NewEmbeddedRegistry()
	c, err := codec.New(context.Background(), downRegistry{emb})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Decode(context.Background(), []byte{0, 0, 0, 0, 100, 1})
	if err == nil || errors.Is(err, codec.ErrUnknownSchema) || errors.Is(err, codec.ErrMalformed) {
		t.Fatalf("want a transient lookup error, got %v", err)
	}
}

func TestTheEmbeddedRegistryRefusesSchemasOutsideTheManifest(t *testing.T) {
	reg, _ := codec.NewEmbeddedRegistry()
	_, err := reg.Register(context.Background(), "loyalty.purchases.v1-value", purchaseV0)
	if !errors.Is(err, schemaregistry.ErrNotFound) {
		t.Fatalf("got %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	c, _ := newCodec(f)
	for _, e := range samples {
		b, _ := c.Encode(e)
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, value []byte) {
		e, err := c.Decode(context.Background(), value)
		if err != nil {
			if codec.Code(err) == "undecodable" {
				t.Fatalf("an error without a dead-letter code: %v", err)
			}
			return
		}
		// Whatever decodes must re-encode and decode to the same value.
		b, err := c.Encode(e)
		if err != nil {
			t.Fatalf("decoded %+v but cannot re-encode: %v", e, err)
		}
		again, err := c.Decode(context.Background(), b)
		if err != nil || !reflect.DeepEqual(again, e) {
			t.Fatalf("re-decode mismatch: %+v vs %+v (%v)", again, e, err)
		}
	})
}

// benchName names a sample by schema and, for inputs, by kind (purchase and refund differ).
func benchName(e event.Event) string {
	switch v := e.(type) {
	case event.Purchase:
		return e.Schema() + "/" + string(v.Kind)
	case event.Feedback:
		return e.Schema() + "/" + string(v.Kind)
	}
	return e.Schema()
}

func BenchmarkEncode(b *testing.B) {
	c, _ := newCodec(b)
	for _, e := range samples[:6] {
		b.Run(benchName(e), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Encode(e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	c, _ := newCodec(b)
	ctx := context.Background()
	for _, e := range samples[:6] {
		value, _ := c.Encode(e)
		b.Run(benchName(e), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Decode(ctx, value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Segment changes published before version 2 (schema id 6) still decode: the fields version 2
// added read as empty.
func TestASegmentChangeWrittenWithVersion1DecodesWithEmptyNewFields(t *testing.T) {
	all, err := schemas.All()
	if err != nil {
		t.Fatal(err)
	}
	var v1 string
	for _, s := range all {
		if s.Name == "SegmentChanged" {
			v1 = s.Versions[0].Text
		}
	}
	old, err := goavro.NewCodec(v1)
	if err != nil {
		t.Fatal(err)
	}
	body, err := old.BinaryFromNative(nil, map[string]any{"event_id": "d", "customer_id": "c", "occurred_at": at.UnixMilli(),
		"from_segment": "LOYAL", "to_segment": "AT_RISK", "value_layer": "ACTIVE",
		"rfm": map[string]any{"r": int32(2), "f": int32(3), "m": int32(3)}, "cutpoints_version": "cp-1", "replay": false,
		"source": map[string]any{"topic": "sweeper", "partition": int32(0), "offset": int64(-1)}})
	if err != nil {
		t.Fatal(err)
	}
	emb, _ := codec.NewEmbeddedRegistry()
	c, err := codec.New(context.Background(), emb)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Decode(context.Background(), append([]byte{0, 0, 0, 0, 6}, body...))
	if err != nil {
		t.Fatal(err)
	}
	want := event.SegmentChanged{EventID: "d", CustomerID: "c", OccurredAt: at, FromSegment: "LOYAL", ToSegment: "AT_RISK",
		ValueLayer: "ACTIVE", RFM: event.RFM{R: 2, F: 3, M: 3}, CutpointsVersion: "cp-1",
		Source: event.Source{Topic: "sweeper", Offset: -1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// Dead letters written before version 2 (schema id 8) still decode: they read as not
// truncated.
func TestADeadLetterWrittenWithVersion1DecodesAsNotTruncated(t *testing.T) {
	all, err := schemas.All()
	if err != nil {
		t.Fatal(err)
	}
	var v1 string
	for _, s := range all {
		if s.Name == "DeadLetter" {
			v1 = s.Versions[0].Text
		}
	}
	old, err := goavro.NewCodec(v1)
	if err != nil {
		t.Fatal(err)
	}
	body, err := old.BinaryFromNative(nil, map[string]any{"source_topic": event.TopicPurchases, "source_partition": int32(1),
		"source_offset": int64(9), "key": map[string]any{"bytes": []byte("c-1")}, "value": map[string]any{"bytes": []byte("v")},
		"error_code": "invalid", "error_message": "bad", "service": "purchases", "failed_at": at.UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	emb, _ := codec.NewEmbeddedRegistry()
	c, err := codec.New(context.Background(), emb)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Decode(context.Background(), append([]byte{0, 0, 0, 0, 8}, body...))
	if err != nil {
		t.Fatal(err)
	}
	want := event.DeadLetter{SourceTopic: event.TopicPurchases, SourcePartition: 1, SourceOffset: 9, Key: []byte("c-1"),
		Value: []byte("v"), ErrorCode: "invalid", ErrorMessage: "bad", Service: "purchases", FailedAt: at}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// TestAPoisonRecordDeclaringMillionsOfArrayItemsIsRefusedWithoutAllocatingThem: 50 bytes that
// declare 41,901,757 reasons made goavro allocate 639 MB before it noticed the buffer was short
// (found by FuzzDecode); enough such records OOM-kill a consumer, which the redelivered record
// then does again. The codec bounds array blocks, so the record is refused as malformed, for
// the dead-letter topic, at no cost.
func TestAPoisonRecordDeclaringMillionsOfArrayItemsIsRefusedWithoutAllocatingThem(t *testing.T) {
	c, _ := newCodec(t)
	poison := []byte("\x00\x00\x00\x00\x05\x06000\x060000\x00\x040000000000000000\xfa\xfa\xfa'\xfa\xfa\xfa\xfa")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := c.Decode(context.Background(), poison)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, codec.ErrMalformed) {
		t.Errorf("decoding the poison record: %v, want ErrMalformed (dead-letter code %q)", err, codec.Code(err))
	}
	if mb := (after.TotalAlloc - before.TotalAlloc) >> 20; mb > 16 {
		t.Errorf("decoding a 50-byte record allocated %d MB", mb)
	}
}
