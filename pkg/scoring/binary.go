package scoring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// The compact binary encoding of a State (AppendBinary / UnmarshalBinary), what the store
// keeps per customer: one value instead of a hash of small text fields, about a third of the
// bytes. Numbers are varints; days are written relative to the evaluated day (or to the
// previous day of a list), so most take one byte. The layout, after a format byte:
//
//	customer id (uvarint length, bytes), section flags (uvarint), ClockMs (varint),
//	ClockMs − TierClockMs (varint), EvalDay (varint), TierDay − EvalDay (varint), SeenDay (day)
//
// then, in flag order, each section present (see the sec* constants). A "day" is 0 for day
// zero (none) and otherwise 1 + the zigzag of its difference from EvalDay. The decoder checks
// every bound the text fields' decoder checks, and that nothing follows the last section.
//
// Changing the layout needs a new binaryFormat, and a decoder that still reads this one.
const binaryFormat = 1

// Sections of the binary encoding, in the order they follow the header.
const (
	secPurchases = 1 << iota
	secAgedNet
	secWindow
	secOrders
	secLogins
	secNPS
	secCSAT
	secComplaints
	secTier
	secChurn
	secSegment
	secObservations
	secOffsets
	secSeen
	secAll = secSeen<<1 - 1
)

// offsetStems are the input topics' standard names. An applied-offset key whose topic starts
// with one is written as the stem's index and the rest, and a rest equal to the previous
// key's (the namespace's topic suffix) is not repeated: three offsets take about 12 bytes
// instead of 70. Part of binaryFormat 1; never reorder.
var offsetStems = [...]string{"loyalty.purchases.v1", "loyalty.logins.v1", "loyalty.feedback.v1"}

// AppendBinary appends the state's binary encoding to b (encoding.BinaryAppender). The zero
// State (a customer never seen) encodes as nothing. The encoding is deterministic and
// lossless: UnmarshalBinary of it gives back s.
func (s State) AppendBinary(b []byte) ([]byte, error) {
	if !s.started() && s.CustomerID == "" {
		return b, nil
	}
	if s.CustomerID == "" || len(s.CustomerID) > MaxCustomerIDLen {
		return b, fmt.Errorf("customer id must be 1–%d bytes, got %d", MaxCustomerIDLen, len(s.CustomerID))
	}
	flags := s.binarySections()
	b = append(b, binaryFormat)
	b = appendString(b, s.CustomerID)
	b = binary.AppendUvarint(b, uint64(flags))
	b = binary.AppendVarint(b, s.ClockMs)
	b = binary.AppendVarint(b, s.ClockMs-s.TierClockMs)
	b = binary.AppendVarint(b, int64(s.EvalDay))
	b = binary.AppendVarint(b, int64(s.TierDay)-int64(s.EvalDay))
	base := s.EvalDay
	b = appendDay(b, s.SeenDay, base)
	if flags&secPurchases != 0 {
		b = appendDay(b, s.FirstDay, base)
		b = appendDay(b, s.LastDay, base)
		b = appendDay(b, s.OldLastDay, base)
		b = binary.AppendUvarint(b, uint64(s.PurchaseDays))
	}
	if flags&secAgedNet != 0 {
		b = binary.AppendVarint(b, s.AgedNet)
	}
	if flags&secWindow != 0 {
		b = binary.AppendUvarint(b, uint64(len(s.Window)))
		prev := base
		for i, e := range s.Window {
			delta := uint64(e.Day - prev)
			if i == 0 {
				delta = zigzag(int64(e.Day) - int64(base))
			}
			flag := uint64(0)
			if e.Purchase {
				flag = 1
			}
			b = binary.AppendUvarint(b, delta<<1|flag)
			b = binary.AppendVarint(b, e.Net)
			prev = e.Day
		}
		shifted := 0
		for _, e := range s.Window {
			if e.Shift != 0 {
				shifted++
			}
		}
		b = binary.AppendUvarint(b, uint64(shifted))
		last := -1
		for i, e := range s.Window {
			if e.Shift != 0 {
				b = binary.AppendUvarint(b, uint64(i-last))
				b = binary.AppendVarint(b, e.Shift)
				last = i
			}
		}
	}
	if flags&secOrders != 0 {
		b = binary.AppendUvarint(b, uint64(len(s.Orders)))
		prev := base
		for _, o := range s.Orders {
			b = append(b, byte(o.Hash>>16), byte(o.Hash>>8), byte(o.Hash))
			b = binary.AppendVarint(b, int64(o.Day)-int64(prev))
			prev = o.Day
		}
	}
	if flags&secLogins != 0 {
		b = binary.AppendVarint(b, int64(s.LoginTop)-int64(base))
		var raw [16]byte
		binary.LittleEndian.PutUint64(raw[:8], s.LoginBits[0])
		binary.LittleEndian.PutUint64(raw[8:], s.LoginBits[1])
		n := len(raw)
		for n > 0 && raw[n-1] == 0 {
			n--
		}
		b = append(b, byte(n))
		b = append(b, raw[:n]...)
	}
	for _, sec := range []struct {
		flag int
		h    ScoreHistory
	}{{secNPS, s.NPS}, {secCSAT, s.CSAT}} {
		if flags&sec.flag != 0 {
			b = binary.AppendUvarint(b, uint64(len(sec.h.Marks)))
			prev := base
			for _, m := range sec.h.Marks {
				b = binary.AppendVarint(b, int64(m.Day)-int64(prev))
				b = append(b, byte(m.Score))
				prev = m.Day
			}
		}
	}
	if flags&secComplaints != 0 {
		c := s.Complaints
		b = binary.AppendVarint(b, int64(c.Opened))
		b = binary.AppendVarint(b, int64(c.Closed))
		b = binary.AppendUvarint(b, uint64(len(c.Days)))
		prev := base
		for _, d := range c.Days {
			b = binary.AppendVarint(b, int64(d.Day)-int64(prev))
			b = binary.AppendVarint(b, int64(d.Opened))
			b = binary.AppendVarint(b, int64(d.Closed))
			prev = d.Day
		}
	}
	if flags&secTier != 0 {
		b = append(b, s.Tier, s.BaseTier)
		b = appendDay(b, s.BaseReached, base)
		b = appendDay(b, s.BaseReview, base)
		b = appendDay(b, s.TierFloor, base)
	}
	if flags&secChurn != 0 {
		model := byte(0)
		if s.ChurnModel {
			model = 1
		}
		b = append(b, byte(s.Churn)|model<<2)
		b = appendDay(b, s.ChurnSince, base)
		b = binary.AppendUvarint(b, uint64(s.ChurnScore))
	}
	if flags&secSegment != 0 {
		b = append(b, byte(s.Segment), byte(s.ValueLayer))
		b = binary.AppendUvarint(b, uint64(s.LastRFM.R*100+s.LastRFM.F*10+s.LastRFM.M))
	}
	if flags&secObservations != 0 {
		b = binary.AppendUvarint(b, uint64(len(s.Observations)))
		prev := base
		for _, o := range s.Observations {
			b = binary.AppendVarint(b, int64(o.Day)-int64(prev))
			b = append(b, byte(o.Level), byte(o.Decile+1))
			b = binary.AppendUvarint(b, uint64(int64(o.Within[0])+1))
			b = binary.AppendUvarint(b, uint64(int64(o.Within[1])+1))
			prev = o.Day
		}
	}
	if flags&secOffsets != 0 {
		b = appendOffsets(b, s.Offsets)
	}
	if flags&secSeen != 0 {
		b = binary.AppendUvarint(b, uint64(seenLen(s.Seen)))
		b = appendSeen(b, s.Seen)
	}
	return b, nil
}

// binarySections is the flags of the sections s has something to write in.
func (s State) binarySections() int {
	f := 0
	set := func(flag int, present bool) {
		if present {
			f |= flag
		}
	}
	set(secPurchases, s.PurchaseDays != 0 || s.FirstDay != 0 || s.LastDay != 0 || s.OldLastDay != 0)
	set(secAgedNet, s.AgedNet != 0)
	set(secWindow, len(s.Window) > 0)
	set(secOrders, len(s.Orders) > 0)
	set(secLogins, s.LoginBits != [2]uint64{} || s.LoginTop != 0)
	set(secNPS, len(s.NPS.Marks) > 0)
	set(secCSAT, len(s.CSAT.Marks) > 0)
	set(secComplaints, !s.Complaints.isZero())
	set(secTier, s.Tier != 0 || s.BaseTier != 0 || s.BaseReached != 0 || s.BaseReview != 0 || s.TierFloor != 0)
	set(secChurn, s.ChurnSince != 0 || s.Churn != 0 || s.ChurnScore != 0 || s.ChurnModel)
	set(secSegment, s.Segment != 0 || s.ValueLayer != 0 || s.LastRFM != (RFM{}))
	set(secObservations, len(s.Observations) > 0)
	set(secOffsets, len(s.Offsets) > 0)
	set(secSeen, s.hasSeen())
	return f
}

func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

// appendDay writes d relative to base: 0 for day zero, else 1 + zigzag(d − base).
func appendDay(b []byte, d, base Day) []byte {
	if d == 0 {
		return append(b, 0)
	}
	return binary.AppendUvarint(b, 1+zigzag(int64(d)-int64(base)))
}

// appendOffsets writes the applied offsets in key order: per key a header byte (bits 0–1 the
// stem of offsetStems its topic starts with, 0 for none; bit 2 the rest of the topic name
// equals the previous key's; bit 3 the key ends in "#<partition>"), the rest unless bit 2,
// the partition if bit 3, and the offset.
func appendOffsets(b []byte, offsets map[string]int64) []byte {
	keys := make([]string, 0, len(offsets))
	for k := range offsets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	prevRest := ""
	for i, k := range keys {
		topic, partition, hasPartition := splitOffsetKey(k)
		stem, rest := 0, topic
		for j, st := range offsetStems {
			if strings.HasPrefix(topic, st) {
				stem, rest = j+1, topic[len(st):]
				break
			}
		}
		h := byte(stem)
		same := i > 0 && rest == prevRest
		if same {
			h |= 4
		}
		if hasPartition {
			h |= 8
		}
		b = append(b, h)
		if !same {
			b = appendString(b, rest)
		}
		if hasPartition {
			b = binary.AppendUvarint(b, uint64(partition))
		}
		b = binary.AppendVarint(b, offsets[k])
		prevRest = rest
	}
	return b
}

// splitOffsetKey splits an applied-offset key ("<topic>#<partition>", see offsetKey); a key
// whose tail is not a canonical partition number is all topic.
func splitOffsetKey(k string) (topic string, partition int64, ok bool) {
	i := strings.LastIndexByte(k, '#')
	if i < 0 {
		return k, 0, false
	}
	p, err := strconv.ParseInt(k[i+1:], 10, 32)
	if err != nil || p < 0 || strconv.FormatInt(p, 10) != k[i+1:] {
		return k, 0, false
	}
	return k[:i], p, true
}

// UnmarshalBinary decodes what AppendBinary wrote (encoding.BinaryUnmarshaler). Empty data is
// the zero State. A different format, a value out of range or trailing bytes are errors
// wrapping ErrCorruptState; s is only changed on success.
func (s *State) UnmarshalBinary(data []byte) error {
	var out State
	if len(data) > 0 {
		r := binReader{buf: data}
		if err := out.decodeBinary(&r); err != nil {
			return fmt.Errorf("%w: binary state: %s: %w", ErrCorruptState, r.at, err)
		}
	}
	*s = out
	return nil
}

// maxComplaintDays bounds the open days with complaint counts the decoder accepts (the
// scoring core keeps only days after the evaluated one).
const maxComplaintDays = 1 << 10

// maxBinaryLen bounds the encoding of one state: far above what the limits on its lists
// allow, so a longer value is corrupt.
const maxBinaryLen = 16 << 10

func (s *State) decodeBinary(r *binReader) error {
	if len(r.buf) > maxBinaryLen {
		r.at = "length"
		return fmt.Errorf("%d bytes, at most %d", len(r.buf), maxBinaryLen)
	}
	r.at = "format"
	if f := r.byte(); r.err == nil && f != binaryFormat {
		return fmt.Errorf("format %d, want %d", f, binaryFormat)
	}
	r.at = "customer id"
	s.CustomerID = r.string(MaxCustomerIDLen)
	if r.err == nil && s.CustomerID == "" {
		return errors.New("empty")
	}
	r.at = "sections"
	flags := int(r.uvarint(secAll))
	r.at = "clocks"
	s.ClockMs = r.varint()
	s.TierClockMs = s.ClockMs - r.varint()
	r.at = "days"
	s.EvalDay = r.day(0, r.varint())
	base := s.EvalDay
	s.TierDay = r.day(base, r.varint())
	s.SeenDay = r.relDay(base)
	if flags&secPurchases != 0 {
		r.at = "purchases"
		s.FirstDay, s.LastDay, s.OldLastDay = r.relDay(base), r.relDay(base), r.relDay(base)
		s.PurchaseDays = int32(r.uvarint(math.MaxInt32))
	}
	if flags&secAgedNet != 0 {
		r.at = "aged net"
		s.AgedNet = r.varint()
	}
	if flags&secWindow != 0 {
		r.at = "window"
		s.Window = r.window(base)
	}
	if flags&secOrders != 0 {
		r.at = "orders"
		n := r.count(maxOrders)
		prev := base
		for i := 0; i < n && r.err == nil; i++ {
			h := r.bytes(3)
			if r.err != nil {
				break
			}
			prev = r.day(prev, r.varint())
			s.Orders = append(s.Orders, Order{Hash: uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2]), Day: prev})
		}
	}
	if flags&secLogins != 0 {
		r.at = "logins"
		s.LoginTop = r.day(base, r.varint())
		n := int(r.byte())
		if r.err == nil && n > 16 {
			return fmt.Errorf("%d bitmap bytes", n)
		}
		raw := r.bytes(n)
		if r.err == nil && n > 0 && raw[n-1] == 0 {
			return errors.New("bitmap has a trailing zero byte")
		}
		var full [16]byte
		copy(full[:], raw)
		s.LoginBits = [2]uint64{binary.LittleEndian.Uint64(full[:8]), binary.LittleEndian.Uint64(full[8:])}
	}
	for _, sec := range []struct {
		flag int
		name string
		h    *ScoreHistory
	}{{secNPS, "nps", &s.NPS}, {secCSAT, "csat", &s.CSAT}} {
		if flags&sec.flag != 0 {
			r.at = sec.name
			n := r.count(maxScoreMarks)
			prev := base
			for i := 0; i < n && r.err == nil; i++ {
				d := r.day(prev, r.varint())
				score := r.byte()
				switch {
				case r.err != nil:
				case score > 10:
					return fmt.Errorf("score %d", score)
				case d == 0 || (i > 0 && d <= prev):
					return errors.New("marks not in ascending day order")
				}
				sec.h.Marks = append(sec.h.Marks, ScoreMark{Day: d, Score: int8(score)})
				prev = d
			}
		}
	}
	if flags&secComplaints != 0 {
		r.at = "complaints"
		c := &s.Complaints
		c.Opened, c.Closed = r.int32(), r.int32()
		n := int(r.uvarint(maxComplaintDays))
		prev := base
		for i := 0; i < n && r.err == nil; i++ {
			d := r.day(prev, r.varint())
			if r.err == nil && (d == 0 || (i > 0 && d <= prev)) {
				return errors.New("days not in ascending order")
			}
			c.Days = append(c.Days, ComplaintDay{Day: d, Opened: r.int32(), Closed: r.int32()})
			prev = d
		}
	}
	if flags&secTier != 0 {
		r.at = "tier"
		s.Tier, s.BaseTier = r.byte(), r.byte()
		s.BaseReached, s.BaseReview, s.TierFloor = r.relDay(base), r.relDay(base), r.relDay(base)
	}
	if flags&secChurn != 0 {
		r.at = "churn"
		lm := r.byte()
		if r.err == nil && (lm&3 > byte(LevelHigh) || lm>>2 > 1) {
			return fmt.Errorf("level %d", lm)
		}
		s.Churn, s.ChurnModel = Level(lm&3), lm>>2 == 1
		s.ChurnSince = r.relDay(base)
		s.ChurnScore = uint16(r.uvarint(1000))
	}
	if flags&secSegment != 0 {
		r.at = "segment"
		seg, layer := r.byte(), r.byte()
		rfm := int(r.uvarint(555))
		if r.err == nil && (seg > byte(SegmentLost) || layer > byte(LayerLowValueAtRisk)) {
			return fmt.Errorf("segment %d, value layer %d", seg, layer)
		}
		s.Segment, s.ValueLayer = Segment(seg), ValueLayer(layer)
		s.LastRFM = RFM{R: rfm / 100, F: rfm / 10 % 10, M: rfm % 10}
	}
	if flags&secObservations != 0 {
		r.at = "observations"
		n := r.count(MaxObservations)
		prev := base
		for i := 0; i < n && r.err == nil; i++ {
			d := r.day(prev, r.varint())
			level, decile := r.byte(), r.byte()
			w0, w1 := r.uvarint(10001), r.uvarint(10001)
			switch {
			case r.err != nil:
			case i > 0 && d <= prev:
				return fmt.Errorf("observation day %d out of order", d)
			case level > byte(LevelHigh):
				return fmt.Errorf("observation level %d", level)
			case decile > 10:
				return fmt.Errorf("observation decile %d", int(decile)-1)
			case (decile == 0) != (w0 == 0) || (decile == 0) != (w1 == 0):
				return fmt.Errorf("observation probabilities %d, %d", int(w0)-1, int(w1)-1)
			}
			s.Observations = append(s.Observations, Observation{Day: d, Level: Level(level), Decile: int8(decile) - 1,
				Within: [2]int16{int16(w0) - 1, int16(w1) - 1}})
			prev = d
		}
	}
	if flags&secOffsets != 0 {
		r.at = "offsets"
		s.Offsets = r.offsets()
	}
	if flags&secSeen != 0 {
		r.at = "remembered ids"
		n := int(r.uvarint(uint64(maxBinaryLen)))
		raw := r.bytes(n)
		if r.err == nil {
			seen, err := decodeSeen(raw)
			if err != nil {
				return err
			}
			s.Seen = seen
		}
	}
	if r.err != nil {
		return r.err
	}
	if len(r.buf) > 0 {
		r.at = "end"
		return fmt.Errorf("%d bytes after the last section", len(r.buf))
	}
	if flags != s.binarySections() {
		// A section flagged but empty (or the reverse) is not what AppendBinary writes.
		r.at = "sections"
		return fmt.Errorf("flags %b do not match the sections' contents %b", flags, s.binarySections())
	}
	return nil
}

func (r *binReader) window(base Day) []DayNet {
	n := r.count(MaxWindowEntries)
	out := make([]DayNet, 0, n)
	prev := base
	for i := 0; i < n && r.err == nil; i++ {
		u := r.uvarint(math.MaxUint64)
		var d Day
		if i == 0 {
			d = r.day(base, unzigzag(u>>1))
		} else {
			if u>>1 == 0 && r.err == nil {
				r.err = errors.New("days not ascending")
			}
			d = r.day(prev, int64(min(u>>1, 1<<40)))
		}
		out = append(out, DayNet{Day: d, Net: r.varint(), Purchase: u&1 == 1})
		prev = d
	}
	shifted := int(r.uvarint(uint64(n)))
	last := -1
	for i := 0; i < shifted && r.err == nil; i++ {
		j := last + int(r.uvarint(uint64(n)))
		shift := r.varint()
		if r.err == nil && (j <= last || j >= n || shift == 0) {
			r.err = fmt.Errorf("shift of entry %d", j)
		}
		if r.err == nil {
			out[j].Shift = shift
		}
		last = j
	}
	return out
}

func (r *binReader) offsets() map[string]int64 {
	n := r.count(1 << 12)
	out := make(map[string]int64, n)
	prevRest, prevKey := "", ""
	for i := 0; i < n && r.err == nil; i++ {
		h := r.byte()
		if r.err == nil && (h > 15 || int(h&3) > len(offsetStems) || (i == 0 && h&4 != 0)) {
			r.err = fmt.Errorf("key header %d", h)
		}
		rest := prevRest
		if h&4 == 0 {
			rest = r.string(512)
		}
		topic := rest
		if s := int(h & 3); s > 0 {
			topic = offsetStems[s-1] + rest
		} else if r.err == nil {
			for _, st := range offsetStems {
				if strings.HasPrefix(rest, st) {
					r.err = errors.New("a stem written out")
				}
			}
		}
		key := topic
		if h&8 != 0 {
			key += "#" + strconv.FormatUint(r.uvarint(math.MaxInt32), 10)
		} else if _, _, ok := splitOffsetKey(key); ok && r.err == nil {
			r.err = errors.New("a partition written as topic")
		}
		off := r.varint()
		if r.err == nil && i > 0 && key <= prevKey {
			r.err = errors.New("keys not in ascending order")
		}
		out[key] = off
		prevRest, prevKey = rest, key
	}
	return out
}

// binReader reads the binary encoding; the first error sticks, and at names the part being
// read for the error message.
type binReader struct {
	buf []byte
	err error
	at  string
}

var errTruncated = errors.New("truncated")

func (r *binReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.buf) == 0 {
		r.err = errTruncated
		return 0
	}
	v := r.buf[0]
	r.buf = r.buf[1:]
	return v
}

func (r *binReader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.buf) < n {
		r.err = errTruncated
		return nil
	}
	v := r.buf[:n]
	r.buf = r.buf[n:]
	return v
}

func (r *binReader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	if v > limit {
		r.err = fmt.Errorf("%d out of range (at most %d)", v, limit)
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

func (r *binReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.buf)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

func (r *binReader) int32() int32 {
	v := r.varint()
	if r.err == nil && (v < math.MinInt32 || v > math.MaxInt32) {
		r.err = fmt.Errorf("%d out of range", v)
	}
	return int32(v)
}

func (r *binReader) count(limit int) int {
	n := int(r.uvarint(uint64(limit)))
	if r.err == nil && n == 0 {
		r.err = errors.New("an empty list is left out, not written")
	}
	return n
}

func (r *binReader) string(limit int) string {
	n := r.uvarint(uint64(limit))
	return string(r.bytes(int(n)))
}

// day is base + delta, which must be a Day.
func (r *binReader) day(base Day, delta int64) Day {
	if r.err != nil {
		return 0
	}
	d := int64(base) + delta
	if delta < math.MinInt32 || delta > math.MaxInt32 || d < math.MinInt32 || d > math.MaxInt32 {
		r.err = fmt.Errorf("day %d%+d out of range", base, delta)
		return 0
	}
	return Day(d)
}

// relDay reads a day written by appendDay.
func (r *binReader) relDay(base Day) Day {
	u := r.uvarint(math.MaxUint64)
	if u == 0 || r.err != nil {
		return 0
	}
	d := r.day(base, unzigzag(u-1))
	if d == 0 && r.err == nil {
		r.err = errors.New("day zero written as a difference")
	}
	return d
}

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }
