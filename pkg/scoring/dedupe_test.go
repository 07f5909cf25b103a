package scoring

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"strings"
	"testing"
	"time"
)

// netSpend is the customer's net spend over the segment window as of day d, in minor units.
func netSpend(t *testing.T, s State, d Day, p *Policy) int64 {
	t.Helper()
	v, ok := s.RFMValuesAt(d, p)
	if !ok {
		t.Fatalf("no purchases as of %d", d)
	}
	return int64(v.MonetaryMinor)
}

// dedupePolicy is the default policy with another dedupe section.
func dedupePolicy(t *testing.T, horizonDays, maxIDs int) *Policy {
	t.Helper()
	yaml := strings.Replace(string(DefaultPolicyYAML()), "horizon_days: 7", fmt.Sprintf("horizon_days: %d", horizonDays), 1)
	yaml = strings.Replace(yaml, "max_ids_per_topic: 64", fmt.Sprintf("max_ids_per_topic: %d", maxIDs), 1)
	p, err := ParsePolicy([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The bug: two purchases whose event ids share a 32-bit FNV-1a hash; the former ring took the
// second for a duplicate and the customer's net spend was 100.00 instead of 300.00.
func TestTwoDistinctIdsWithCollidingFNV32HashesBothCount(t *testing.T) {
	a, b := "purchase-462789", "purchase-679192"
	fnv32 := func(s string) uint32 { h := fnv.New32a(); h.Write([]byte(s)); return h.Sum32() }
	if fnv32(a) != fnv32(b) {
		t.Fatalf("the ids of the bug report should collide under FNV-32a: %08x %08x", fnv32(a), fnv32(b))
	}
	p := DefaultPolicy()
	var g evGen
	first := g.purchase(t0, 10000, "order-a")
	first.EventID = a
	second := g.purchase(t0.Add(3*time.Minute), 20000, "order-b")
	second.EventID = b
	s, _ := mustApply(t, State{}, first, p)
	if IsDuplicate(s, second) {
		t.Fatalf("%s taken for a duplicate of %s", b, a)
	}
	s, _ = mustApply(t, s, second, p)
	if got := netSpend(t, s, DayOf(t0), p); got != 30000 {
		t.Fatalf("net spend %d.%02d, want 300.00", got/100, got%100)
	}
	// And both stay remembered: each one's repeat is skipped.
	for _, e := range []Event{first, second} {
		e.Source.Offset += 100
		if !IsDuplicate(s, e) {
			t.Errorf("the repeat of %s is not recognised", e.EventID)
		}
	}
}

// The bug: the same event id again 11 events later, a few minutes apart, was counted twice
// (the ring kept 8). Within the horizon and the cap it is skipped, on every topic.
func TestARepeatElevenEventsLaterWithinTheHorizonIsSkipped(t *testing.T) {
	p := DefaultPolicy()
	var g evGen
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 3 * time.Minute) }
	for _, tc := range []struct {
		name  string
		event func(i int) Event
	}{
		{"purchases", func(i int) Event { return g.purchase(at(i), 1000+int64(i), fmt.Sprintf("o-%d", i)) }},
		{"logins", func(i int) Event { return g.login(at(i)) }},
		{"feedback", func(i int) Event { return g.feedback(at(i), FeedbackComplaintOpened, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			original := tc.event(0)
			s, _ := mustApply(t, State{}, original, p)
			for i := 1; i <= 11; i++ {
				s, _ = mustApply(t, s, tc.event(i), p)
			}
			repeat := original
			repeat.Source.Offset = int64(g.n + 1) // a producer's duplicate: a new offset
			if !IsDuplicate(s, repeat) {
				t.Fatal("the repeat is not recognised as a duplicate")
			}
			after, changes, err := Apply(s, repeat, p)
			if err != nil || len(changes) != 0 || !reflect.DeepEqual(after, s) {
				t.Fatalf("the repeat changed the state or emitted %s (err %v)", describe(changes), err)
			}
		})
	}
	// What the bug was about: the spend.
	var s State
	original := g.purchase(t0, 10000, "big")
	s, _ = mustApply(t, s, original, p)
	for i := 1; i <= 11; i++ {
		s, _ = mustApply(t, s, g.purchase(at(i), 100, fmt.Sprintf("small-%d", i)), p)
	}
	repeat := original
	repeat.Source.Offset = int64(g.n + 1)
	s, _ = mustApply(t, s, repeat, p)
	if got := netSpend(t, s, DayOf(t0), p); got != 10000+11*100 {
		t.Fatalf("net spend %d, want %d: the repeat counted", got, 10000+11*100)
	}
}

// Beyond the horizon (documented in docs/scoring.md): once the topic's clock is more than
// horizon_days past the day the id was remembered on, the id is forgotten and a repeat is
// applied again. Exactly at the horizon it is still skipped.
func TestARepeatBeyondTheHorizonIsAppliedAgain(t *testing.T) {
	p := DefaultPolicy() // horizon_days: 7
	for _, tc := range []struct {
		clockDays int
		skipped   bool
	}{{1, true}, {7, true}, {8, false}, {30, false}} {
		t.Run(fmt.Sprintf("topic clock %d days later", tc.clockDays), func(t *testing.T) {
			var g evGen
			original := g.purchase(t0, 10000, "o-1")
			s, _ := mustApply(t, State{}, original, p)
			s, _ = mustApply(t, s, g.purchase(day(tc.clockDays), 500, "o-2"), p)
			// A login far ahead does not age the purchases' ids: each topic has its own clock.
			s, _ = mustApply(t, s, g.login(day(tc.clockDays+40)), p)
			repeat := original
			repeat.Source.Offset = int64(g.n + 1)
			if got := IsDuplicate(s, repeat); got != tc.skipped {
				t.Fatalf("IsDuplicate = %v, want %v", got, tc.skipped)
			}
			s, _ = mustApply(t, s, repeat, p)
			want := int64(10000 + 500)
			if !tc.skipped {
				want += 10000
			}
			if got := netSpend(t, s, DayOf(day(tc.clockDays)), p); got != want {
				t.Fatalf("net spend %d, want %d", got, want)
			}
		})
	}
}

// The cap: at most max_ids_per_topic ids per topic, the oldest forgotten first, whatever the
// horizon says.
func TestTheCapForgetsATopicsOldestIdsFirst(t *testing.T) {
	p := dedupePolicy(t, 7, 8)
	for _, tc := range []struct {
		later   int
		skipped bool
	}{{7, true}, {8, false}} {
		var g evGen
		original := g.feedback(t0, FeedbackComplaintOpened, 0)
		s, _ := mustApply(t, State{}, original, p)
		for i := 0; i < tc.later; i++ {
			s, _ = mustApply(t, s, g.feedback(t0.Add(time.Duration(i+1)*time.Minute), FeedbackNPS, 9), p)
		}
		// Other topics' ids do not count against this topic's cap.
		for i := 0; i < 20; i++ {
			s, _ = mustApply(t, s, g.login(t0.Add(time.Duration(i)*time.Second)), p)
		}
		if n := len(s.Seen[seenFeedback]); n != min(tc.later+1, 8) {
			t.Fatalf("%d feedback ids remembered, want %d", n, min(tc.later+1, 8))
		}
		repeat := original
		repeat.Source.Offset = int64(g.n + 1)
		if got := IsDuplicate(s, repeat); got != tc.skipped {
			t.Fatalf("%d ids later: IsDuplicate = %v, want %v", tc.later, got, tc.skipped)
		}
		s, _ = mustApply(t, s, repeat, p)
		wantOpened := int32(2)
		if tc.skipped {
			wantOpened = 1
		}
		if s.Complaints.Opened != wantOpened {
			t.Fatalf("%d ids later: %d complaints opened, want %d", tc.later, s.Complaints.Opened, wantOpened)
		}
	}
}

// Ids are remembered per topic: the same id on another topic is another event (it is never
// a redelivery of the first), and skipping it would depend on how the topics interleaved.
func TestTheSameIdOnAnotherTopicIsAnotherEvent(t *testing.T) {
	p := DefaultPolicy()
	var g evGen
	buy := g.purchase(t0, 10000, "o-1")
	s, _ := mustApply(t, State{}, buy, p)
	login := g.login(t0.Add(time.Minute))
	login.EventID = buy.EventID
	if IsDuplicate(s, login) {
		t.Fatal("a login sharing a purchase's event id taken for a duplicate")
	}
	s, _ = mustApply(t, s, login, p)
	if s.LoginBits == [2]uint64{} {
		t.Fatal("the login was not applied")
	}
}

// encodeLegacyRing encodes the former ring field: the next position and 8 big-endian FNV-32 hashes.
func encodeLegacyRing(next int, ids ...string) string {
	var raw [4 * legacyRingLen]byte
	for i, id := range ids {
		h := fnv.New32a()
		h.Write([]byte(id))
		binary.BigEndian.PutUint32(raw[4*i:], h.Sum32())
	}
	return fmt.Sprint(next) + base64.RawURLEncoding.EncodeToString(raw[:])
}

// A state stored before ids were remembered per topic (its 32-bit ring in field "r") loads;
// the ring is dropped (docs/scoring.md, "Duplicates": one-time risk) and the next write leaves
// it out; everything else is kept. A malformed ring is still a corrupt state.
func TestAStateWithTheFormerRingMigrates(t *testing.T) {
	p := DefaultPolicy()
	st := typicalCustomer(t, p)
	old := st.MarshalFields()
	for k := range old {
		if isChunk(k, seenPrefix) {
			delete(old, k)
		}
	}
	old[legacyRing] = encodeLegacyRing(3, "ev-60", "ev-61", "ev-62")
	got, err := UnmarshalFields(old)
	if err != nil {
		t.Fatalf("a state with the former ring: %v", err)
	}
	if got.hasSeen() {
		t.Fatalf("the former ring's hashes were kept: %+v", got.Seen)
	}
	want := st
	want.Seen = [seenTopics][]SeenID{}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Fatalf("migrated state differs:\n got %+v\nwant %+v", got, want)
	}
	written := got.MarshalFields()
	if _, ok := written[legacyRing]; ok {
		t.Fatal("the former ring is written again")
	}
	// The customer goes on: its next event is applied and remembered.
	var g evGen
	g.n = 1000
	next := g.purchase(day(366), 2500, "o-next")
	after, _ := mustApply(t, got, next, p)
	if len(after.Seen[seenPurchases]) != 1 || !IsDuplicate(after, Event{Kind: KindPurchase, EventID: next.EventID}) {
		t.Fatalf("the next event is not remembered: %+v", after.Seen)
	}

	for name, ring := range map[string]string{
		"a bad position":   "9" + encodeLegacyRing(0)[1:],
		"a short ring":     encodeLegacyRing(0)[:20],
		"not base64":       "0" + strings.Repeat("!", 43),
		"an empty value":   "",
		"a ring too large": encodeLegacyRing(0) + "AAAA",
	} {
		m := st.MarshalFields()
		m[legacyRing] = ring
		if _, err := UnmarshalFields(m); !errors.Is(err, ErrCorruptState) {
			t.Errorf("former ring with %s: got %v, want ErrCorruptState", name, err)
		}
	}
}

// Corrupt remembered ids make the state corrupt (ErrCorruptState, which quarantines the
// customer in the pipeline), never a panic or a silently smaller set.
func TestCorruptRememberedIdsAreACorruptState(t *testing.T) {
	p := DefaultPolicy()
	var g evGen
	var s State
	for i := 0; i < 4; i++ {
		s, _ = mustApply(t, s, g.purchase(day(i), 1000, fmt.Sprintf("o-%d", i)), p)
		s, _ = mustApply(t, s, g.login(day(i)), p)
	}
	good := s.MarshalFields()
	raw := encodeSeen(s.Seen)
	withSeen := func(b []byte) func(map[string]string) {
		return func(m map[string]string) {
			for k := range m {
				if isChunk(k, seenPrefix) {
					delete(m, k)
				}
			}
			putChunks(m, seenPrefix, b64.EncodeToString(b))
		}
	}
	patched := func(i int, v byte) []byte {
		b := append([]byte(nil), raw...)
		b[i] = v
		return b
	}
	// The first id of the logins' group: after the version, the purchases' header and their
	// 4 ids (a day byte or three and a digest each).
	loginsHeader := 1 + 1 + 4*DigestSize + 3 + 3
	if raw[loginsHeader]>>6 != seenLogins {
		t.Fatalf("test assumes the logins' header at byte %d: %x", loginsHeader, raw)
	}
	for name, mutate := range map[string]func(map[string]string){
		"not base64":              func(m map[string]string) { m["d0"] = "!!!!" },
		"another format":          withSeen(patched(0, 3)),
		"a truncated digest":      withSeen(raw[:len(raw)-1]),
		"trailing bytes":          withSeen(append(append([]byte(nil), raw...), 0)),
		"topics out of order":     withSeen(patched(loginsHeader, seenPurchases<<6|3)),
		"an unknown topic":        withSeen(patched(loginsHeader, 3<<6|3)),
		"a day going back":        withSeen(patched(loginsHeader+1+1+DigestSize, 1)), // the second login's: varint -1
		"the same digest twice":   withSeen(append(append([]byte{seenFormat, 1}, raw[2:2+3+DigestSize]...), append([]byte{0}, raw[2+3:2+3+DigestSize]...)...)),
		"a chunk gap":             func(m map[string]string) { m["d7"] = "AQ" },
		"only a version":          withSeen([]byte{seenFormat}),
		"a count beyond the data": withSeen([]byte{seenFormat, 5}),
	} {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		mutate(m)
		if _, err := UnmarshalFields(m); !errors.Is(err, ErrCorruptState) {
			t.Errorf("%s: got %v, want ErrCorruptState", name, err)
		}
	}
	if back, err := UnmarshalFields(good); err != nil || !reflect.DeepEqual(back.Seen, s.Seen) {
		t.Fatalf("the intact state: %v, %+v", err, back.Seen)
	}
}

// Every remembered id costs 9 bytes (a day difference and an 8-byte digest) before base64,
// and a customer's ids stay within the cap whatever arrives.
func TestRememberedIdsAreCompactAndCapped(t *testing.T) {
	p := DefaultPolicy()
	var g evGen
	var s State
	for i := 0; i < 500; i++ { // many events a day on every topic
		at := t0.Add(time.Duration(i) * 7 * time.Minute)
		s, _ = mustApply(t, s, g.purchase(at, 100, fmt.Sprintf("o-%d", i)), p)
		s, _ = mustApply(t, s, g.login(at), p)
		s, _ = mustApply(t, s, g.feedback(at, FeedbackCSAT, 4), p)
	}
	for tp, ids := range s.Seen {
		if len(ids) != MaxDedupeIDs {
			t.Fatalf("topic %d remembers %d ids, want the cap %d", tp, len(ids), MaxDedupeIDs)
		}
	}
	raw := encodeSeen(s.Seen)
	if want := 1 + 3*(1+MaxDedupeIDs*(1+DigestSize)) + 2; len(raw) > want {
		t.Fatalf("%d ids take %d bytes, want at most %d", 3*MaxDedupeIDs, len(raw), want)
	}
	m := s.MarshalFields()
	if len(m) >= 128 {
		t.Fatalf("%d fields: Redis would leave the listpack encoding", len(m))
	}
	t.Logf("3×%d remembered ids: %d bytes, %d fields, state %d bytes", MaxDedupeIDs, len(raw), len(m), FieldsSize(m))
}

// FuzzSeenIDsField feeds arbitrary bytes as the remembered ids of a stored state: decoding
// either fails with ErrCorruptState or yields ids that encode back to an equal state.
func FuzzSeenIDsField(f *testing.F) {
	p := DefaultPolicy()
	var g evGen
	var s State
	for i := 0; i < 5; i++ {
		s, _ = mustApply(f, s, g.purchase(day(i), 1000, "o"), p)
		s, _ = mustApply(f, s, g.login(day(2*i)), p)
		s, _ = mustApply(f, s, g.feedback(day(i), FeedbackNPS, 3), p)
		f.Add(encodeSeen(s.Seen))
	}
	f.Add(encodeSeenWide(s.Seen))
	f.Add([]byte{})
	f.Add([]byte{seenFormat, 0x3f})
	f.Add([]byte{seenFormatWide, 0x3f})
	f.Add([]byte{seenFormat, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1})
	base := s.MarshalFields()
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := map[string]string{}
		for k, v := range base {
			if !isChunk(k, seenPrefix) {
				m[k] = v
			}
		}
		putChunks(m, seenPrefix, b64.EncodeToString(raw))
		got, err := UnmarshalFields(m)
		if err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("error not ErrCorruptState: %v", err)
			}
			return
		}
		for tp, ids := range got.Seen {
			if len(ids) > MaxDedupeIDs {
				t.Fatalf("topic %d: %d ids", tp, len(ids))
			}
			for i := 1; i < len(ids); i++ {
				if ids[i].Day < ids[i-1].Day {
					t.Fatalf("topic %d: days go back: %+v", tp, ids)
				}
			}
		}
		again, err := UnmarshalFields(got.MarshalFields())
		if err != nil || !reflect.DeepEqual(normalize(again), normalize(got)) {
			t.Fatalf("round trip: %v\n got %+v\nback %+v", err, got.Seen, again.Seen)
		}
	})
}

// encodeSeenWide is encodeSeen in the wide format the ids were first stored with
// (seenFormatWide): the layout of seenFormat with each id's 16-byte digest, the first 16
// bytes of its SHA-256. ids must carry their full digests in wide.
func encodeSeenWide(seen [seenTopics][]SeenID, wide ...map[[DigestSize]byte][16]byte) []byte {
	buf := []byte{seenFormatWide}
	prev := Day(0)
	for t, ids := range seen {
		if len(ids) == 0 {
			continue
		}
		buf = append(buf, byte(t)<<6|byte(len(ids)-1))
		for _, id := range ids {
			buf = binary.AppendVarint(buf, int64(id.Day-prev))
			full := [16]byte{}
			copy(full[:], id.Digest[:])
			for _, w := range wide {
				if d, ok := w[id.Digest]; ok {
					full = d
				}
			}
			buf = append(buf, full[:]...)
			prev = id.Day
		}
	}
	return buf
}

// A state stored with the wide digests (seenFormatWide) decodes to the ids of the current
// format: each id's digest is the first DigestSize bytes of its wide one. A duplicate of an id
// remembered in the wide format is still skipped, and the next encoding is the narrow one.
func TestRememberedIdsInTheWideFormatAreRead(t *testing.T) {
	p := DefaultPolicy()
	var g evGen
	var s State
	var events []Event
	wide := map[[DigestSize]byte][16]byte{}
	for i := 0; i < 6; i++ {
		for _, e := range []Event{g.purchase(day(i), 1000, fmt.Sprintf("o-%d", i)), g.login(day(i)), g.feedback(day(i), FeedbackNPS, 9)} {
			s, _ = mustApply(t, s, e, p)
			events = append(events, e)
			sum := sha256.Sum256([]byte(e.EventID))
			var full [16]byte
			copy(full[:], sum[:16])
			wide[digestOf(e.EventID)] = full
		}
	}
	back, err := decodeSeen(encodeSeenWide(s.Seen, wide))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s.Seen) {
		t.Fatalf("wide format decoded to %+v, want %+v", back, s.Seen)
	}
	ids := 0
	for _, l := range back {
		ids += len(l)
	}
	if ids != len(events) {
		t.Fatalf("%d ids remembered, want all %d events' (within the horizon and cap)", ids, len(events))
	}
	if got, want := len(encodeSeen(back)), len(encodeSeenWide(back))-DigestSize*ids; got != want {
		t.Fatalf("re-encoded: %d bytes, want %d", got, want)
	}
	old := s
	old.Seen = back
	for _, e := range events {
		again := e
		again.Source.Offset += 1000 // a producer's duplicate, at a new offset
		if !IsDuplicate(old, again) {
			t.Fatalf("%s, remembered in the wide format, is not recognised as a duplicate", e.EventID)
		}
	}
}

// TestDigestSetFindsRepeatsAcrossProbes: digests that share a slot (the same low bits) are
// all kept, and a repeat is found wherever probing placed the first, wrapping past the last
// slot.
func TestDigestSetFindsRepeatsAcrossProbes(t *testing.T) {
	digest := func(v uint64) [DigestSize]byte {
		var d [DigestSize]byte
		binary.LittleEndian.PutUint64(d[:], v)
		return d
	}
	var s digestSet
	// 64 digests that all land on slot 127, so they occupy 127, 0, 1, ... 62.
	for i := range uint64(64) {
		if !s.add(digest(i<<7 | 127)) {
			t.Fatalf("digest %d reported as a repeat", i)
		}
	}
	for _, i := range []uint64{0, 1, 63} {
		if s.add(digest(i<<7 | 127)) {
			t.Fatalf("digest %d added twice", i)
		}
	}
	if !s.add(digest(64<<7|127)) || !s.add(digest(5)) {
		t.Fatal("new digests after the probes reported as repeats")
	}
}
