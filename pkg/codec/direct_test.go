package codec

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/schemas"
)

func newTestCodec(t testing.TB) *Codec {
	t.Helper()
	reg, err := NewEmbeddedRegistry()
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(context.Background(), reg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// symbols lists an enum's symbols in ordinal order.
func symbols(x enumIndex, enum string) []string {
	out := make([]string, len(x[enum]))
	for s, i := range x[enum] {
		out[i] = s
	}
	return out
}

func genText(t *rapid.T, label string) string {
	return rapid.OneOf(rapid.Just(""), rapid.String(), rapid.StringMatching(`[A-Z_]{1,12}`)).Draw(t, label)
}

func genDouble(t *rapid.T, label string) float64 {
	return rapid.OneOf(rapid.Float64(), rapid.Just(math.Inf(-1)), rapid.Just(math.NaN()), rapid.Just(math.Copysign(0, -1))).Draw(t, label)
}

func genDerived(t *rapid.T, name string, enums enumIndex) event.Event {
	at := time.UnixMilli(rapid.Int64Range(-1e13, 1e13).Draw(t, "at")).UTC()
	var reasons []event.Reason
	for range rapid.IntRange(0, 4).Draw(t, "reasons") {
		reasons = append(reasons, event.Reason{Code: genText(t, "code"), Message: genText(t, "message"), Value: genDouble(t, "value")})
	}
	src := event.Source{Topic: genText(t, "topic"), Partition: rapid.Int32().Draw(t, "partition"), Offset: rapid.Int64().Draw(t, "offset")}
	replay := rapid.Bool().Draw(t, "replay")
	pick := func(enum string) string { return rapid.SampledFrom(symbols(enums, enum)).Draw(t, enum) }
	switch name {
	case "TierChanged":
		return event.TierChanged{EventID: genText(t, "id"), CustomerID: genText(t, "customer"), OccurredAt: at,
			FromTier: event.Tier(pick("Tier")), ToTier: event.Tier(pick("Tier")), Direction: event.TierDirection(pick("TierDirection")),
			Reasons: reasons, PolicyVersion: genText(t, "policy"), Replay: replay, Source: src}
	case "ChurnRiskChanged":
		return event.ChurnRiskChanged{EventID: genText(t, "id"), CustomerID: genText(t, "customer"), OccurredAt: at,
			FromLevel: event.ChurnLevel(pick("ChurnLevel")), ToLevel: event.ChurnLevel(pick("ChurnLevel")),
			Score: genDouble(t, "score"), PAlive: genDouble(t, "p_alive"), Reasons: reasons, ModelVersion: genText(t, "model"),
			Replay: replay, Source: src}
	default:
		return event.SegmentChanged{EventID: genText(t, "id"), CustomerID: genText(t, "customer"), OccurredAt: at,
			FromSegment: genText(t, "from"), ToSegment: genText(t, "to"), ValueLayer: genText(t, "layer"), FromValueLayer: genText(t, "from_layer"),
			RFM:              event.RFM{R: rapid.Int32().Draw(t, "r"), F: rapid.Int32().Draw(t, "f"), M: rapid.Int32().Draw(t, "m")},
			CutpointsVersion: genText(t, "cutpoints"), PolicyVersion: genText(t, "policy"), Reasons: reasons, Replay: replay, Source: src}
	}
}

// TestDirectEncodersAgreeWithGoavro: every schema with a direct encoder uses it (it passed
// New's check), and it writes exactly goavro's bytes for random events, every enum symbol
// included; the result decodes back to the event.
func TestDirectEncodersAgreeWithGoavro(t *testing.T) {
	c := newTestCodec(t)
	for name := range directEncoders {
		w := c.writers[name]
		if w == nil || w.direct == nil {
			t.Fatalf("%s: the direct encoder is not in use (it disagreed with goavro on the sample)", name)
		}
		t.Run(name, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				e := genDerived(rt, name, w.enums)
				native, err := w.toMap(e)
				if err != nil {
					rt.Fatal(err)
				}
				want, err := w.avro.BinaryFromNative(nil, native)
				if err != nil {
					rt.Fatal(err)
				}
				got, err := w.direct(nil, e, w.enums)
				if err != nil || string(got) != string(want) {
					rt.Fatalf("direct %x (%v), goavro %x", got, err, want)
				}
				framed, err := c.Encode(e)
				if err != nil || string(framed[headerLen:]) != string(want) {
					rt.Fatalf("Encode: %x (%v), want body %x", framed, err, want)
				}
				if _, err := c.Decode(context.Background(), framed); err != nil {
					rt.Fatalf("decoding what Encode wrote: %v", err)
				}
			})
		})
	}
}

func TestDirectEncoderRefusesUnknownSymbols(t *testing.T) {
	c := newTestCodec(t)
	bad := []event.Event{
		event.TierChanged{FromTier: "DIAMOND", ToTier: event.TierGold, Direction: event.DirectionUp},
		event.TierChanged{FromTier: event.TierGold, ToTier: event.TierGold, Direction: "SIDEWAYS"},
		event.ChurnRiskChanged{FromLevel: event.ChurnLow, ToLevel: "EXTREME"},
	}
	for _, e := range bad {
		if _, err := c.Encode(e); err == nil || !strings.Contains(err.Error(), "symbols") {
			t.Errorf("%+v encoded (error %v)", e, err)
		}
	}
}

// TestDirectEncoderFallsBackOnDisagreement: a direct encoder that writes other bytes than
// goavro for the sample is not used.
func TestDirectEncoderFallsBackOnDisagreement(t *testing.T) {
	c := newTestCodec(t)
	w := *c.writers["SegmentChanged"]
	saved := directEncoders["SegmentChanged"]
	defer func() { directEncoders["SegmentChanged"] = saved }()
	directEncoders["SegmentChanged"] = func(b []byte, e event.Event, enums enumIndex) ([]byte, error) {
		b, err := saved(b, e, enums)
		return append(b, 0), err // one byte too many
	}
	if direct, _ := agreeingDirect(&w, sampleSchema(t, "SegmentChanged")); direct != nil {
		t.Fatal("a disagreeing direct encoder was accepted")
	}
	directEncoders["SegmentChanged"] = saved
	if direct, _ := agreeingDirect(&w, sampleSchema(t, "SegmentChanged")); direct == nil {
		t.Fatal("the real direct encoder was refused")
	}
}

// sampleSchema is the latest schema text of the named schema.
func sampleSchema(t *testing.T, name string) string {
	t.Helper()
	all, err := schemas.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Name == name {
			return s.Latest().Text
		}
	}
	t.Fatalf("no schema %s", name)
	return ""
}

// BenchmarkEncodeDerived compares the direct encoders with goavro's map path.
func BenchmarkEncodeDerived(b *testing.B) {
	c := newTestCodec(b)
	for name := range directEncoders {
		e := directSample(name)
		w := c.writers[name]
		b.Run(name+"/direct", func(b *testing.B) {
			for range b.N {
				if _, err := c.Encode(e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/goavro", func(b *testing.B) {
			for range b.N {
				native, err := w.toMap(e)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.avro.BinaryFromNative(make([]byte, headerLen, 256), native); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
