package scoring

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Producer duplicates (the same event id sent again, at a new offset) are recognised by the
// ids each input topic applied recently: every id is kept as a 64-bit digest with the day it
// was remembered on, per input topic, for the policy's dedupe.horizon_days of that topic's
// event time and at most dedupe.max_ids_per_topic ids (see docs/scoring.md, "Duplicates").
//
// Per topic, not per customer: the three topics of a customer are read by three consumers
// and interleave differently in a live run and in a replay, but each topic's records of a
// customer arrive in one order (one partition). Keeping and ageing a topic's ids by that
// topic's own history alone makes both the remembered ids and every skip decision the same
// whatever the interleaving, as the rest of the state is.

// Topics whose ids are remembered separately: their index in State.Seen.
const (
	seenPurchases = iota // purchases and refunds (one topic)
	seenLogins
	seenFeedback
	seenTopics
)

// MaxDedupeIDs bounds the policy's dedupe.max_ids_per_topic: the stored encoding counts a
// topic's ids in 6 bits, and 3×64 ids keep a customer's hash within Redis's compact listpack
// encoding (fewer than 128 fields of at most 60 bytes).
const MaxDedupeIDs = 64

// MaxDedupeHorizonDays bounds the policy's dedupe.horizon_days.
const MaxDedupeHorizonDays = 365

// DigestSize is the size of an event id's digest: 64 bits. A new id is compared with at most
// MaxDedupeIDs digests of its customer and topic, so a distinct id is taken for a duplicate
// with probability at most 64/2⁶⁴ ≈ 3.5·10⁻¹⁸: at 500 million events a year, once in about
// 600 million years. Half the bytes of the 128-bit digests the ids were first kept with (most
// of a customer's stored state; seenFormatWide).
const DigestSize = 8

// SeenID is an event id applied recently: the first 8 bytes of its SHA-256, and the day it
// was remembered on, its topic's clock then (the newest event day of that topic applied so far,
// this event's included). The day is the topic's event time, not the wall clock, so ageing
// out is a function of the customer's history alone and a replay ages ids exactly as the live
// run did.
type SeenID struct {
	Day    Day
	Digest [DigestSize]byte
}

// digestOf is an event id's digest.
func digestOf(id string) [DigestSize]byte {
	sum := sha256.Sum256([]byte(id))
	var d [DigestSize]byte
	copy(d[:], sum[:DigestSize])
	return d
}

// seenTopic is the index in State.Seen of the topic events of kind k arrive on.
func seenTopic(k Kind) int {
	switch k {
	case KindLogin:
		return seenLogins
	case KindFeedback:
		return seenFeedback
	}
	return seenPurchases
}

// seen reports whether e's event id is among the ids remembered for its topic.
func (s *State) seen(e Event) bool {
	d := digestOf(e.EventID)
	for _, id := range s.Seen[seenTopic(e.Kind)] {
		if id.Digest == d {
			return true
		}
	}
	return false
}

// remember adds e's event id to its topic's ids and forgets those the topic's clock has aged
// past the horizon, then the oldest beyond the cap. A topic's ids are in the order applied, so
// their days never decrease and the newest id is never forgotten: the last one's day is the
// topic's clock.
func (s *State) remember(e Event, p *Policy) {
	t := seenTopic(e.Kind)
	old := s.Seen[t]
	clock := DayOf(e.OccurredAt)
	if n := len(old); n > 0 {
		clock = max(clock, old[n-1].Day)
	}
	// The new list is always a fresh slice, and a list is never written in place: clones of a
	// state share their lists (State.clone).
	from := 0
	for from < len(old) && clock-old[from].Day > Day(p.Dedupe.HorizonDays) {
		from++
	}
	from = max(from, len(old)+1-p.Dedupe.MaxIDsPerTopic) // at most len(old): the cap is at least 1
	ids := make([]SeenID, 0, len(old)-from+1)
	ids = append(ids, old[from:]...)
	s.Seen[t] = append(ids, SeenID{Day: clock, Digest: digestOf(e.EventID)})
}

func (s *State) hasSeen() bool {
	for _, ids := range s.Seen {
		if len(ids) > 0 {
			return true
		}
	}
	return false
}

// seenFormat is the version byte that starts the encoding of the remembered ids.
const seenFormat = 2

// seenFormatWide is the format the ids were first encoded with: the same layout with 16-byte
// digests (the first 16 bytes of the SHA-256). It is still read, keeping the first DigestSize
// bytes, which is the digest the id has now; the customer's next write stores seenFormat.
const seenFormatWide = 1

// maxSeenDelta bounds a day difference in the encoding of the remembered ids (about 45,000
// years), so that decoding never overflows a Day.
const maxSeenDelta = 1 << 24

// encodeSeen encodes the remembered ids, compactly and deterministically:
//
//	version byte (seenFormat)
//	per topic with ids, in index order:
//	  header byte: topic index << 6 | (number of ids - 1)
//	  per id: signed varint of its day minus the previous id's day (the first id of the
//	          encoding: minus 0), then its DigestSize-byte digest
//
// A topic's days never decrease, so within a topic the differences are small and non-negative;
// an ordinary id takes 9 bytes.
func encodeSeen(seen [seenTopics][]SeenID) []byte {
	return appendSeen(make([]byte, 0, seenLen(seen)), seen)
}

// seenLen is the length of encodeSeen's result, so that the binary encoding writes it as its
// length prefix and then appends the ids in place.
func seenLen(seen [seenTopics][]SeenID) int {
	n := 1
	prev := Day(0)
	var tmp [binary.MaxVarintLen64]byte
	for _, ids := range seen {
		if len(ids) == 0 {
			continue
		}
		n++
		for _, id := range ids {
			n += len(binary.AppendVarint(tmp[:0], int64(id.Day-prev))) + DigestSize
			prev = id.Day
		}
	}
	return n
}

// appendSeen appends encodeSeen's result to buf.
func appendSeen(buf []byte, seen [seenTopics][]SeenID) []byte {
	buf = append(buf, seenFormat)
	prev := Day(0)
	for t, ids := range seen {
		if len(ids) == 0 {
			continue
		}
		buf = append(buf, byte(t)<<6|byte(len(ids)-1))
		for _, id := range ids {
			buf = binary.AppendVarint(buf, int64(id.Day-prev))
			buf = append(buf, id.Digest[:]...)
			prev = id.Day
		}
	}
	return buf
}

// digestSet finds a digest repeated among the at most 64 ids of a topic in linear time:
// open addressing over 128 slots indexed by the digest's low bits, which are uniform (a
// hash's). Comparing each id with those before it took 15% of a login consumer's CPU with
// customers near the 64 ids a topic keeps.
type digestSet struct {
	used  [2]uint64
	slots [128]uint64
}

// add inserts d and reports whether it was absent. At most 127 digests fit.
func (s *digestSet) add(d [DigestSize]byte) bool {
	v := binary.LittleEndian.Uint64(d[:])
	for i := v & 127; ; i = (i + 1) & 127 {
		bit := uint64(1) << (i & 63)
		if s.used[i>>6]&bit == 0 {
			s.used[i>>6] |= bit
			s.slots[i] = v
			return true
		}
		if s.slots[i] == v {
			return false
		}
	}
}

// decodeSeen decodes what encodeSeen wrote, or the wide format before it (seenFormatWide).
// It checks everything encodeSeen guarantees: the version, topics in ascending order, days
// that never decrease within a topic, no id twice within a topic, no trailing bytes.
func decodeSeen(buf []byte) ([seenTopics][]SeenID, error) {
	var out [seenTopics][]SeenID
	if len(buf) == 0 {
		return out, errors.New("empty")
	}
	stored := DigestSize
	switch buf[0] {
	case seenFormat:
	case seenFormatWide:
		stored = 2 * DigestSize
	default:
		return out, fmt.Errorf("format %d, want %d or %d", buf[0], seenFormat, seenFormatWide)
	}
	buf = buf[1:]
	prev, last := Day(0), -1
	for len(buf) > 0 {
		t, n := int(buf[0]>>6), int(buf[0]&63)+1
		buf = buf[1:]
		if t >= seenTopics || t <= last {
			return out, fmt.Errorf("topic %d after topic %d", t, last)
		}
		last = t
		set := digestSet{}
		ids := make([]SeenID, 0, n)
		for i := 0; i < n; i++ {
			delta, k := binary.Varint(buf)
			if k <= 0 || delta < -maxSeenDelta || delta > maxSeenDelta || (i > 0 && delta < 0) {
				return out, fmt.Errorf("topic %d id %d: bad day", t, i)
			}
			d := int64(prev) + delta
			if d < -maxSeenDelta || d > maxSeenDelta {
				return out, fmt.Errorf("topic %d id %d: day out of range", t, i)
			}
			buf = buf[k:]
			if len(buf) < stored {
				return out, fmt.Errorf("topic %d id %d: truncated digest", t, i)
			}
			id := SeenID{Day: Day(d)}
			copy(id.Digest[:], buf[:DigestSize])
			buf = buf[stored:]
			if !set.add(id.Digest) {
				return out, fmt.Errorf("topic %d: digest %x twice", t, id.Digest)
			}
			ids = append(ids, id)
			prev = id.Day
		}
		out[t] = ids
	}
	if last < 0 {
		return out, errors.New("no ids") // encodeSeen writes nothing then
	}
	return out, nil
}
