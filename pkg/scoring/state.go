package scoring

import (
	"math/bits"
	"sort"
	"time"
)

// Day is a UTC calendar day counted from 1970-01-01. Scores are kept at day
// granularity: the rolling windows are exact to the day.
type Day int32

// DayOf is the UTC day of t.
func DayOf(t time.Time) Day { return Day(floorDiv(t.Unix(), 86400)) }

// Start is midnight UTC at the start of d.
func (d Day) Start() time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// DayNet is the net spend (purchases minus refunds, minor units) booked on
// one day; Purchase says whether a purchase happened that day.
type DayNet struct {
	Day      Day
	Net      int64
	Purchase bool
}

// Order remembers a recent purchase for the returns window: a 24-bit hash
// of its order id and its day. At most 10 are kept (the newest); a refund of
// an order no longer remembered is booked on its own day.
type Order struct {
	Hash uint32
	Day  Day
}

// ScoreMark is the score a customer gave on a day (the lowest, when they
// answered more than once that day); Day 0 means none.
type ScoreMark struct {
	Day   Day
	Score int8
}

// ScoreHistory keeps the latest day's score and the one from the latest
// earlier day: enough to know the latest score as of the end of any day an
// evaluation can still be pending for (the allowed lateness is under a day),
// whatever order the answers arrive in.
type ScoreHistory struct{ Latest, Previous ScoreMark }

func (h *ScoreHistory) add(d Day, score int8) {
	switch {
	case d > h.Latest.Day:
		h.Previous, h.Latest = h.Latest, ScoreMark{d, score}
	case d == h.Latest.Day:
		h.Latest.Score = min(h.Latest.Score, score)
	case d > h.Previous.Day:
		h.Previous = ScoreMark{d, score}
	case d == h.Previous.Day:
		h.Previous.Score = min(h.Previous.Score, score)
	}
}

// asOf is the latest mark on or before day d.
func (h *ScoreHistory) asOf(d Day) (ScoreMark, bool) {
	switch {
	case h.Latest.Day != 0 && h.Latest.Day <= d:
		return h.Latest, true
	case h.Previous.Day != 0 && h.Previous.Day <= d:
		return h.Previous, true
	}
	return ScoreMark{}, false
}

// Complaints counts complaint cases opened and closed, in total and on the
// latest day with a complaint event.
type Complaints struct {
	Opened, Closed       int32
	Day                  Day
	DayOpened, DayClosed int32
}

func (c *Complaints) add(d Day, opened bool) {
	if d > c.Day {
		c.Day, c.DayOpened, c.DayClosed = d, 0, 0
	}
	if opened {
		c.Opened++
	} else {
		c.Closed++
	}
	if d == c.Day {
		if opened {
			c.DayOpened++
		} else {
			c.DayClosed++
		}
	}
}

// openAsOf is the number of open complaints at the end of day d.
func (c *Complaints) openAsOf(d Day) int32 {
	n := c.Opened - c.Closed
	if c.Day > d {
		n -= c.DayOpened - c.DayClosed
	}
	return max(n, 0)
}

// Limits that keep the state within its size budget.
const (
	// MaxWindowEntries bounds the day entries kept for the rolling window;
	// beyond it the two oldest days are merged (see docs/scoring.md).
	MaxWindowEntries = 64
	maxOrders        = 10
	recentRing       = 8
	loginBits        = 128
)

// State is everything the scoring remembers about one customer. The zero
// State is a customer never seen. Treat it as a value: Apply and Evaluate
// return a new State and never modify the one passed in.
type State struct {
	CustomerID string
	// ClockMs is the newest event time applied, in Unix milliseconds.
	ClockMs int64
	// EvalDay is the last day whose end-of-day evaluation has run.
	EvalDay Day

	// Purchases. FirstDay/LastDay are the first and last purchase days,
	// PurchaseDays the number of distinct purchase days, OldLastDay the
	// last purchase day among entries aged out of Window.
	FirstDay, LastDay, OldLastDay Day
	PurchaseDays                  int32
	Window                        []DayNet // ascending by Day
	Orders                        []Order  // purchases still inside the returns window

	// Logins: bit i of LoginBits is set when the customer logged in on day
	// LoginTop-i.
	LoginTop  Day
	LoginBits [2]uint64

	// Feedback.
	NPS, CSAT  ScoreHistory
	Complaints Complaints

	// Tier is the current (last reported) tier, an index into the policy's
	// levels. BaseTier is the settled tier that only a review can lower,
	// reached on BaseReached and reviewed on BaseReview; upgrades above it
	// count spend from TierFloor on and settle once the returns window has
	// passed.
	Tier, BaseTier                     uint8
	BaseReached, BaseReview, TierFloor Day

	// Churn risk level (0 LOW, 1 MEDIUM, 2 HIGH) since ChurnSince (0 for
	// the initial LOW), the last score in thousandths, and whether it came
	// from the model.
	Churn      Level
	ChurnSince Day
	ChurnScore uint16
	ChurnModel bool
	Segment    Segment
	ValueLayer ValueLayer
	LastRFM    RFM

	// Duplicate detection: the last applied offset per input topic and a
	// ring of 32-bit hashes of recent event ids.
	Offsets    map[string]int64
	Recent     [recentRing]uint32
	RecentNext uint8
}

// clone returns a deep copy, so that the caller's State is never mutated.
func (s State) clone() State {
	s.Window = append([]DayNet(nil), s.Window...)
	s.Orders = append([]Order(nil), s.Orders...)
	if s.Offsets != nil {
		m := make(map[string]int64, len(s.Offsets))
		for k, v := range s.Offsets {
			m[k] = v
		}
		s.Offsets = m
	}
	return s
}

func (s *State) started() bool { return s.ClockMs != 0 }

func (s *State) clockDay() Day { return Day(floorDiv(s.ClockMs, 86400000)) }

// --- purchases ---

func (s *State) findEntry(d Day) int {
	return sort.Search(len(s.Window), func(i int) bool { return s.Window[i].Day >= d })
}

// book adds net to day d's entry, creating it when needed.
func (s *State) book(d Day, net int64, purchase bool) {
	i := s.findEntry(d)
	if i < len(s.Window) && s.Window[i].Day == d {
		s.Window[i].Net += net
		s.Window[i].Purchase = s.Window[i].Purchase || purchase
		return
	}
	s.Window = append(s.Window, DayNet{})
	copy(s.Window[i+1:], s.Window[i:])
	s.Window[i] = DayNet{Day: d, Net: net, Purchase: purchase}
	if len(s.Window) > MaxWindowEntries {
		// Merge the oldest day into the next one (documented degradation).
		a, b := s.Window[0], s.Window[1]
		s.Window[1] = DayNet{Day: b.Day, Net: a.Net + b.Net, Purchase: a.Purchase || b.Purchase}
		if a.Purchase {
			s.OldLastDay = max(s.OldLastDay, a.Day)
		}
		s.Window = s.Window[1:]
	}
}

func (s *State) hasPurchaseOn(d Day) bool {
	i := s.findEntry(d)
	if i < len(s.Window) && s.Window[i].Day == d && s.Window[i].Purchase {
		return true
	}
	return s.PurchaseDays > 0 && (d == s.FirstDay || d == s.LastDay || (s.OldLastDay != 0 && d == s.OldLastDay))
}

func (s *State) addPurchase(d Day, amount int64, orderHash uint32) {
	first := s.PurchaseDays == 0
	if !s.hasPurchaseOn(d) {
		s.PurchaseDays++
	}
	if first {
		s.FirstDay, s.LastDay = d, d
	} else {
		s.FirstDay, s.LastDay = min(s.FirstDay, d), max(s.LastDay, d)
	}
	s.book(d, amount, true)
	s.Orders = append(s.Orders, Order{Hash: orderHash, Day: d})
	sortOrders(s.Orders)
	if len(s.Orders) > maxOrders {
		s.Orders = s.Orders[len(s.Orders)-maxOrders:]
	}
}

func sortOrders(os []Order) {
	sort.Slice(os, func(i, j int) bool {
		if os[i].Day != os[j].Day {
			return os[i].Day < os[j].Day
		}
		return os[i].Hash < os[j].Hash
	})
}

// prune forgets window entries and orders too old to matter at the current
// clock. Two days of margin keep pruning independent of arrival order
// within the allowed lateness (at most 24h).
func (s *State) prune(p *Policy) {
	now := s.clockDay()
	keep := now - Day(p.Tiers.WindowDays+p.Tiers.ReturnsWindowDays+2)
	i := 0
	for i < len(s.Window) && s.Window[i].Day < keep {
		if s.Window[i].Purchase {
			s.OldLastDay = max(s.OldLastDay, s.Window[i].Day)
		}
		i++
	}
	s.Window = s.Window[i:]
	okeep := now - Day(p.Tiers.ReturnsWindowDays+2)
	j := 0
	for j < len(s.Orders) && s.Orders[j].Day < okeep {
		j++
	}
	s.Orders = s.Orders[j:]
}

// spend is the net spend over the window of n days ending on day d.
func (s *State) spend(d Day, n int) int64 {
	var sum int64
	for _, e := range s.Window {
		if e.Day > d {
			break
		}
		if e.Day > d-Day(n) {
			sum += e.Net
		}
	}
	return sum
}

// asOf summarises purchases as known at the end of day d.
type purchaseFacts struct {
	any         bool
	first, last Day
	days        int32 // distinct purchase days
	freq        int32 // purchase days in the segment window
	monetary    int64 // net spend in the segment window
}

func (s *State) purchasesAsOf(d Day, window int) purchaseFacts {
	f := purchaseFacts{}
	if s.PurchaseDays == 0 || s.FirstDay > d {
		return f
	}
	f.any, f.first, f.days = true, s.FirstDay, s.PurchaseDays
	f.last = s.FirstDay
	if s.OldLastDay != 0 && s.OldLastDay <= d {
		f.last = max(f.last, s.OldLastDay)
	}
	for _, e := range s.Window {
		if e.Day > d {
			if e.Purchase {
				f.days--
			}
			continue
		}
		if e.Purchase {
			f.last = max(f.last, e.Day)
		}
		if e.Day > d-Day(window) {
			f.monetary += e.Net
			if e.Purchase {
				f.freq++
			}
		}
	}
	if s.LastDay <= d {
		f.last = max(f.last, s.LastDay)
	}
	f.days = max(f.days, 1)
	return f
}

// --- logins ---

func (s *State) addLogin(d Day) {
	if s.LoginBits == [2]uint64{} || d > s.LoginTop {
		shift := uint(0)
		if s.LoginBits != [2]uint64{} {
			shift = uint(d - s.LoginTop)
		}
		s.LoginBits = shl128(s.LoginBits, shift)
		s.LoginTop = d
	}
	i := s.LoginTop - d
	if i < loginBits {
		s.LoginBits[i/64] |= 1 << (uint(i) % 64)
	}
}

// shl128 shifts the 128-bit set so bit i moves to bit i+n (older days).
func shl128(b [2]uint64, n uint) [2]uint64 {
	switch {
	case n == 0:
		return b
	case n >= 128:
		return [2]uint64{}
	case n >= 64:
		return [2]uint64{0, b[0] << (n - 64)}
	}
	return [2]uint64{b[0] << n, b[1]<<n | b[0]>>(64-n)}
}

// loginDays counts login days in the n days ending on day d.
func (s *State) loginDays(d Day, n int) int {
	lo := int(s.LoginTop - d) // bit index of day d
	hi := lo + n - 1          // bit index of day d-n+1
	lo, hi = max(lo, 0), min(hi, loginBits-1)
	if lo > hi {
		return 0
	}
	count := 0
	for w := 0; w < 2; w++ {
		a, b := max(lo, 64*w), min(hi, 64*w+63)
		if a > b {
			continue
		}
		width := uint(b - a + 1)
		mask := ^uint64(0)
		if width < 64 {
			mask = (uint64(1)<<width - 1)
		}
		count += bits.OnesCount64(s.LoginBits[w] >> uint(a-64*w) & mask)
	}
	return count
}

// --- feedback ---

func (s *State) addFeedback(k FeedbackKind, d Day, score int) {
	switch k {
	case FeedbackNPS:
		s.NPS.add(d, int8(score))
	case FeedbackCSAT:
		s.CSAT.add(d, int8(score))
	case FeedbackComplaintOpened:
		s.Complaints.add(d, true)
	case FeedbackComplaintClosed:
		s.Complaints.add(d, false)
	}
}

type feedbackFacts struct {
	nps, csat       int
	npsDay, csatDay Day
	hasNPS, hasCSAT bool
	openComplaints  int32
}

func (s *State) feedbackAsOf(d Day, p *Policy) feedbackFacts {
	var f feedbackFacts
	if m, ok := s.NPS.asOf(d); ok && d-m.Day < Day(p.Churn.NPSWindowDays) {
		f.hasNPS, f.nps, f.npsDay = true, int(m.Score), m.Day
	}
	if m, ok := s.CSAT.asOf(d); ok && d-m.Day < Day(p.Churn.CSATWindowDays) {
		f.hasCSAT, f.csat, f.csatDay = true, int(m.Score), m.Day
	}
	f.openComplaints = s.Complaints.openAsOf(d)
	return f
}

// NetSpend is the net spend (purchases less refunds) booked over the tier window ending on
// day d, in minor units: the amount tiers qualify on.
func (s State) NetSpend(d Day, p *Policy) int64 {
	return s.spendBetween(d-Day(p.Tiers.WindowDays)+1, d)
}

// OpenComplaints is the number of complaint cases open at the end of day d.
func (s State) OpenComplaints(d Day) int {
	return int(s.Complaints.openAsOf(d))
}
