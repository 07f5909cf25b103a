package pipeline

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

func TestTransitionEntriesAreStoredCompressedAndReadBack(t *testing.T) {
	at := time.Date(2026, 6, 8, 0, 0, 0, 0, time.UTC)
	const customer = "c-1042"
	tierAt := at.Add(15*time.Hour + 42*time.Minute + 123*time.Millisecond)
	changes := []scoring.Change{
		&scoring.SegmentChange{CustomerID: customer, EventID: scoring.EventID(customer, "segment", "ABOUT_TO_SLEEP/GROWTH", at), FromSegment: scoring.SegmentPotentialLoyalists,
			ToSegment: scoring.SegmentAboutToSleep, FromValueLayer: scoring.LayerActive, ValueLayer: scoring.LayerGrowth,
			RFM: scoring.RFM{R: 2, F: 3, M: 3}, OccurredAt: at, Reasons: []scoring.Reason{
				{Code: "RECENCY", Message: "last purchase 84 days ago: recency score 2 of 5", Value: 84},
				{Code: "FREQUENCY", Message: "2 purchase days in the last 365: frequency score 3 of 5", Value: 2},
				{Code: "MONETARY", Message: "net spend 462.66 USD in the last 365 days: monetary score 3 of 5", Value: 46266}}},
		&scoring.ChurnRiskChange{CustomerID: customer, EventID: scoring.EventID(customer, "churn", "HIGH", at), FromLevel: scoring.LevelLow, ToLevel: scoring.LevelHigh,
			Score: 0.702, PAlive: 0.213, ModelVersion: "bgnbd-v1@2026-05-28", OccurredAt: at, Reasons: []scoring.Reason{
				{Code: "P_ALIVE", Message: "P(alive) 0.213 under bgnbd-v1@2026-05-28", Value: 0.213}}},
		&scoring.TierChange{CustomerID: customer, EventID: scoring.EventID(customer, "tier", "UP:SILVER", tierAt), From: "BRONZE", To: "SILVER",
			Direction: scoring.DirectionUp, OccurredAt: tierAt, Reasons: []scoring.Reason{
				{Code: "SPEND_QUALIFIES", Message: "net spend 1007.20 USD over 365 days reached the SILVER threshold of 500.00 USD on 2026-06-08", Value: 100720}}},
	}
	entries := appendTransitions(nil, changes)
	if len(entries) != len(changes) {
		t.Fatalf("%d entries for %d changes", len(entries), len(changes))
	}
	for i, entry := range entries {
		want := TransitionOf(changes[i])
		plain, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		// The id is left out (version 2): the entry is its version 1's less the 64 hex digits.
		v1 := compressTransition(transitionsV1, plain)
		if entry[0] != transitionsV2 || len(entry) > len(v1)-60 || len(entry) > len(plain)/3 {
			t.Errorf("%s entry is %d bytes, format %#x, for %d bytes of JSON (%d with its id compressed): want version 2 without the id",
				want.Kind, len(entry), entry[0], len(plain), len(v1))
		}
		got, err := ParseTransition(customer, entry)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("read back %+v, want %+v", got, want)
		}
		// Entries earlier versions wrote, compressed with their id or as plain JSON, read the same.
		for _, old := range []string{v1, string(plain)} {
			if got, err := ParseTransition(customer, old); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("entry of an earlier version %q read as %+v, %v", old[:1], got, err)
			}
		}
		// The encoding is a function of the change: a replay writes the same bytes.
		if again := appendTransitions(nil, changes[i:i+1]); again[0] != entry {
			t.Errorf("%s entry encoded twice differs", want.Kind)
		}
	}
	withID, err := json.Marshal(TransitionOf(changes[0]))
	if err != nil {
		t.Fatal(err)
	}
	unknownKind := []byte(`{"at":"2026-06-08T00:00:00Z","kind":"points","from":"1","to":"2","event_id":""}`)
	for _, bad := range []string{"", "\x28\xb5\x2f\xfd garbage", entries[0][:len(entries[0])/2],
		compressTransition(transitionsV2, withID), compressTransition(transitionsV2, unknownKind)} {
		if _, err := ParseTransition(customer, bad); err == nil {
			t.Errorf("entry %q parsed without an error", bad)
		}
	}
}

// A change whose event id is not the one the scoring core derives (none it writes) keeps its
// id in the entry: version 1.
func TestATransitionWithAnIDOfItsOwnKeepsIt(t *testing.T) {
	change := &scoring.TierChange{CustomerID: "c-7", EventID: strings.Repeat("9ca7", 16), From: "BRONZE", To: "SILVER",
		Direction: scoring.DirectionUp, OccurredAt: time.Date(2026, 6, 8, 15, 42, 0, 0, time.UTC)}
	entry := appendTransitions(nil, []scoring.Change{change})[0]
	if entry[0] != transitionsV1 {
		t.Errorf("entry of format %#x, want version 1 (with the id)", entry[0])
	}
	got, err := ParseTransition("c-7", entry)
	if err != nil || got.EventID != change.EventID {
		t.Errorf("read back id %q, %v; want %q", got.EventID, err, change.EventID)
	}
}

// FuzzParseTransition: a stored entry, whatever its bytes, is read or refused with an error,
// never a panic or an unbounded allocation.
func FuzzParseTransition(f *testing.F) {
	for _, seed := range appendTransitions(nil, []scoring.Change{&scoring.TierChange{EventID: "e1", From: "BRONZE", To: "SILVER",
		Direction: scoring.DirectionUp, Reasons: []scoring.Reason{{Code: "SPEND_QUALIFIES", Message: "m", Value: 1}}}}) {
		f.Add(seed)
	}
	at := time.Date(2026, 6, 8, 0, 0, 0, 0, time.UTC)
	f.Add(appendTransitions(nil, []scoring.Change{&scoring.ChurnRiskChange{CustomerID: "c-1", EventID: scoring.EventID("c-1", "churn", "HIGH", at),
		FromLevel: scoring.LevelLow, ToLevel: scoring.LevelHigh, Score: 0.7, PAlive: -1, OccurredAt: at}})[0]) // version 2
	f.Add(`{"at":"2026-06-08T00:00:00Z","kind":"tier"}`)
	f.Add("\x01\xff\xff\xff\xff\x0f")
	f.Fuzz(func(t *testing.T, entry string) {
		tr, err := ParseTransition("c-1", entry)
		if err != nil {
			return
		}
		// What reads back, stored again, reads back the same.
		b, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseTransition("c-1", compressTransition(transitionsV1, b))
		if err != nil || !reflect.DeepEqual(again, tr) {
			t.Fatalf("%+v stored again reads %+v, %v", tr, again, err)
		}
	})
}

// BenchmarkAppendTransitions encodes a segment change, most of a transition list, as the
// scorer stores it; it reports the entry's bytes.
func BenchmarkAppendTransitions(b *testing.B) {
	at := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	change := []scoring.Change{&scoring.SegmentChange{CustomerID: "bc009282", EventID: scoring.EventID("bc009282", "segment", "LOYAL/HIGH_VALUE", at),
		FromSegment: scoring.SegmentChampions, ToSegment: scoring.SegmentLoyal, FromValueLayer: scoring.LayerHighValue, ValueLayer: scoring.LayerHighValue,
		RFM: scoring.RFM{R: 4, F: 5, M: 5}, OccurredAt: at, Reasons: []scoring.Reason{
			{Code: "RECENCY", Message: "last purchase 7 days ago: recency score 4 of 5", Value: 7},
			{Code: "FREQUENCY", Message: "22 purchase days in the last 365: frequency score 5 of 5", Value: 22},
			{Code: "MONETARY", Message: "net spend 1671.10 USD in the last 365 days: monetary score 5 of 5", Value: 167110}}}}
	var entry string
	for b.Loop() {
		entry = appendTransitions(nil, change)[0]
	}
	b.ReportMetric(float64(len(entry)), "bytes/entry")
}
