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
	changes := []scoring.Change{
		&scoring.SegmentChange{EventID: strings.Repeat("7e08", 16), FromSegment: scoring.SegmentPotentialLoyalists,
			ToSegment: scoring.SegmentAboutToSleep, FromValueLayer: scoring.LayerActive, ValueLayer: scoring.LayerGrowth,
			RFM: scoring.RFM{R: 2, F: 3, M: 3}, OccurredAt: at, Reasons: []scoring.Reason{
				{Code: "RECENCY", Message: "last purchase 84 days ago: recency score 2 of 5", Value: 84},
				{Code: "FREQUENCY", Message: "2 purchase days in the last 365: frequency score 3 of 5", Value: 2},
				{Code: "MONETARY", Message: "net spend 462.66 USD in the last 365 days: monetary score 3 of 5", Value: 46266}}},
		&scoring.ChurnRiskChange{EventID: strings.Repeat("9b29", 16), FromLevel: scoring.LevelLow, ToLevel: scoring.LevelHigh,
			Score: 0.702, PAlive: 0.213, ModelVersion: "bgnbd-v1@2026-05-28", OccurredAt: at, Reasons: []scoring.Reason{
				{Code: "P_ALIVE", Message: "P(alive) 0.213 under bgnbd-v1@2026-05-28", Value: 0.213}}},
		&scoring.TierChange{EventID: strings.Repeat("9ca7", 16), From: "BRONZE", To: "SILVER", Direction: scoring.DirectionUp,
			OccurredAt: at.Add(15*time.Hour + 42*time.Minute), Reasons: []scoring.Reason{
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
		if strings.HasPrefix(entry, "{") || len(entry) > len(plain)/2 {
			t.Errorf("%s entry is %d bytes for %d bytes of JSON: not compressed", want.Kind, len(entry), len(plain))
		}
		got, err := ParseTransition(entry)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("read back %+v, want %+v", got, want)
		}
		// An entry an earlier version wrote as plain JSON reads the same.
		if old, err := ParseTransition(string(plain)); err != nil || !reflect.DeepEqual(old, want) {
			t.Errorf("plain JSON entry read as %+v, %v", old, err)
		}
		// The encoding is a function of the change: a replay writes the same bytes.
		if again := appendTransitions(nil, changes[i:i+1]); again[0] != entry {
			t.Errorf("%s entry encoded twice differs", want.Kind)
		}
	}
	for _, bad := range []string{"", "\x28\xb5\x2f\xfd garbage", entries[0][:len(entries[0])/2]} {
		if _, err := ParseTransition(bad); err == nil {
			t.Errorf("entry %q parsed without an error", bad)
		}
	}
}

// FuzzParseTransition: a stored entry, whatever its bytes, is read or refused with an error,
// never a panic or an unbounded allocation.
func FuzzParseTransition(f *testing.F) {
	for _, seed := range appendTransitions(nil, []scoring.Change{&scoring.TierChange{EventID: "e1", From: "BRONZE", To: "SILVER",
		Direction: scoring.DirectionUp, Reasons: []scoring.Reason{{Code: "SPEND_QUALIFIES", Message: "m", Value: 1}}}}) {
		f.Add(seed)
	}
	f.Add(`{"at":"2026-06-08T00:00:00Z","kind":"tier"}`)
	f.Add("\x01\xff\xff\xff\xff\x0f")
	f.Fuzz(func(t *testing.T, entry string) {
		tr, err := ParseTransition(entry)
		if err != nil {
			return
		}
		// What reads back, stored again, reads back the same.
		b, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseTransition(compressTransition(b))
		if err != nil || !reflect.DeepEqual(again, tr) {
			t.Fatalf("%+v stored again reads %+v, %v", tr, again, err)
		}
	})
}
