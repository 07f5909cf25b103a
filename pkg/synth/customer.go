package synth

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

// customer is one generated customer: three point processes (purchases, login days, NPS
// surveys) and a list of scheduled follow-ups (refunds, CSAT answers, complaints), all driven by
// the customer's own random source. Every scheduled time is at or after the event being
// emitted, so each customer's events, and hence the merged stream, come out in time order.
type customer struct {
	id   string
	idx  int
	kind Archetype
	rng  *rand.Rand
	end  time.Time
	join time.Time

	shape  purchaseShape
	seq    int
	orders int
	cases  int

	nextBuy time.Time
	gap     float64 // mean days between purchases
	median  float64 // median basket, major units
	// stopAt ends a lapser's purchases; zero for everyone else.
	stopAt time.Time
	// unhappyAt is when a detractor's bad experience happens; zero for everyone else.
	unhappyAt time.Time

	nextLogin time.Time
	dormant   bool
	loginRate float64 // share of days with a login, before decay
	halfLife  float64 // days

	nextSurvey time.Time

	pending []event.Input // follow-ups, by time
	next    time.Time     // the time of the next event; zero when there is none
}

func newCustomer(id string, idx int, kind Archetype, start, end time.Time, rng *rand.Rand) *customer {
	shape := purchaseShapes[kind]
	span := end.Sub(start)
	c := &customer{id: id, idx: idx, kind: kind, rng: rng, end: end, shape: shape,
		gap: uniform(rng, shape.gapMin, shape.gapMax), median: uniform(rng, shape.medianMin, shape.medianMax)}
	c.join = c.clamp(start, daytime(rng, start.Add(time.Duration(rng.Float64()*shape.joinSpan*float64(span)))))
	if c.join.IsZero() { // a history shorter than a day
		c.join = start
	}
	tenure := end.Sub(c.join)
	switch kind {
	case Lapser:
		// Regular for a while, then silent for long enough that the silence is noticed.
		stop := c.join.Add(time.Duration(uniform(rng, 0.3, 0.7) * float64(tenure)))
		if latest := end.Add(-75 * day); stop.After(latest) {
			stop = latest
		}
		c.stopAt = maxTime(stop, c.join.Add(30*day))
	case Detractor:
		c.unhappyAt = c.join.Add(time.Duration(uniform(rng, 0.3, 0.7) * float64(tenure))).Truncate(time.Millisecond)
		if c.unhappyAt.Before(end) {
			c.scheduleNPS(c.unhappyAt, rng.Int32N(7))
			c.scheduleComplaint(c.unhappyAt.Add(time.Duration(rng.Int64N(int64(2 * time.Hour)))))
		}
	}
	c.nextBuy = c.join
	dormantShare := dormantShare
	if kind == Occasional {
		dormantShare = 0.5
	}
	c.dormant = rng.Float64() < dormantShare
	c.loginRate = min(max(lognormal(rng, loginDayRateMedian, loginDayRateSigma), 0.02), 0.9)
	c.halfLife = uniform(rng, loginHalfLifeMin, loginHalfLifeMax)
	c.nextLogin = c.clamp(c.join, c.join.Add(time.Duration(rng.Int64N(int64(time.Hour)))))
	c.nextSurvey = c.surveyAfter(c.join)
	c.advance()
	return c
}

// clamp returns t truncated to milliseconds if it lies in [from, end), and the zero time
// otherwise.
func (c *customer) clamp(from, t time.Time) time.Time {
	t, from = t.Truncate(time.Millisecond), from.Truncate(time.Millisecond)
	if t.Before(from) {
		t = from
	}
	if !t.Before(c.end) {
		return time.Time{}
	}
	return t
}

func (c *customer) unhappy(t time.Time) bool {
	return !c.unhappyAt.IsZero() && !t.Before(c.unhappyAt)
}

func (c *customer) eventID() string {
	c.seq++
	return c.id + "-e" + strconv.Itoa(c.seq)
}

// advance recomputes next: the earliest of the streams.
func (c *customer) advance() {
	c.next = time.Time{}
	for _, t := range []time.Time{c.nextBuy, c.nextLogin, c.nextSurvey} {
		if !t.IsZero() && (c.next.IsZero() || t.Before(c.next)) {
			c.next = t
		}
	}
	if len(c.pending) > 0 {
		if t := c.pending[0].Time(); c.next.IsZero() || !t.After(c.next) {
			c.next = t
		}
	}
}

// pop emits the event at c.next and schedules what follows it. Follow-ups win ties, then
// purchases, logins and surveys.
func (c *customer) pop() event.Input {
	t := c.next
	var e event.Input
	switch {
	case len(c.pending) > 0 && c.pending[0].Time().Equal(t):
		e = c.pending[0]
		c.pending = slices.Delete(c.pending, 0, 1)
	case c.nextBuy.Equal(t):
		e = c.purchase(t)
	case c.nextLogin.Equal(t):
		e = c.login(t)
	default:
		e = c.survey(t)
	}
	c.advance()
	return e
}

func (c *customer) schedule(e event.Input) {
	i, _ := slices.BinarySearchFunc(c.pending, e.Time(), func(p event.Input, t time.Time) int {
		if p.Time().After(t) {
			return 1
		}
		return -1 // equal times keep their scheduling order
	})
	c.pending = slices.Insert(c.pending, i, e)
}

func (c *customer) purchase(t time.Time) event.Input {
	c.orders++
	order := c.id + "-o" + strconv.Itoa(c.orders)
	amount := lognormal(c.rng, c.median, c.shape.sigma)
	if c.kind == BigSpender && c.rng.Float64() < bigBasketChance {
		amount *= bigBasketFactor
	}
	minor := max(int64(math.Round(amount*100)), minAmountMinor)
	p := event.Purchase{EventID: c.eventID(), CustomerID: c.id, OccurredAt: t, OrderID: order, Kind: event.KindPurchase,
		AmountMinor: minor, Currency: Currency, Channel: loginChannel(c.rng)}

	if c.rng.Float64() < c.shape.refund {
		// Most refunds come within the returns window; some much later.
		after := uniform(c.rng, 1, 25)
		if c.rng.Float64() < 0.1 {
			after = uniform(c.rng, 31, 60)
		}
		refund := minor
		if c.rng.Float64() < 0.3 {
			refund = max(int64(float64(minor)*uniform(c.rng, 0.2, 0.8)), minAmountMinor)
		}
		if at := c.clamp(t, daytime(c.rng, t.Add(days(after)))); !at.IsZero() {
			c.orders++
			c.schedule(event.Purchase{EventID: c.eventID(), CustomerID: c.id, OccurredAt: at, OrderID: c.id + "-o" + strconv.Itoa(c.orders),
				Kind: event.KindRefund, AmountMinor: min(refund, minor), Currency: Currency, RefundOfOrderID: order})
		}
	}
	csat, complaint := c.shape.csat, complaintChance
	if c.unhappy(t) {
		csat, complaint = 0.5, unhappyComplaint
	}
	if c.rng.Float64() < csat {
		at := t.Add(time.Hour + time.Duration(c.rng.Int64N(int64(71*time.Hour))))
		score := rating(c.rng)
		if c.unhappy(at) {
			score = 1 + c.rng.Int32N(2)
		}
		c.scheduleFeedback(at, event.FeedbackCSAT, &score, "")
	}
	if c.rng.Float64() < complaint {
		c.scheduleComplaint(t.Add(time.Hour + time.Duration(c.rng.Int64N(int64(7*day)))))
	}

	gap := c.gap * uniform(c.rng, 0.5, 1.5)
	if c.unhappy(t) {
		gap *= unhappyGapFactor
	}
	next := c.clamp(t.Add(time.Millisecond), daytime(c.rng, t.Add(days(gap))))
	if !c.stopAt.IsZero() && next.After(c.stopAt) {
		next = time.Time{}
	}
	c.nextBuy = next
	return p
}

func (c *customer) login(t time.Time) event.Input {
	l := event.Login{EventID: c.eventID(), CustomerID: c.id, OccurredAt: t, Channel: event.LoginChannel(loginChannel(c.rng))}
	c.nextLogin = time.Time{}
	if c.dormant {
		return l
	}
	// Interest decays over the customer's tenure, and fast once a lapser stops buying.
	decay := math.Exp2(t.Sub(c.join).Hours() / 24 / c.halfLife)
	if !c.stopAt.IsZero() && t.After(c.stopAt) {
		decay *= math.Exp2(t.Sub(c.stopAt).Hours() / 24 / lapseLoginHalfLife)
	}
	rate := c.loginRate / decay
	if rate < minLoginDayRate {
		return l
	}
	var next time.Time
	if c.rng.Float64() < burstContinue {
		// The run of login days goes on tomorrow.
		next = t.Add(18*time.Hour + time.Duration(c.rng.Int64N(int64(12*time.Hour))))
	} else {
		// A pause between runs, long enough that the runs make up `rate` of the days.
		run := 1 / (1 - burstContinue)
		pause := run * (1 - rate) / rate
		next = t.Add(days(1 + c.rng.ExpFloat64()*pause))
	}
	c.nextLogin = c.clamp(t.Add(time.Millisecond), next)
	return l
}

func (c *customer) survey(t time.Time) event.Input {
	score := npsForRating(c.rng, rating(c.rng))
	if c.unhappy(t) {
		score = c.rng.Int32N(7)
	}
	e := c.feedback(t, event.FeedbackNPS, &score, "")
	c.nextSurvey = c.surveyAfter(t)
	return e
}

// surveyAfter returns the time of the next NPS survey the customer answers.
func (c *customer) surveyAfter(t time.Time) time.Time {
	for {
		t = t.Add(days(npsEvery * uniform(c.rng, 0.5, 1.5)))
		if !t.Before(c.end) {
			return time.Time{}
		}
		response := npsResponse
		if c.unhappy(t) {
			response = unhappyResponse
		}
		if c.rng.Float64() < response {
			return c.clamp(t, daytime(c.rng, t))
		}
	}
}

func (c *customer) scheduleNPS(t time.Time, score int32) {
	c.scheduleFeedback(t, event.FeedbackNPS, &score, "")
}

// scheduleComplaint opens a case at t and, usually, closes it some days later.
func (c *customer) scheduleComplaint(t time.Time) {
	c.cases++
	caseID := c.id + "-k" + strconv.Itoa(c.cases)
	if !c.scheduleFeedback(t, event.FeedbackComplaintOpened, nil, caseID) {
		return
	}
	if c.rng.Float64() < complaintClosed {
		c.scheduleFeedback(t.Add(days(uniform(c.rng, 2, 20))), event.FeedbackComplaintClosed, nil, caseID)
	}
}

// scheduleFeedback schedules a feedback record unless t is past the end of the history.
func (c *customer) scheduleFeedback(t time.Time, kind event.FeedbackKind, score *int32, caseID string) bool {
	t = c.clamp(t, t)
	if t.IsZero() {
		return false
	}
	c.schedule(c.feedback(t, kind, score, caseID))
	return true
}

func (c *customer) feedback(t time.Time, kind event.FeedbackKind, score *int32, caseID string) event.Feedback {
	return event.Feedback{EventID: c.eventID(), CustomerID: c.id, OccurredAt: t, Kind: kind, Score: score, CaseID: caseID}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
