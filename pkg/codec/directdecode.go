package codec

import (
	"reflect"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

// Direct decoders for the input events, which every consumer decodes once per record. goavro
// decodes into a map[string]any (a map per record, every value boxed, a map per union), and
// that garbage was most of a consumer's decoding cost. These read the Avro binary encoding of
// the schema version they were written for, field by field, into the struct. They are
// conservative: a body they do not read exactly as goavro would (truncated, an enum or union
// index out of range, a varint longer than its type's, trailing bytes) is handed to goavro,
// whose result and error stand, so the two never disagree on what a record is. New uses one
// only for a schema it decodes a sample of exactly as goavro does; FuzzDirectDecode holds
// them to goavro on arbitrary bytes.

// directDecoder reads the Avro body (no header) of a record; ok is false for anything it
// leaves to goavro.
type directDecoder func(body []byte, enums enumSymbols) (e event.Event, ok bool)

// enumSymbols are an enum's symbols in ordinal order, by enum name.
type enumSymbols map[string][]string

// directDecoders are the schemas with a direct decoder, by schema name.
var directDecoders = map[string]directDecoder{
	"Purchase": func(body []byte, enums enumSymbols) (event.Event, bool) {
		r := avroReader{b: body, ok: true}
		p := event.Purchase{EventID: r.string(), CustomerID: r.string(), OccurredAt: r.timestampMillis(), OrderID: r.string()}
		p.Kind = event.PurchaseKind(r.enum(enums["PurchaseKind"]))
		p.AmountMinor = r.long()
		p.Currency = r.string()
		p.RefundOfOrderID = r.optString()
		p.Channel = r.optString()
		return p, r.done()
	},
	"Login": func(body []byte, enums enumSymbols) (event.Event, bool) {
		r := avroReader{b: body, ok: true}
		l := event.Login{EventID: r.string(), CustomerID: r.string(), OccurredAt: r.timestampMillis()}
		l.Channel = event.LoginChannel(r.enum(enums["LoginChannel"]))
		return l, r.done()
	},
	"Feedback": func(body []byte, enums enumSymbols) (event.Event, bool) {
		r := avroReader{b: body, ok: true}
		f := event.Feedback{EventID: r.string(), CustomerID: r.string(), OccurredAt: r.timestampMillis()}
		f.Kind = event.FeedbackKind(r.enum(enums["FeedbackKind"]))
		f.Score = r.optInt()
		f.CaseID = r.optString()
		return f, r.done()
	},
}

// avroReader reads an Avro body; ok turns false at the first thing it leaves to goavro, and
// everything read after that is the zero value.
type avroReader struct {
	b  []byte
	ok bool
}

// varint reads a base-128 varint of at most maxLen bytes whose value fits in bits (the
// canonical range of an int or a long); longer or larger ones are goavro's to read.
func (r *avroReader) varint(maxLen int, bits uint) uint64 {
	if !r.ok {
		return 0
	}
	var v uint64
	for i := 0; i < len(r.b) && i < maxLen; i++ {
		c := r.b[i]
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c < 0x80 {
			if bits < 64 && v>>bits != 0 || i == 9 && c > 1 {
				break
			}
			r.b = r.b[i+1:]
			return v
		}
	}
	r.ok = false
	return 0
}

// long reads a zig-zag long.
func (r *avroReader) long() int64 {
	v := r.varint(10, 64)
	return int64(v>>1) ^ -int64(v&1)
}

// int reads a zig-zag int.
func (r *avroReader) int() int32 {
	v := r.varint(5, 32)
	return int32(v>>1) ^ -int32(v&1)
}

func (r *avroReader) string() string {
	n := r.long()
	if !r.ok || n < 0 || n > int64(len(r.b)) {
		r.ok = false
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// timestampMillis reads a timestamp-millis long as goavro returns it (UTC).
func (r *avroReader) timestampMillis() time.Time {
	ms := r.long()
	if !r.ok {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func (r *avroReader) enum(symbols []string) string {
	i := r.long()
	if !r.ok || i < 0 || i >= int64(len(symbols)) {
		r.ok = false
		return ""
	}
	return symbols[i]
}

// branch reads the index of a ["null", T] union: false for null.
func (r *avroReader) branch() bool {
	switch r.long() {
	case 0:
		return false
	case 1:
		return r.ok
	}
	r.ok = false
	return false
}

// optString reads a ["null", "string"] union; null reads as "", as the converters read it.
func (r *avroReader) optString() string {
	if !r.branch() {
		return ""
	}
	return r.string()
}

func (r *avroReader) optInt() *int32 {
	if !r.branch() {
		return nil
	}
	n := r.int()
	if !r.ok {
		return nil
	}
	return &n
}

// done reports whether the whole body was read and nothing was left to goavro.
func (r *avroReader) done() bool { return r.ok && len(r.b) == 0 }

// symbolsOf turns enum ordinals into each enum's symbols in order.
func symbolsOf(enums enumIndex) enumSymbols {
	out := make(enumSymbols, len(enums))
	for name, ord := range enums {
		symbols := make([]string, len(ord))
		for s, i := range ord {
			if i >= 0 && i < len(symbols) {
				symbols[i] = s
			}
		}
		out[name] = symbols
	}
	return out
}

// agreeingDecoder returns the direct decoder and enum symbols of r's schema (its text) when it
// has one that decodes samples (every optional field set, and none) exactly as goavro does,
// and nil otherwise (goavro decodes). toMap is the schema's converter to goavro's form.
func agreeingDecoder(r *readerSchema, schema string, toMap func(event.Event) (map[string]any, error)) (directDecoder, enumSymbols) {
	direct, ok := directDecoders[r.name]
	if !ok {
		return nil, nil
	}
	ordinals, err := enumsOf(schema)
	if err != nil {
		return nil, nil
	}
	enums := symbolsOf(ordinals)
	for _, sample := range inputSamples(r.name) {
		native, err := toMap(sample)
		if err != nil {
			return nil, nil
		}
		body, err := r.avro.BinaryFromNative(nil, native)
		if err != nil {
			return nil, nil
		}
		want, err := r.goavroDecode(body)
		if err != nil {
			return nil, nil
		}
		if got, ok := direct(body, enums); !ok || !reflect.DeepEqual(got, want) {
			return nil, nil
		}
	}
	return direct, enums
}

// inputSamples are events of an input schema for agreeingDecoder: one with every optional
// field set and one with none.
func inputSamples(name string) []event.Event {
	score := int32(9)
	switch name {
	case "Purchase":
		return []event.Event{
			event.Purchase{EventID: "e-1", CustomerID: "c-1", OccurredAt: sampleTime, OrderID: "o-1", Kind: event.KindRefund,
				AmountMinor: 123456789, Currency: "GBP", RefundOfOrderID: "o-0", Channel: "WEB"},
			event.Purchase{EventID: "e-2", CustomerID: "c-2", OccurredAt: sampleTime.Add(-time.Hour), OrderID: "o-2",
				Kind: event.KindPurchase, AmountMinor: 1, Currency: "EUR"},
		}
	case "Login":
		return []event.Event{event.Login{EventID: "e-3", CustomerID: "c-3", OccurredAt: sampleTime, Channel: event.ChannelStore}}
	case "Feedback":
		return []event.Event{
			event.Feedback{EventID: "e-4", CustomerID: "c-4", OccurredAt: sampleTime, Kind: event.FeedbackCSAT, Score: &score, CaseID: "k-1"},
			event.Feedback{EventID: "e-5", CustomerID: "c-5", OccurredAt: sampleTime, Kind: event.FeedbackComplaintOpened},
		}
	}
	return nil
}
