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
//
// A refund of an order bought within the returns window is booked back on the purchase day
// (Net), so that it can undo the upgrade the purchase caused. Churn and segments see it on its
// own day instead: as of a day before the refund it had not happened, and a day's end-of-day
// evaluation depends only on the data up to that day. Shift is that correction: it adds the
// refund back on the purchase day and takes it off on the refund's own day, so the activity
// view of an entry is Net+Shift.
type DayNet struct {
	Day      Day
	Net      int64
	Shift    int64
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

// ScoreHistory keeps a customer's scores by day, ascending: the latest one on or before the
// last evaluated day (all an evaluation of a later day can read of the past) and every one
// after it. Days after the evaluated day are the open days a lagging topic can still add
// data to; their number is bounded by MaxOpenDays (plus the allowed lateness and a day of
// batching), so the history stays within maxScoreMarks marks, which is enforced should the
// bound ever be exceeded.
type ScoreHistory struct{ Marks []ScoreMark }

// add records a score on day d; settled is the last evaluated day. A score older than the
// latest one on or before settled can never be read again and is ignored.
func (h *ScoreHistory) add(d Day, score int8, settled Day) {
	i := sort.Search(len(h.Marks), func(i int) bool { return h.Marks[i].Day >= d })
	if i < len(h.Marks) && h.Marks[i].Day == d {
		h.Marks[i].Score = min(h.Marks[i].Score, score)
		return
	}
	if i == 0 && len(h.Marks) > 0 && h.Marks[0].Day <= settled {
		return // older than the settled mark
	}
	h.Marks = append(h.Marks, ScoreMark{})
	copy(h.Marks[i+1:], h.Marks[i:])
	h.Marks[i] = ScoreMark{d, score}
	h.trim(settled)
	if len(h.Marks) > maxScoreMarks {
		h.Marks = h.Marks[len(h.Marks)-maxScoreMarks:]
	}
}

// trim forgets the marks before the latest one on or before the settled day.
func (h *ScoreHistory) trim(settled Day) {
	keep := 0
	for i, m := range h.Marks {
		if m.Day <= settled {
			keep = i
		}
	}
	if keep > 0 {
		h.Marks = append([]ScoreMark(nil), h.Marks[keep:]...)
	}
}

// asOf is the latest mark on or before day d.
func (h *ScoreHistory) asOf(d Day) (ScoreMark, bool) {
	for i := len(h.Marks) - 1; i >= 0; i-- {
		if h.Marks[i].Day <= d {
			return h.Marks[i], true
		}
	}
	return ScoreMark{}, false
}

func (h ScoreHistory) clone() ScoreHistory {
	return ScoreHistory{Marks: append([]ScoreMark(nil), h.Marks...)}
}

// ComplaintDay counts the complaint cases opened and closed on one open day.
type ComplaintDay struct {
	Day            Day
	Opened, Closed int32
}

// Complaints counts complaint cases opened and closed in total, and per open day (a day after
// the last evaluated one), so the number open at the end of any day still to be evaluated is
// exact whatever order the topics arrive in.
type Complaints struct {
	Opened, Closed int32
	Days           []ComplaintDay // ascending, only days after the last evaluated day
}

func (c *Complaints) add(d Day, opened bool, settled Day) {
	if opened {
		c.Opened++
	} else {
		c.Closed++
	}
	if d <= settled {
		return
	}
	i := sort.Search(len(c.Days), func(i int) bool { return c.Days[i].Day >= d })
	if i == len(c.Days) || c.Days[i].Day != d {
		c.Days = append(c.Days, ComplaintDay{})
		copy(c.Days[i+1:], c.Days[i:])
		c.Days[i] = ComplaintDay{Day: d}
	}
	if opened {
		c.Days[i].Opened++
	} else {
		c.Days[i].Closed++
	}
}

// trim forgets the per-day counts of days up to settled.
func (c *Complaints) trim(settled Day) {
	i := 0
	for i < len(c.Days) && c.Days[i].Day <= settled {
		i++
	}
	if i > 0 {
		c.Days = append([]ComplaintDay(nil), c.Days[i:]...)
	}
}

// openAsOf is the number of open complaints at the end of day d (d at or after the last
// evaluated day).
func (c *Complaints) openAsOf(d Day) int32 {
	n := c.Opened - c.Closed
	for _, x := range c.Days {
		if x.Day > d {
			n -= x.Opened - x.Closed
		}
	}
	return max(n, 0)
}

// anyAsOf reports whether a complaint event happened on or before day d.
func (c *Complaints) anyAsOf(d Day) bool {
	n := c.Opened + c.Closed
	for _, x := range c.Days {
		if x.Day > d {
			n -= x.Opened + x.Closed
		}
	}
	return n > 0
}

func (c Complaints) clone() Complaints {
	c.Days = append([]ComplaintDay(nil), c.Days...)
	return c
}

func (c Complaints) isZero() bool { return c.Opened == 0 && c.Closed == 0 && len(c.Days) == 0 }

// Limits that keep the state within its size budget.
const (
	// MaxWindowEntries bounds the day entries kept for the rolling window;
	// beyond it the two oldest days are merged (see docs/scoring.md).
	MaxWindowEntries = 64
	maxOrders        = 10
	loginBits        = 128
	maxScoreMarks    = MaxOpenDays + 4
)

// MaxOpenDays is how many days of event time a customer's state keeps exact for days not yet
// evaluated: its newest data may be this far ahead of its last evaluated day and every day is
// still evaluated as if the topics had arrived together. What makes up the gap: the
// re-check grid (a customer with nothing due is evaluated at least every MaxRecheckDays of
// watermark), the day itself and the allowed lateness, and how far the consumers run ahead of
// the watermark: the alignment lead, at most MaxAlignmentLeadDays (config validates it). The
// policy's login window must leave room for it in the 128 days of login bits.
const MaxOpenDays = 32

// MaxRecheckDays bounds the policy's max_deadline_days, the re-check grid.
const MaxRecheckDays = 7

// MaxAlignmentLeadDays bounds the consumers' alignment lead: what MaxOpenDays leaves after
// the re-check grid, the day itself and the allowed lateness.
const MaxAlignmentLeadDays = MaxOpenDays - MaxRecheckDays - 2

// State is everything the scoring remembers about one customer. The zero
// State is a customer never seen. Treat it as a value: Apply and Evaluate
// return a new State and never modify the one passed in.
type State struct {
	CustomerID string
	// ClockMs is the newest event time applied, in Unix milliseconds; TierClockMs the newest
	// of the purchases topic (purchases and refunds), the only input the tier rules read.
	ClockMs, TierClockMs int64
	// EvalDay is the last day whose churn and segment evaluation has run (days close by the
	// pipeline watermark); TierDay the last day whose tier settlement, reviews and warnings
	// have run (days close by the purchases' own time, or the watermark, whichever is first).
	EvalDay, TierDay Day
	// SeenDay is the day of the customer's earliest event applied, from any topic: the day it
	// joined the population in the KPIs (package kpi). Zero in a state written before it was
	// kept.
	SeenDay Day

	// Purchases. FirstDay/LastDay are the first and last purchase days,
	// PurchaseDays the number of distinct purchase days, OldLastDay the
	// last purchase day among entries aged out of Window.
	FirstDay, LastDay, OldLastDay Day
	PurchaseDays                  int32
	// AgedNet is the net spend (refunds on their own day, see DayNet) of the entries aged out
	// of Window that lie after the first purchase day: with the window, the customer's whole
	// repeat spend, which the Gamma-Gamma model is fitted on (ModelSampleAt), less the spend
	// of the first day (and refunds before it) merged into a later entry (see entry).
	AgedNet int64
	Window  []DayNet // ascending by Day
	Orders  []Order  // purchases still inside the returns window

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
	// Observations are the churn predictions of recent quality days whose outcome is not
	// known yet (see observeQuality), oldest first.
	Observations []Observation

	// Duplicate detection: the last applied offset per input topic partition (redelivery),
	// and the event ids each input topic applied recently (a producer's duplicate), per
	// topic in the order applied: purchases and refunds, logins, feedback (see SeenID).
	Offsets map[string]int64
	Seen    [seenTopics][]SeenID

	// probe marks lookAhead's copy when only the next deadline is wanted: the changes its
	// closes produce are counted, never emitted, so they are built without what is costly
	// (reasons, event ids). Never set on a state that is stored or returned.
	probe bool
}

// clone returns a copy that can be changed without changing s: every part is copied but the
// remembered ids, which are only ever replaced.
func (s State) clone() State {
	s.Window = append([]DayNet(nil), s.Window...)
	s.Orders = append([]Order(nil), s.Orders...)
	s.Observations = append([]Observation(nil), s.Observations...)
	s.NPS, s.CSAT, s.Complaints = s.NPS.clone(), s.CSAT.clone(), s.Complaints.clone()
	// s.Seen's lists and s.Offsets are shared: they are never written in place (State.remember
	// replaces a list, Apply the map). Copying the lists was half of a clone's cost with busy
	// customers' 64 ids, and copying the map most of the rest, for the look-ahead's clones
	// (NextDeadline, Sweep), which touch neither.
	return s
}

func (s *State) started() bool { return s.ClockMs != 0 }

// tierClockDay is the day of the newest purchase or refund.
func (s *State) tierClockDay() Day { return Day(floorDiv(s.TierClockMs, 86400000)) }

// --- purchases ---

func (s *State) findEntry(d Day) int {
	return sort.Search(len(s.Window), func(i int) bool { return s.Window[i].Day >= d })
}

// book adds net to day d's entry, creating it when needed.
func (s *State) book(d Day, net int64, purchase bool) {
	s.entry(d, purchase).Net += net
}

// entry returns day d's window entry, adding it if absent.
func (s *State) entry(d Day, purchase bool) *DayNet {
	i := s.findEntry(d)
	if i < len(s.Window) && s.Window[i].Day == d {
		s.Window[i].Purchase = s.Window[i].Purchase || purchase
		return &s.Window[i]
	}
	s.Window = append(s.Window, DayNet{})
	copy(s.Window[i+1:], s.Window[i:])
	s.Window[i] = DayNet{Day: d, Purchase: purchase}
	if len(s.Window) > MaxWindowEntries {
		// Merge the oldest day into the next one (documented degradation).
		a, b := s.Window[0], s.Window[1]
		s.Window[1] = DayNet{Day: b.Day, Net: a.Net + b.Net, Shift: a.Shift + b.Shift, Purchase: a.Purchase || b.Purchase}
		if a.Purchase {
			s.OldLastDay = max(s.OldLastDay, a.Day)
		}
		if s.PurchaseDays > 0 && a.Day <= s.FirstDay && b.Day > s.FirstDay {
			// The first purchase day's spend now sits on a later day: AgedNet takes it off
			// again, so the net after the first day (ModelSampleAt) stays exact.
			s.AgedNet -= a.Net + a.Shift
		}
		s.Window = s.Window[1:]
		i = max(i-1, 0)
	}
	return &s.Window[i]
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

// prune forgets window entries and orders too old to matter. It counts back from the newest
// purchase day only, so what it keeps is a function of the purchases topic alone (its records
// for a customer arrive in order): the window keeps every day any tier rule reads, plus the
// segment window for every day up to MaxOpenDays behind, plus two days of margin.
func (s *State) prune(p *Policy) {
	now := s.tierClockDay()
	keep := now - Day(max(p.Tiers.WindowDays+p.Tiers.ReturnsWindowDays, p.Segments.WindowDays+MaxOpenDays)+2)
	i := 0
	for i < len(s.Window) && s.Window[i].Day < keep {
		if s.Window[i].Purchase {
			s.OldLastDay = max(s.OldLastDay, s.Window[i].Day)
		}
		if s.PurchaseDays > 0 && s.Window[i].Day > s.FirstDay {
			s.AgedNet += s.Window[i].Net + s.Window[i].Shift
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
			f.monetary += e.Net + e.Shift
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

// ModelSample is a customer's BG/NBD and Gamma-Gamma summary at the end of a day, in days and
// minor units, with the conventions of txnsummary.Summarize (and of the published CDNOW fits):
// purchases on one day are one purchase, X counts the purchase days after the first, TXDays and
// TDays run from the first purchase day to the last and to the day, and RepeatNetMinor is the
// net spend of every day after the first (a refund on its own day).
type ModelSample struct {
	X, TXDays, TDays int32
	RepeatNetMinor   int64
}

// ModelSampleAt returns the customer's model summary at the end of day d; ok is false before
// its first purchase.
func (s *State) ModelSampleAt(d Day, p *Policy) (ModelSample, bool) {
	f := s.purchasesAsOf(d, p.Segments.WindowDays)
	if !f.any {
		return ModelSample{}, false
	}
	m := ModelSample{X: f.days - 1, TDays: int32(d - f.first), RepeatNetMinor: s.AgedNet}
	if m.X > 0 {
		m.TXDays = int32(f.last - f.first)
	}
	for _, e := range s.Window {
		if e.Day > f.first && e.Day <= d {
			m.RepeatNetMinor += e.Net + e.Shift
		}
	}
	return m, true
}

// PurchaseDaySet is what a state still knows of a customer's distinct purchase days.
type PurchaseDaySet struct {
	// Days ascending: the first purchase day, the latest of those aged out of the window
	// (OldLastDay), every purchase day in the window, and the last.
	Days []Day
	// Hidden is how many other purchase days the state has forgotten; they all lie between
	// the first day and HiddenBefore.
	Hidden       int
	HiddenBefore Day
}

// KnownPurchaseDays returns the purchase days the state knows (see PurchaseDaySet).
func (s State) KnownPurchaseDays() PurchaseDaySet {
	if s.PurchaseDays == 0 {
		return PurchaseDaySet{}
	}
	days := make([]Day, 0, len(s.Window)+3)
	days = append(days, s.FirstDay)
	if s.OldLastDay != 0 {
		days = append(days, s.OldLastDay)
	}
	for _, e := range s.Window {
		if e.Purchase {
			days = append(days, e.Day)
		}
	}
	days = append(days, s.LastDay)
	sort.Slice(days, func(i, j int) bool { return days[i] < days[j] })
	uniq := days[:1]
	for _, d := range days[1:] {
		if d != uniq[len(uniq)-1] {
			uniq = append(uniq, d)
		}
	}
	return PurchaseDaySet{Days: uniq, Hidden: max(int(s.PurchaseDays)-len(uniq), 0), HiddenBefore: s.OldLastDay}
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
		s.NPS.add(d, int8(score), s.EvalDay)
	case FeedbackCSAT:
		s.CSAT.add(d, int8(score), s.EvalDay)
	case FeedbackComplaintOpened:
		s.Complaints.add(d, true, s.EvalDay)
	case FeedbackComplaintClosed:
		s.Complaints.add(d, false, s.EvalDay)
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
