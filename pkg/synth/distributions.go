package synth

import (
	"math"
	"math/rand/v2"
	"time"
)

// The shapes below come from public data sets the project studied; they are constants so that a
// fresh clone needs no data files.

// ratingWeights is the star-rating distribution (1–5, index 0 unused) of 3,150 product reviews
// (May–July 2018): 5 → 2,286, 4 → 455, 3 → 152, 2 → 96, 1 → 161, i.e. 72.6%, 14.4%, 4.8%,
// 3.0% and 5.1%. CSAT answers are drawn from it directly; NPS answers are drawn from it and
// mapped onto the 0–10 scale (npsForRating).
var ratingWeights = [6]float64{0, 161, 96, 152, 455, 2286}

// Login shape, from 207,917 login days of 8,823 users over two years: 71% of users came on a
// single day and never again; the others logged in on about a fifth of the days of their active
// span (median 0.20 login days per day, quartiles 0.12 and 0.35), mostly in runs of consecutive
// days (59% of gaps between login days are one day), and their activity faded after a median of
// about 110 days. Customers who also buy are more engaged than that population, so fewer of
// them are dormant.
const (
	// dormantShare is the share of customers who log in once, when they join, and never again.
	dormantShare = 0.30
	// loginDayRateMedian and loginDayRateSigma give each active customer's share of login days
	// (lognormal).
	loginDayRateMedian = 0.20
	loginDayRateSigma  = 0.6
	// burstContinue is the chance that a login day is followed by another on the next day.
	burstContinue = 0.59
	// loginHalfLifeMin/Max bound the half-life (days) over which a customer's login rate decays.
	loginHalfLifeMin = 90
	loginHalfLifeMax = 540
	// lapseLoginHalfLife is how fast (days) a lapser's logins fade once they stop buying.
	lapseLoginHalfLife = 20
	// minLoginDayRate ends a customer's login stream once they log in this rarely.
	minLoginDayRate = 0.004
)

// loginChannels are the sign-in channels and their shares.
var loginChannels = []struct {
	ch    string
	share float64
}{{"APP", 0.55}, {"WEB", 0.35}, {"STORE", 0.10}}

// purchaseShape is how an archetype buys.
type purchaseShape struct {
	// gapMin/gapMax bound the customer's mean days between purchases (uniform); each gap is
	// jittered around it.
	gapMin, gapMax float64
	// medianMin/medianMax bound the customer's median basket in major units (uniform); baskets
	// are lognormal around it.
	medianMin, medianMax float64
	sigma                float64
	// refund is the chance that an order is (partly) refunded.
	refund float64
	// csat is the chance that an order is followed by a CSAT answer.
	csat float64
	// joinSpan is the share of the history over which customers of this kind join.
	joinSpan float64
}

var purchaseShapes = [numArchetypes]purchaseShape{
	Steady:     {gapMin: 12, gapMax: 28, medianMin: 35, medianMax: 90, sigma: 0.5, refund: 0.03, csat: 0.08, joinSpan: 0.3},
	Lapser:     {gapMin: 7, gapMax: 21, medianMin: 30, medianMax: 70, sigma: 0.5, refund: 0.03, csat: 0.08, joinSpan: 0.2},
	BigSpender: {gapMin: 8, gapMax: 25, medianMin: 90, medianMax: 500, sigma: 0.6, refund: 0.06, csat: 0.10, joinSpan: 0.3},
	Detractor:  {gapMin: 14, gapMax: 35, medianMin: 30, medianMax: 80, sigma: 0.5, refund: 0.10, csat: 0.10, joinSpan: 0.3},
	Occasional: {gapMin: 45, gapMax: 120, medianMin: 20, medianMax: 60, sigma: 0.7, refund: 0.02, csat: 0.05, joinSpan: 0.9},
}

const (
	day = 24 * time.Hour
	// minAmountMinor keeps baskets at 1.00 or more.
	minAmountMinor = 100
	// bigBasketChance and bigBasketFactor: a big spender's occasional very large order.
	bigBasketChance = 0.05
	bigBasketFactor = 5
	// npsEvery and npsResponse: an NPS survey every npsEvery days on average, answered with
	// chance npsResponse (detractors answer more often once unhappy: unhappyResponse).
	npsEvery        = 90
	npsResponse     = 0.35
	unhappyResponse = 0.8
	// complaintChance: an order leads to a complaint (unhappy detractors: unhappyComplaint).
	complaintChance  = 0.005
	unhappyComplaint = 0.15
	// complaintClosed: the chance a complaint is closed (the rest stay open).
	complaintClosed = 0.75
	// unhappyGapFactor slows an unhappy detractor's buying.
	unhappyGapFactor = 2
)

// uniform returns a value in [lo, hi).
func uniform(rng *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }

// days converts a number of days into a duration.
func days(d float64) time.Duration { return time.Duration(d * float64(day)) }

// lognormal returns a lognormal variate with the given median.
func lognormal(rng *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*rng.NormFloat64())
}

// rating draws a 1–5 star rating from ratingWeights.
func rating(rng *rand.Rand) int32 {
	total := 0.0
	for _, w := range ratingWeights {
		total += w
	}
	x := rng.Float64() * total
	for r := 5; r >= 1; r-- {
		if x < ratingWeights[r] {
			return int32(r)
		}
		x -= ratingWeights[r]
	}
	return 5
}

// npsForRating maps a star rating onto the NPS scale: 5 stars are promoters (9–10), 4 are
// passives (7–8), 3 and below are detractors (5–6, 3–4, 0–2).
func npsForRating(rng *rand.Rand, stars int32) int32 {
	switch stars {
	case 5:
		return 9 + rng.Int32N(2)
	case 4:
		return 7 + rng.Int32N(2)
	case 3:
		return 5 + rng.Int32N(2)
	case 2:
		return 3 + rng.Int32N(2)
	}
	return rng.Int32N(3)
}

// loginChannel draws a channel.
func loginChannel(rng *rand.Rand) string {
	x := rng.Float64()
	for _, c := range loginChannels {
		if x < c.share {
			return c.ch
		}
		x -= c.share
	}
	return loginChannels[0].ch
}

// daytime moves t to a random time of day between 08:00 and 22:00 UTC on its day, when people
// shop.
func daytime(rng *rand.Rand, t time.Time) time.Time {
	d := t.Truncate(day)
	return d.Add(8*time.Hour + time.Duration(rng.Int64N(int64(14*time.Hour/time.Millisecond)))*time.Millisecond)
}
