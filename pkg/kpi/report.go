package kpi

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// Counters are a population's KPI counters summed over the shards: for each counter code, its
// increments by day, with running sums for the difference arrays.
type Counters struct {
	byCode map[string]*series
}

// series is one code's increments, ascending by day, with the running sum through each.
type series struct {
	days []scoring.Day
	sums []int64
	raw  map[scoring.Day]int64
}

// NewCounters returns empty counters.
func NewCounters() *Counters { return &Counters{byCode: map[string]*series{}} }

// Add adds a stored counter (its field name as written by Deltas) to the sums. Fields that are
// not KPI counters are ignored and reported false.
func (c *Counters) Add(field string, n int64) bool {
	d, code, ok := ParseField(field)
	if !ok {
		return false
	}
	s := c.byCode[code]
	if s == nil {
		s = &series{raw: map[scoring.Day]int64{}}
		c.byCode[code] = s
	}
	s.raw[d] += n
	s.days = nil // recomputed on the next read
	return true
}

// AddAll adds every counter of a shard.
func (c *Counters) AddAll(fields map[string]int64) {
	for f, n := range fields {
		c.Add(f, n)
	}
}

func (s *series) index() {
	if s.days != nil {
		return
	}
	s.days = make([]scoring.Day, 0, len(s.raw))
	for d := range s.raw {
		s.days = append(s.days, d)
	}
	sort.Slice(s.days, func(i, j int) bool { return s.days[i] < s.days[j] })
	s.sums = make([]int64, len(s.days))
	var run int64
	for i, d := range s.days {
		run += s.raw[d]
		s.sums[i] = run
	}
}

// through is the sum of a code's increments up to and including day d.
func (c *Counters) through(code string, d scoring.Day) int64 {
	s := c.byCode[code]
	if s == nil {
		return 0
	}
	s.index()
	i := sort.Search(len(s.days), func(i int) bool { return s.days[i] > d })
	if i == 0 {
		return 0
	}
	return s.sums[i-1]
}

// window is the sum of a code's increments over the w days ending on day d.
func (c *Counters) window(code string, d scoring.Day, w int) int64 {
	return c.through(code, d) - c.through(code, d-scoring.Day(w))
}

// withPrefix lists the codes starting with prefix, without it, sorted.
func (c *Counters) withPrefix(prefix string) []string {
	var out []string
	for code := range c.byCode {
		if rest, ok := strings.CutPrefix(code, prefix); ok {
			out = append(out, rest)
		}
	}
	sort.Strings(out)
	return out
}

// Days are the first and last days any counter has an increment on; ok is false when there
// are none.
func (c *Counters) Days() (first, last scoring.Day, ok bool) {
	for _, s := range c.byCode {
		s.index()
		if len(s.days) == 0 {
			continue
		}
		if !ok || s.days[0] < first {
			first = s.days[0]
		}
		if !ok || s.days[len(s.days)-1] > last {
			last = s.days[len(s.days)-1]
		}
		ok = true
	}
	return first, last, ok
}

// Report is the KPIs of one window of event time: the window's sums, and the mix as of its
// last day. Ratios are nil when their denominator is zero. Amounts are in minor units.
type Report struct {
	// Day is the window's last day (YYYY-MM-DD); WindowDays its length (1: the day itself).
	Day        string `json:"day"`
	WindowDays int    `json:"window_days"`

	Orders           int64    `json:"orders"`
	GrossMinor       int64    `json:"gross_revenue_minor"`
	Refunds          int64    `json:"refunds"`
	RefundMinor      int64    `json:"refunded_minor"`
	NetRevenueMinor  int64    `json:"net_revenue_minor"`
	AvgOrderMinor    *float64 `json:"average_order_value_minor"`
	RefundRate       *float64 `json:"refund_rate"`
	ActiveCustomers  int64    `json:"active_customers"`
	RepeatCustomers  int64    `json:"repeat_customers"`
	RepurchaseRate   *float64 `json:"repurchase_rate"`
	PriorActive      int64    `json:"prior_active_customers"`
	Retained         int64    `json:"retained_customers"`
	RetentionRate    *float64 `json:"retention_rate"`
	ChurnRate        *float64 `json:"churn_rate"`
	NewCustomers     int64    `json:"new_customers"`
	Lapsed           int64    `json:"lapsed_customers"`
	EnteredHighRisk  int64    `json:"entered_high_risk"`
	Logins           int64    `json:"logins"`
	Promoters        int64    `json:"nps_promoters"`
	Passives         int64    `json:"nps_passives"`
	Detractors       int64    `json:"nps_detractors"`
	NPS              *float64 `json:"nps"`
	CSATAnswers      int64    `json:"csat_answers"`
	AvgCSAT          *float64 `json:"csat_average"`
	ComplaintsOpened int64    `json:"complaints_opened"`
	ComplaintsClosed int64    `json:"complaints_closed"`
	ComplaintsPer1k  *float64 `json:"complaints_per_1000_active"`
	TierWarnings     int64    `json:"tier_warnings"`

	// Customers is the population as of the last day: every customer seen by then.
	Customers int64 `json:"customers"`
	// Mix as of the last day: customers per tier, churn level, segment and value layer.
	Tiers    map[string]int64 `json:"tiers"`
	Churn    map[string]int64 `json:"churn_levels"`
	Segments map[string]int64 `json:"segments"`
	Layers   map[string]int64 `json:"value_layers"`
	// Moves within the window, "FROM>TO" → customers moved.
	TierMoves    map[string]int64 `json:"tier_moves"`
	ChurnMoves   map[string]int64 `json:"churn_moves"`
	SegmentMoves map[string]int64 `json:"segment_moves"`
	LayerMoves   map[string]int64 `json:"layer_moves"`
	// LayerTransitionRate is the moves between two value layers within the window over the
	// customers who had a layer when it began.
	LayerTransitionRate *float64 `json:"layer_transition_rate"`
}

func ratio(num, den float64) *float64 {
	if den == 0 {
		return nil
	}
	r := num / den
	return &r
}

// Report computes the KPIs of the w days ending on day d.
func (c *Counters) Report(d scoring.Day, w int) Report {
	win := func(code string) int64 { return c.window(code, d, w) }
	ws := strconv.Itoa(w)
	r := Report{Day: d.Start().Format(time.DateOnly), WindowDays: w}
	r.Orders, r.GrossMinor = win(codeOrders), win(codeGross)
	r.Refunds, r.RefundMinor = win(codeRefunds), win(codeRefundAmount)
	r.NetRevenueMinor = r.GrossMinor - r.RefundMinor
	r.AvgOrderMinor = ratio(float64(r.GrossMinor), float64(r.Orders))
	r.RefundRate = ratio(float64(r.RefundMinor), float64(r.GrossMinor))
	r.ActiveCustomers = c.through(prefixBuyers+ws, d)
	r.PriorActive = c.through(prefixBuyers+ws, d-scoring.Day(w))
	r.Retained = c.through(prefixRetained+ws, d)
	if w > 1 {
		r.RepeatCustomers = c.through(prefixRepeaters+ws, d)
	}
	r.RepurchaseRate = ratio(float64(r.RepeatCustomers), float64(r.ActiveCustomers))
	r.RetentionRate = ratio(float64(r.Retained), float64(r.PriorActive))
	if r.RetentionRate != nil {
		r.ChurnRate = ratio(float64(r.PriorActive-r.Retained), float64(r.PriorActive))
	}
	r.NewCustomers, r.Lapsed, r.Logins = win(codeNewCustomers), win(codeLapsed), win(codeLogins)
	r.Promoters, r.Passives, r.Detractors = win(codePromoters), win(codePassives), win(codeDetractors)
	if answers := r.Promoters + r.Passives + r.Detractors; answers > 0 {
		r.NPS = ratio(100*float64(r.Promoters-r.Detractors), float64(answers))
	}
	r.CSATAnswers = win(codeCSATCount)
	r.AvgCSAT = ratio(float64(win(codeCSATSum)), float64(r.CSATAnswers))
	r.ComplaintsOpened, r.ComplaintsClosed = win(codeComplaintsOpen), win(codeComplaintsShut)
	r.ComplaintsPer1k = ratio(1000*float64(r.ComplaintsOpened), float64(r.ActiveCustomers))
	r.TierWarnings = win(codeTierWarnings)

	mix := func(prefix string) map[string]int64 {
		out := map[string]int64{}
		for _, name := range c.withPrefix(prefix) {
			if n := c.through(prefix+name, d); n != 0 {
				out[name] = n
			}
		}
		return out
	}
	moves := func(prefix string) map[string]int64 {
		out := map[string]int64{}
		for _, name := range c.withPrefix(prefix) {
			if n := win(prefix + name); n != 0 {
				out[name] = n
			}
		}
		return out
	}
	r.Tiers, r.Churn, r.Segments, r.Layers = mix(prefixTier), mix(prefixChurn), mix(prefixSegment), mix(prefixLayer)
	for _, n := range r.Tiers {
		r.Customers += n
	}
	r.TierMoves, r.ChurnMoves = moves(prefixTierMove), moves(prefixChurnMove)
	r.SegmentMoves, r.LayerMoves = moves(prefixSegmentMove), moves(prefixLayerMove)
	r.EnteredHighRisk = 0
	for move, n := range r.ChurnMoves {
		if strings.HasSuffix(move, moveSep+scoring.LevelHigh.String()) {
			r.EnteredHighRisk += n
		}
	}
	var layered, between int64
	for _, name := range c.withPrefix(prefixLayer) {
		if name != None {
			layered += c.through(prefixLayer+name, d-scoring.Day(w))
		}
	}
	for move, n := range r.LayerMoves {
		if !strings.HasPrefix(move, None+moveSep) {
			between += n
		}
	}
	r.LayerTransitionRate = ratio(float64(between), float64(layered))
	return r
}

// Series is the reports of window w ending on each day from first to last.
func (c *Counters) Series(first, last scoring.Day, w int) []Report {
	var out []Report
	for d := first; d <= last; d++ {
		out = append(out, c.Report(d, w))
	}
	return out
}

// CompleteThrough is the last day whose KPIs are final: the watermark has closed it (its end
// plus the allowed lateness), and no shard has a customer whose next evaluation is due at or
// before its closing, so every end-of-day change of the day has been counted. firstDue is the
// earliest deadline over the shards (zero: none). ok is false when no day is complete yet.
func CompleteThrough(watermark, firstDue time.Time, p *scoring.Policy) (scoring.Day, bool) {
	if watermark.IsZero() {
		return 0, false
	}
	last := scoring.DayOf(watermark.Add(-p.AllowedLateness)) - 1
	if !firstDue.IsZero() {
		// The last day closing strictly before the first deadline.
		last = min(last, scoring.DayOf(firstDue.Add(-p.AllowedLateness-time.Nanosecond))-1)
	}
	return last, true
}
