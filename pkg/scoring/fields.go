package scoring

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// The field layout of a stored State. Every value is ASCII and at most
// maxFieldLen bytes, so Redis keeps the hash in its compact listpack
// encoding (hash-max-listpack-value defaults to 64). Numbers are base 36;
// lists are varint-packed and base64url-encoded, the window split across
// w0, w1, ... Empty parts are omitted.
const (
	fieldsVersion = "1"
	maxFieldLen   = 60
	offsetPrefix  = "o:" // o:<topic> holds the last applied offset of that topic
	seenPrefix    = "d"  // d0, d1, ... hold the remembered event ids (encodeSeen)
	legacyRing    = "r"  // the former ring of 8 32-bit event id hashes, read and dropped
)

// ErrCorruptState is returned (wrapped) by UnmarshalFields.
var ErrCorruptState = errors.New("corrupt stored state")

var b64 = base64.RawURLEncoding

func i36(v int64) string { return strconv.FormatInt(v, 36) }

func join36(vs ...int64) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(i36(v))
	}
	return b.String()
}

// MarshalFields encodes the state as small hash fields. The encoding is
// deterministic and lossless: UnmarshalFields(s.MarshalFields()) == s.
func (s State) MarshalFields() map[string]string {
	m := make(map[string]string, 16)
	if !s.started() && s.CustomerID == "" {
		return m
	}
	m["v"] = fieldsVersion
	m["id"] = s.CustomerID
	m["ck"] = i36(s.ClockMs)
	m["ed"] = i36(int64(s.EvalDay))
	if s.TierDay != s.EvalDay {
		m["td"] = i36(int64(s.TierDay))
	}
	if s.TierClockMs != 0 {
		m["tk"] = i36(s.TierClockMs)
	}
	if s.SeenDay != 0 {
		m["sd"] = i36(int64(s.SeenDay))
	}
	if s.PurchaseDays > 0 {
		m["p"] = join36(int64(s.FirstDay), int64(s.LastDay), int64(s.OldLastDay), int64(s.PurchaseDays))
	}
	if s.AgedNet != 0 {
		m["an"] = i36(s.AgedNet)
	}
	if len(s.Observations) > 0 {
		xs := make([]int64, 0, 5*len(s.Observations))
		for _, o := range s.Observations {
			xs = append(xs, int64(o.Day), int64(o.Level), int64(o.Decile)+1, int64(o.Within[0])+1, int64(o.Within[1])+1)
		}
		m["mq"] = join36(xs...)
	}
	if len(s.Window) > 0 {
		var buf []byte
		prev := Day(0)
		for _, e := range s.Window {
			flag := uint64(0)
			if e.Purchase {
				flag = 1
			}
			buf = binary.AppendUvarint(buf, uint64(e.Day-prev)<<1|flag)
			buf = binary.AppendVarint(buf, e.Net)
			prev = e.Day
		}
		putChunks(m, "w", b64.EncodeToString(buf))
		// The few entries a refund shifted (see DayNet): day.shift pairs.
		var shifts []int64
		for _, e := range s.Window {
			if e.Shift != 0 {
				shifts = append(shifts, int64(e.Day), e.Shift)
			}
		}
		if len(shifts) > 0 {
			m["ws"] = join36(shifts...)
		}
	}
	if len(s.Orders) > 0 {
		var buf []byte
		prev := Day(0)
		for _, o := range s.Orders {
			buf = append(buf, byte(o.Hash>>16), byte(o.Hash>>8), byte(o.Hash))
			buf = binary.AppendUvarint(buf, uint64(o.Day-prev))
			prev = o.Day
		}
		m["or"] = b64.EncodeToString(buf)
	}
	if s.LoginBits != [2]uint64{} {
		var raw [16]byte
		binary.LittleEndian.PutUint64(raw[:8], s.LoginBits[0])
		binary.LittleEndian.PutUint64(raw[8:], s.LoginBits[1])
		b := raw[:]
		for len(b) > 0 && b[len(b)-1] == 0 {
			b = b[:len(b)-1]
		}
		m["lg"] = i36(int64(s.LoginTop)) + "." + b64.EncodeToString(b)
	}
	for _, f := range []struct {
		key string
		h   ScoreHistory
	}{{"fn", s.NPS}, {"fs", s.CSAT}} {
		if len(f.h.Marks) > 0 {
			// newest first: day.score pairs
			xs := make([]int64, 0, 2*len(f.h.Marks))
			for i := len(f.h.Marks) - 1; i >= 0; i-- {
				xs = append(xs, int64(f.h.Marks[i].Day), int64(f.h.Marks[i].Score))
			}
			m[f.key] = join36(xs...)
		}
	}
	if c := s.Complaints; !c.isZero() {
		xs := []int64{int64(c.Opened), int64(c.Closed)}
		for _, d := range c.Days {
			xs = append(xs, int64(d.Day), int64(d.Opened), int64(d.Closed))
		}
		m["cp"] = join36(xs...)
	}
	if s.Tier != 0 || s.BaseTier != 0 || s.BaseReached != 0 || s.BaseReview != 0 || s.TierFloor != 0 {
		m["t"] = join36(int64(s.Tier), int64(s.BaseTier), int64(s.BaseReached), int64(s.BaseReview), int64(s.TierFloor))
	}
	if s.ChurnSince != 0 || s.Churn != 0 || s.ChurnScore != 0 || s.ChurnModel {
		model := int64(0)
		if s.ChurnModel {
			model = 1
		}
		m["c"] = join36(int64(s.Churn), int64(s.ChurnSince), int64(s.ChurnScore), model)
	}
	if s.Segment != 0 || s.ValueLayer != 0 || s.LastRFM != (RFM{}) {
		m["s"] = join36(int64(s.Segment), int64(s.ValueLayer), int64(s.LastRFM.R*100+s.LastRFM.F*10+s.LastRFM.M))
	}
	for topic, off := range s.Offsets {
		m[offsetPrefix+topic] = i36(off)
	}
	if s.hasSeen() {
		putChunks(m, seenPrefix, b64.EncodeToString(encodeSeen(s.Seen)))
	}
	return m
}

// putChunks stores enc in fields prefix0, prefix1, ..., at most maxFieldLen bytes each.
func putChunks(m map[string]string, prefix, enc string) {
	for i := 0; len(enc) > 0; i++ {
		n := min(len(enc), maxFieldLen)
		m[prefix+strconv.Itoa(i)] = enc[:n]
		enc = enc[n:]
	}
}

// chunks joins fields prefix0, prefix1, ... as putChunks wrote them; ok is false when there
// are none. A gap or an empty chunk is an error.
func chunks(m map[string]string, prefix string) (joined string, ok bool, err error) {
	n := 0
	for k := range m {
		if isChunk(k, prefix) {
			n++
		}
	}
	var b strings.Builder
	for i := 0; i < n; i++ {
		v, ok := m[prefix+strconv.Itoa(i)]
		if !ok || v == "" {
			return "", false, fmt.Errorf("chunks must be %s0, %s1, ... without gaps", prefix, prefix)
		}
		b.WriteString(v)
	}
	return b.String(), n > 0, nil
}

// isChunk reports whether k names a chunk of prefix: the prefix and a decimal index.
func isChunk(k, prefix string) bool {
	return strings.HasPrefix(k, prefix) && isDigits(k[len(prefix):])
}

// FieldsSize is the number of bytes of field names and values, the figure
// the per-customer budget (about 400 bytes) refers to.
func FieldsSize(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

// UnmarshalFields decodes fields written by MarshalFields. An empty map is
// the zero State (a customer never seen). Unknown fields, a different
// format version or malformed values are errors wrapping ErrCorruptState.
func UnmarshalFields(m map[string]string) (State, error) {
	var s State
	if len(m) == 0 {
		return s, nil
	}
	bad := func(field string, err error) (State, error) {
		return State{}, fmt.Errorf("%w: field %q: %w", ErrCorruptState, field, err)
	}
	if v := m["v"]; v != fieldsVersion {
		return bad("v", fmt.Errorf("format version %q, want %q", v, fieldsVersion))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tierDaySet := false
	for _, k := range keys {
		v := m[k]
		if len(v) > maxFieldValueLen {
			return bad(k, errors.New("value too long"))
		}
		var err error
		switch {
		case k == "v":
		case k == "id":
			if v == "" || len(v) > MaxCustomerIDLen {
				err = errors.New("customer id must be 1–60 bytes")
			}
			s.CustomerID = v
		case k == "ck":
			s.ClockMs, err = strconv.ParseInt(v, 36, 64)
		case k == "ed":
			var d int64
			d, err = strconv.ParseInt(v, 36, 32)
			s.EvalDay = Day(d)
		case k == "td":
			var d int64
			d, err = strconv.ParseInt(v, 36, 32)
			s.TierDay = Day(d)
			tierDaySet = true
		case k == "tk":
			s.TierClockMs, err = strconv.ParseInt(v, 36, 64)
		case k == "sd":
			var d int64
			d, err = strconv.ParseInt(v, 36, 32)
			s.SeenDay = Day(d)
		case k == "an":
			s.AgedNet, err = strconv.ParseInt(v, 36, 64)
		case k == "mq":
			s.Observations, err = decodeObservations(v)
		case k == "p":
			var xs []int64
			if xs, err = split36(v, 4); err == nil {
				s.FirstDay, s.LastDay, s.OldLastDay, s.PurchaseDays = Day(xs[0]), Day(xs[1]), Day(xs[2]), int32(xs[3])
			}
		case isChunk(k, "w"), isChunk(k, seenPrefix):
			// gathered below in numeric order
		case k == "ws":
			// applied below, once the window is decoded
		case k == "or":
			s.Orders, err = decodeOrders(v)
		case k == "lg":
			err = s.decodeLogins(v)
		case k == "fn" || k == "fs":
			// newest first: day.score pairs (the format before open days kept exactly two,
			// the older one with day 0 when absent)
			var h ScoreHistory
			h, err = decodeScoreHistory(v)
			if k == "fn" {
				s.NPS = h
			} else {
				s.CSAT = h
			}
		case k == "cp":
			s.Complaints, err = decodeComplaints(v)
		case k == "t":
			var xs []int64
			if xs, err = split36(v, 5); err == nil {
				s.Tier, s.BaseTier = uint8(xs[0]), uint8(xs[1])
				s.BaseReached, s.BaseReview, s.TierFloor = Day(xs[2]), Day(xs[3]), Day(xs[4])
			}
		case k == "c":
			var xs []int64
			if xs, err = split36(v, 4); err == nil {
				s.Churn, s.ChurnSince, s.ChurnScore, s.ChurnModel = Level(xs[0]), Day(xs[1]), uint16(xs[2]), xs[3] == 1
				if xs[0] > int64(LevelHigh) || xs[2] > 1000 || xs[3] > 1 {
					err = errors.New("value out of range")
				}
			}
		case k == "s":
			var xs []int64
			if xs, err = split36(v, 3); err == nil {
				s.Segment, s.ValueLayer = Segment(xs[0]), ValueLayer(xs[1])
				s.LastRFM = RFM{R: int(xs[2] / 100), F: int(xs[2] / 10 % 10), M: int(xs[2] % 10)}
				if xs[0] > int64(SegmentLost) || xs[1] > int64(LayerLowValueAtRisk) || xs[2] < 0 || xs[2] > 555 {
					err = errors.New("value out of range")
				}
			}
		case strings.HasPrefix(k, offsetPrefix) && len(k) > len(offsetPrefix):
			var off int64
			if off, err = strconv.ParseInt(v, 36, 64); err == nil {
				if s.Offsets == nil {
					s.Offsets = map[string]int64{}
				}
				s.Offsets[k[len(offsetPrefix):]] = off
			}
		case k == legacyRing:
			// Written before ids were remembered per topic with SHA-256 digests. Its 32-bit
			// hashes are dropped rather than honoured (they are what took distinct ids for
			// duplicates); the next write leaves the field out. It must still be well formed.
			err = checkLegacyRing(v)
		default:
			err = errors.New("unknown field")
		}
		if err != nil {
			return bad(k, err)
		}
	}
	if _, ok := m["id"]; !ok {
		// MarshalFields writes the id with every other field: a hash without it was not
		// written by the store (found by FuzzUnmarshalFields).
		return bad("id", errors.New("missing"))
	}
	if !tierDaySet {
		s.TierDay = s.EvalDay // written before the tier days had a track of their own, or equal
	}
	if _, ok := m["tk"]; !ok && s.PurchaseDays > 0 {
		s.TierClockMs = s.ClockMs
	}
	if enc, ok, err := chunks(m, "w"); err != nil {
		return bad("w", err)
	} else if ok {
		if s.Window, err = decodeWindow(enc); err != nil {
			return bad("w", err)
		}
	}
	if enc, ok, err := chunks(m, seenPrefix); err != nil {
		return bad(seenPrefix, err)
	} else if ok {
		if s.Seen, err = decodeSeenField(enc); err != nil {
			return bad(seenPrefix, err)
		}
	}
	if v, ok := m["ws"]; ok {
		if err := s.decodeShifts(v); err != nil {
			return bad("ws", err)
		}
	}
	return s, nil
}

// maxFieldValueLen bounds one stored field; longer values are corrupt.
const maxFieldValueLen = 400

func decodeScoreHistory(v string) (ScoreHistory, error) {
	xs, err := split36n(v)
	if err != nil {
		return ScoreHistory{}, err
	}
	if len(xs)%2 != 0 || len(xs) > 2*maxScoreMarks {
		return ScoreHistory{}, fmt.Errorf("want up to %d day.score pairs, got %d numbers", maxScoreMarks, len(xs))
	}
	var h ScoreHistory
	for i := len(xs) - 2; i >= 0; i -= 2 {
		if xs[i+1] < 0 || xs[i+1] > 10 {
			return ScoreHistory{}, errors.New("score out of range")
		}
		if xs[i] == 0 {
			continue // an absent mark of the two-mark format
		}
		if n := len(h.Marks); n > 0 && Day(xs[i]) <= h.Marks[n-1].Day {
			return ScoreHistory{}, errors.New("marks not in descending day order")
		}
		h.Marks = append(h.Marks, ScoreMark{Day: Day(xs[i]), Score: int8(xs[i+1])})
	}
	return h, nil
}

func decodeComplaints(v string) (Complaints, error) {
	xs, err := split36n(v)
	if err != nil {
		return Complaints{}, err
	}
	if len(xs) < 2 || (len(xs)-2)%3 != 0 {
		return Complaints{}, fmt.Errorf("want opened.closed then day.opened.closed triples, got %d numbers", len(xs))
	}
	c := Complaints{Opened: int32(xs[0]), Closed: int32(xs[1])}
	for i := 2; i < len(xs); i += 3 {
		if xs[i] == 0 {
			continue // no latest day in the one-day format
		}
		if n := len(c.Days); n > 0 && Day(xs[i]) <= c.Days[n-1].Day {
			return Complaints{}, errors.New("days not in ascending order")
		}
		c.Days = append(c.Days, ComplaintDay{Day: Day(xs[i]), Opened: int32(xs[i+1]), Closed: int32(xs[i+2])})
	}
	return c, nil
}

// split36n splits any number of dot-separated base-36 numbers.
func split36n(v string) ([]int64, error) {
	parts := strings.Split(v, ".")
	out := make([]int64, len(parts))
	for i, p := range parts {
		x, err := strconv.ParseInt(p, 36, 64)
		if err != nil {
			return nil, err
		}
		out[i] = x
	}
	return out, nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func split36(v string, n int) ([]int64, error) {
	if got := strings.Count(v, ".") + 1; got != n {
		return nil, fmt.Errorf("want %d base-36 numbers, got %d", n, got)
	}
	return split36n(v)
}

// decodeShifts applies the day.shift pairs of field "ws" to the decoded window.
func (s *State) decodeShifts(v string) error {
	xs, err := split36n(v)
	if err != nil {
		return err
	}
	if len(xs)%2 != 0 {
		return errors.New("want day.shift pairs")
	}
	for i := 0; i < len(xs); i += 2 {
		j := s.findEntry(Day(xs[i]))
		if j == len(s.Window) || s.Window[j].Day != Day(xs[i]) || xs[i+1] == 0 {
			return fmt.Errorf("shift for day %d, which has no window entry", xs[i])
		}
		s.Window[j].Shift = xs[i+1]
	}
	return nil
}

func decodeWindow(v string) ([]DayNet, error) {
	buf, err := b64.DecodeString(v)
	if err != nil {
		return nil, err
	}
	var out []DayNet
	prev := Day(0)
	for len(buf) > 0 {
		u, n := binary.Uvarint(buf)
		if n <= 0 || u>>1 > 1<<30 {
			return nil, errors.New("bad day delta")
		}
		buf = buf[n:]
		net, n := binary.Varint(buf)
		if n <= 0 {
			return nil, errors.New("bad amount")
		}
		buf = buf[n:]
		d := prev + Day(u>>1)
		if len(out) > 0 && d <= prev {
			return nil, errors.New("days not ascending")
		}
		out = append(out, DayNet{Day: d, Net: net, Purchase: u&1 == 1})
		prev = d
	}
	if len(out) > MaxWindowEntries {
		return nil, errors.New("too many entries")
	}
	return out, nil
}

func decodeOrders(v string) ([]Order, error) {
	buf, err := b64.DecodeString(v)
	if err != nil {
		return nil, err
	}
	var out []Order
	prev := Day(0)
	for len(buf) > 0 {
		if len(buf) < 4 {
			return nil, errors.New("truncated order")
		}
		h := uint32(buf[0])<<16 | uint32(buf[1])<<8 | uint32(buf[2])
		u, n := binary.Uvarint(buf[3:])
		if n <= 0 || u > 1<<30 {
			return nil, errors.New("bad order day")
		}
		buf = buf[3+n:]
		prev += Day(u)
		out = append(out, Order{Hash: h, Day: prev})
	}
	if len(out) > maxOrders {
		return nil, errors.New("too many orders")
	}
	return out, nil
}

func (s *State) decodeLogins(v string) error {
	top, bits, ok := strings.Cut(v, ".")
	if !ok {
		return errors.New("want top.bits")
	}
	t, err := strconv.ParseInt(top, 36, 32)
	if err != nil {
		return err
	}
	raw, err := b64.DecodeString(bits)
	if err != nil || len(raw) > 16 || len(raw) == 0 || raw[len(raw)-1] == 0 {
		return errors.New("bad login bitmap")
	}
	var full [16]byte
	copy(full[:], raw)
	s.LoginTop = Day(t)
	s.LoginBits = [2]uint64{binary.LittleEndian.Uint64(full[:8]), binary.LittleEndian.Uint64(full[8:])}
	return nil
}

// legacyRingLen is the number of 32-bit hashes in the legacy ring field.
const legacyRingLen = 8

// checkLegacyRing checks the legacy ring field: the next position (a digit below 8) and 8
// big-endian 32-bit hashes, base64url.
func checkLegacyRing(v string) error {
	if len(v) < 1 || v[0] < '0' || v[0] >= '0'+legacyRingLen {
		return errors.New("bad ring position")
	}
	raw, err := b64.DecodeString(v[1:])
	if err != nil || len(raw) != 4*legacyRingLen {
		return errors.New("bad ring")
	}
	return nil
}

// decodeSeenField decodes the joined chunks of the remembered ids.
func decodeSeenField(v string) ([seenTopics][]SeenID, error) {
	raw, err := b64.DecodeString(v)
	if err != nil {
		return [seenTopics][]SeenID{}, fmt.Errorf("remembered event ids: %w", err)
	}
	seen, err := decodeSeen(raw)
	if err != nil {
		return [seenTopics][]SeenID{}, fmt.Errorf("remembered event ids: %w", err)
	}
	return seen, nil
}

// decodeObservations decodes field "mq": per observation its day, level, P(alive) decile + 1
// and the two purchase probabilities + 1 (see Observation), days ascending.
func decodeObservations(v string) ([]Observation, error) {
	xs, err := split36n(v)
	if err != nil {
		return nil, err
	}
	if len(xs)%5 != 0 || len(xs)/5 > MaxObservations {
		return nil, fmt.Errorf("%d numbers are not up to %d observations of 5", len(xs), MaxObservations)
	}
	out := make([]Observation, 0, len(xs)/5)
	for i := 0; i < len(xs); i += 5 {
		o := Observation{Day: Day(xs[i]), Level: Level(xs[i+1]), Decile: int8(xs[i+2] - 1), Within: [2]int16{int16(xs[i+3] - 1), int16(xs[i+4] - 1)}}
		switch {
		case xs[i] < math.MinInt32 || xs[i] > math.MaxInt32 || (len(out) > 0 && o.Day <= out[len(out)-1].Day):
			return nil, fmt.Errorf("observation day %d out of order", xs[i])
		case xs[i+1] < 0 || xs[i+1] > int64(LevelHigh):
			return nil, fmt.Errorf("observation level %d", xs[i+1])
		case xs[i+2] < 0 || xs[i+2] > 10:
			return nil, fmt.Errorf("observation decile %d", xs[i+2]-1)
		case xs[i+3] < 0 || xs[i+3] > 10001 || xs[i+4] < 0 || xs[i+4] > 10001 || (xs[i+2] == 0) != (xs[i+3] == 0) || (xs[i+2] == 0) != (xs[i+4] == 0):
			return nil, fmt.Errorf("observation probabilities %d, %d", xs[i+3]-1, xs[i+4]-1)
		}
		out = append(out, o)
	}
	return out, nil
}
