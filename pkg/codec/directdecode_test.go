package codec

import (
	"context"
	"math"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

// inputReaders are the codec's readers of the three input schemas, which have direct
// decoders.
func inputReaders(t testing.TB, c *Codec) map[string]*readerSchema {
	t.Helper()
	out := map[string]*readerSchema{}
	for _, name := range []string{"Purchase", "Login", "Feedback"} {
		id, ok := c.SchemaID(name)
		if !ok {
			t.Fatalf("no schema %s", name)
		}
		out[name] = c.readers[id]
	}
	return out
}

func TestTheInputSchemasAreDecodedDirectly(t *testing.T) {
	c := newTestCodec(t)
	for name, r := range inputReaders(t, c) {
		if r.direct == nil {
			t.Errorf("%s: no direct decoder (its sample did not decode as goavro decodes it)", name)
		}
	}
}

// TestADecoderThatDisagreesWithGoavroIsNotUsed: agreeingDecoder refuses a direct decoder that
// reads a sample differently from goavro (a schema changed without its decoder).
func TestADecoderThatDisagreesWithGoavroIsNotUsed(t *testing.T) {
	c := newTestCodec(t)
	r := inputReaders(t, c)["Login"]
	saved := directDecoders["Login"]
	t.Cleanup(func() { directDecoders["Login"] = saved })
	directDecoders["Login"] = func(body []byte, enums enumSymbols) (event.Event, bool) {
		e, ok := saved(body, enums)
		l, _ := e.(event.Login)
		l.Channel = "SOMEWHERE" // a decoder reading the enum wrongly
		return l, ok
	}
	schema := loginSchema(t, c)
	if d, _ := agreeingDecoder(r, schema, converters["Login"].toMap); d != nil {
		t.Fatal("a decoder that disagrees with goavro on the sample is used")
	}
	directDecoders["Login"] = saved
	if d, _ := agreeingDecoder(r, schema, converters["Login"].toMap); d == nil {
		t.Fatal("the real decoder is refused")
	}
}

func loginSchema(t *testing.T, c *Codec) string {
	t.Helper()
	id, _ := c.SchemaID("Login")
	text, err := c.registry.SchemaByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// drawInput draws an input event with any field values the schema can carry: strings of any
// bytes, times over the whole range of a long's milliseconds, every enum symbol, optional
// fields set (possibly to "") or absent.
func drawInput(t *rapid.T) event.Event {
	str := func(label string) string {
		return rapid.OneOf(rapid.String(), rapid.StringMatching(`[a-z0-9-]{0,12}`)).Draw(t, label)
	}
	at := time.UnixMilli(rapid.OneOf(rapid.Int64(), rapid.Int64Range(0, 4e12), rapid.Int64Range(-1e3, 1e3)).Draw(t, "ms")).UTC()
	switch rapid.IntRange(0, 2).Draw(t, "schema") {
	case 0:
		return event.Purchase{EventID: str("event_id"), CustomerID: str("customer_id"), OccurredAt: at, OrderID: str("order_id"),
			Kind:        rapid.SampledFrom([]event.PurchaseKind{event.KindPurchase, event.KindRefund}).Draw(t, "kind"),
			AmountMinor: rapid.OneOf(rapid.Int64(), rapid.Int64Range(-1000, 1000), rapid.SampledFrom([]int64{math.MinInt64, math.MaxInt64})).Draw(t, "amount"),
			Currency:    str("currency"), RefundOfOrderID: str("refund_of"), Channel: str("channel")}
	case 1:
		return event.Login{EventID: str("event_id"), CustomerID: str("customer_id"), OccurredAt: at,
			Channel: rapid.SampledFrom([]event.LoginChannel{event.ChannelWeb, event.ChannelApp, event.ChannelStore}).Draw(t, "channel")}
	default:
		var score *int32
		if rapid.Bool().Draw(t, "has_score") {
			s := rapid.OneOf(rapid.Int32(), rapid.Int32Range(-2, 11), rapid.SampledFrom([]int32{math.MinInt32, math.MaxInt32})).Draw(t, "score")
			score = &s
		}
		return event.Feedback{EventID: str("event_id"), CustomerID: str("customer_id"), OccurredAt: at,
			Kind: rapid.SampledFrom([]event.FeedbackKind{event.FeedbackNPS, event.FeedbackCSAT, event.FeedbackComplaintOpened,
				event.FeedbackComplaintClosed}).Draw(t, "kind"),
			Score: score, CaseID: str("case_id")}
	}
}

// TestDirectDecodingIsGoavrosOnEveryEncodedEvent: every input event the codec writes, the
// direct decoder reads, and as goavro reads it.
func TestDirectDecodingIsGoavrosOnEveryEncodedEvent(t *testing.T) {
	c := newTestCodec(t)
	readers := inputReaders(t, c)
	rapid.Check(t, func(t *rapid.T) {
		e := drawInput(t)
		value, err := c.Encode(e)
		if err != nil {
			t.Fatalf("encoding %+v: %v", e, err)
		}
		r := readers[e.Schema()]
		body := value[headerLen:]
		got, ok := r.direct(body, r.enums)
		if !ok {
			t.Fatalf("the direct decoder left an event the codec wrote to goavro: %+v", e)
		}
		want, err := r.goavroDecode(body)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("direct %+v, goavro %+v (%v)", got, want, err)
		}
		if decoded, err := c.Decode(context.Background(), value); err != nil || !reflect.DeepEqual(decoded, want) {
			t.Fatalf("Decode %+v (%v), want %+v", decoded, err, want)
		}
	})
}

// FuzzDirectDecode: on any body, a direct decoder either leaves it to goavro or reads what
// goavro reads; never a record goavro refuses, never another value.
func FuzzDirectDecode(f *testing.F) {
	c := newTestCodec(f)
	readers := inputReaders(f, c)
	names := []string{"Purchase", "Login", "Feedback"}
	for i, name := range names {
		for _, e := range inputSamples(name) {
			value, err := c.Encode(e)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), value[headerLen:])
		}
	}
	f.Add(uint8(0), []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add(uint8(2), []byte{2, 'e', 2, 'c', 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0x7f, 0})
	f.Fuzz(func(t *testing.T, schema uint8, body []byte) {
		name := names[int(schema)%len(names)]
		r := readers[name]
		got, ok := r.direct(body, r.enums)
		if !ok {
			return
		}
		want, err := r.goavroDecode(body)
		if err != nil {
			t.Fatalf("%s: direct read %+v from %x, which goavro refuses: %v", name, got, body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: direct %+v, goavro %+v, from %x", name, got, want, body)
		}
	})
}
