package pipeline

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// drawJSONString draws a string; a plain one needs no escaping, as the scorer's do.
func drawJSONString(t *rapid.T, label string, plain bool) string {
	if plain {
		return rapid.OneOf(
			rapid.SampledFrom([]string{"", "GOLD", "AT_RISK", "net spend 1234.56 GBP over 365 days", "bgnbd-v1@2026-11-19"}),
			rapid.StringMatching(`[a-zA-Z0-9 .:@_-]{0,30}`),
		).Draw(t, label)
	}
	return rapid.OneOf(
		rapid.SampledFrom([]string{"", "GOLD", "AT_RISK", "net spend 1234.56 GBP over 365 days", "bgnbd-v1@2026-11-19"}),
		rapid.StringMatching(`[ -~]{0,20}`), // printable ASCII, quotes, backslashes and <>& included
		rapid.String(),                      // anything, invalid UTF-8 and control characters included
		rapid.SampledFrom([]string{"a\u2028b", "<b>&", "tab\there", "\x00", "\xff", "é"}),
	).Draw(t, label)
}

// drawJSONFloat draws a float; a plain one is a probability or an amount, as the scorer's.
func drawJSONFloat(t *rapid.T, label string, plain bool) float64 {
	if plain {
		return rapid.OneOf(rapid.Float64Range(0, 1), rapid.Float64Range(-1e9, 1e9)).Draw(t, label)
	}
	return rapid.OneOf(
		rapid.Float64(),
		rapid.SampledFrom([]float64{0, math.Copysign(0, -1), 1e-6, 1e-7, 9.99e-7, 1e21, 1e20, -1e21, 0.5, 123456.78,
			math.NaN(), math.Inf(1), math.Inf(-1), math.SmallestNonzeroFloat64, math.MaxFloat64}),
	).Draw(t, label)
}

func drawTransition(t *rapid.T) Transition {
	plain := rapid.Bool().Draw(t, "plain")
	str := func(label string) string { return drawJSONString(t, label, plain) }
	num := func(label string) float64 { return drawJSONFloat(t, label, plain) }
	zone := rapid.SampledFrom([]*time.Location{time.UTC, time.FixedZone("x", 5*3600+1800), time.FixedZone("y", -7*3600)}).Draw(t, "zone")
	at := time.Unix(rapid.Int64Range(-70000000000, 300000000000).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "nsec")).In(zone)
	tr := Transition{At: at, Kind: str("kind"), From: str("from"), To: str("to"),
		EventID: str("id"), Direction: str("dir"), ModelVersion: str("model"),
		FromLayer: str("fromLayer"), ToLayer: str("toLayer")}
	if rapid.Bool().Draw(t, "score") {
		f := num("scoreValue")
		tr.Score = &f
	}
	if rapid.Bool().Draw(t, "palive") {
		f := num("paliveValue")
		tr.PAlive = &f
	}
	if rapid.Bool().Draw(t, "rfm") {
		tr.RFM = &scoring.RFM{R: rapid.Int().Draw(t, "r"), F: rapid.Int().Draw(t, "f"), M: rapid.Int().Draw(t, "m")}
	}
	switch n := rapid.IntRange(-1, 3).Draw(t, "reasons"); n {
	case -1: // nil
	default:
		tr.Reasons = make([]Reason, 0, n)
		for range n {
			tr.Reasons = append(tr.Reasons, Reason{Code: str("code"), Message: str("msg"), Value: num("value")})
		}
	}
	return tr
}

// marshalTransition writes what encoding/json writes, or fails where it fails.
func TestMarshalTransitionIsEncodingJSON(t *testing.T) {
	fast := 0
	rapid.Check(t, func(t *rapid.T) {
		tr := drawTransition(t)
		want, wantErr := json.Marshal(tr)
		got, gotErr := marshalTransition(&tr)
		if (wantErr != nil) != (gotErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("marshalTransition:\n%s (%v)\nencoding/json:\n%s (%v)", got, gotErr, want, wantErr)
		}
		if _, ok := appendTransitionJSON(nil, &tr); ok {
			fast++
		}
	})
	if fast == 0 {
		t.Fatal("no draw took the direct path: the test compared encoding/json with itself")
	}
}

// The changes the scorer derives take the direct path.
func TestTransitionsOfRealChangesTakeTheDirectPath(t *testing.T) {
	score, palive := 0.734, 0.21
	for _, tr := range []Transition{
		TransitionOf(&scoring.TierChange{OccurredAt: time.Date(2026, 3, 4, 23, 59, 59, 0, time.UTC), From: "SILVER", To: "GOLD", EventID: "e1",
			Direction: scoring.DirectionUp, Reasons: []scoring.Reason{{Code: "SPEND_QUALIFIES", Message: "net spend 2000.00 GBP over 365 days reached the GOLD threshold of 2000.00 GBP on 2026-03-04", Value: 200000}}}),
		{At: time.Date(2026, 3, 5, 0, 0, 0, 123, time.UTC), Kind: "churn", From: "LOW", To: "HIGH", EventID: "e2", Score: &score, PAlive: &palive,
			ModelVersion: "bgnbd-v1@2026-02-26", Reasons: []Reason{{Code: "INACTIVE", Message: "no purchase for 90 days", Value: 90}}},
	} {
		b, ok := appendTransitionJSON(nil, &tr)
		want, err := json.Marshal(tr)
		if !ok || err != nil || !bytes.Equal(b, want) {
			t.Fatalf("direct %v:\n%s\nencoding/json (%v):\n%s", ok, b, err, want)
		}
	}
}

func BenchmarkMarshalTransition(b *testing.B) {
	score, palive := 0.734, 0.21
	rfm := scoring.RFM{R: 3, F: 4, M: 5}
	tr := Transition{At: time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC), Kind: "segment", From: "LOYAL", To: "AT_RISK", EventID: "0123456789abcdef0123456789abcdef",
		Score: &score, PAlive: &palive, FromLayer: "MID", ToLayer: "HIGH", RFM: &rfm,
		Reasons: []Reason{{Code: "RECENCY", Message: "last purchase 94 days ago, score 2 of 5", Value: 94}, {Code: "FREQUENCY", Message: "7 purchase days in 365 days, score 4 of 5", Value: 7},
			{Code: "MONETARY", Message: "net spend 1234.56 GBP in 365 days, score 4 of 5", Value: 123456}}}
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(tr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := marshalTransition(&tr); err != nil {
				b.Fatal(err)
			}
		}
	})
}
