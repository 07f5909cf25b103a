// Package synth generates a synthetic but plausible population of loyalty customers: steady
// buyers, lapsers who buy regularly and then stop, big spenders who climb the tiers, detractors
// who answer surveys badly and open complaints, and occasional buyers, with refunds, bursty
// logins that decay over time, and survey answers shaped like real review ratings.
//
// It exists so that `loyalty-dev demo`, benchmarks and tests can feed the pipeline months of
// history without a data set on disk. The shapes of the public data sets the project studied
// are constants here (see distributions.go); nothing is read at run time.
//
// A Generator is a pure function of its Config: the same seed gives the same events with the
// same ids in the same order. Events come out in event-time order across all customers (ties
// broken by customer), which is how a live system would have seen them; each customer's events
// are produced by independent point processes driven by the customer's own random source, so
// one customer's history does not depend on how many others there are.
package synth

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

// Archetype is the kind of customer a generated customer behaves like.
type Archetype int

// Archetypes.
const (
	// Steady buyers purchase every two to four weeks for the whole history.
	Steady Archetype = iota
	// Lapsers buy regularly, then stop buying and fade out of the app.
	Lapser
	// BigSpenders buy large baskets and cross the SILVER, GOLD and PLATINUM thresholds.
	BigSpender
	// Detractors have a bad experience part-way through: low NPS and CSAT, complaints opened
	// (and mostly closed), more refunds, and slower buying afterwards.
	Detractor
	// Occasional buyers purchase a few times a year; many join late in the history.
	Occasional
	numArchetypes
)

var archetypeNames = [numArchetypes]string{"steady", "lapser", "big-spender", "detractor", "occasional"}

func (a Archetype) String() string {
	if a < 0 || a >= numArchetypes {
		return fmt.Sprintf("Archetype(%d)", int(a))
	}
	return archetypeNames[a]
}

// Archetypes lists every archetype in order.
func Archetypes() []Archetype {
	out := make([]Archetype, numArchetypes)
	for i := range out {
		out[i] = Archetype(i)
	}
	return out
}

// Mix is the share of customers of each archetype, indexed by Archetype. Shares are relative:
// they need not add up to one.
type Mix [numArchetypes]float64

// DefaultMix is the population the demo runs.
var DefaultMix = Mix{Steady: 0.40, Lapser: 0.20, BigSpender: 0.10, Detractor: 0.10, Occasional: 0.20}

// Config says what to generate.
type Config struct {
	// Customers is the number of customers.
	Customers int
	// Months is the length of the history, ending at End.
	Months int
	// End bounds the history: every event occurs before it. Use the current time so that the
	// history ends "now" (validators reject events from the future).
	End time.Time
	// Seed selects the population; the same seed gives the same events.
	Seed uint64
	// Mix is the archetype mix; the zero value means DefaultMix.
	Mix Mix
	// IDPrefix starts every customer id (default "cust-").
	IDPrefix string
}

// Validate reports the first problem, naming the field.
func (c Config) Validate() error {
	switch {
	case c.Customers < 1 || c.Customers > 10_000_000:
		return fmt.Errorf("Customers: %d is not in 1..10000000", c.Customers)
	case c.Months < 1 || c.Months > 120:
		return fmt.Errorf("Months: %d is not in 1..120", c.Months)
	case c.End.IsZero():
		return errors.New("End: required")
	case c.End.AddDate(0, -c.Months, 0).Before(earliest):
		return fmt.Errorf("End: a %d-month history ending %s would start before %s", c.Months,
			c.End.UTC().Format(time.DateOnly), earliest.Format(time.DateOnly))
	case len(c.IDPrefix) > 32:
		return errors.New("IDPrefix: longer than 32 bytes")
	}
	total := 0.0
	for a, share := range c.Mix {
		if share < 0 || math.IsNaN(share) || math.IsInf(share, 0) {
			return fmt.Errorf("Mix[%s]: %v is not a non-negative share", Archetype(a), share)
		}
		total += share
	}
	if total == 0 && c.Mix != (Mix{}) {
		return errors.New("Mix: every share is zero")
	}
	return nil
}

// earliest is the oldest event time the pipeline's validator accepts.
var earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Currency is the currency of every generated amount: the default policy's.
const Currency = "USD"

// Profile is who a generated customer is.
type Profile struct {
	ID        string
	Archetype Archetype
	// Joined is the time of the customer's first event.
	Joined time.Time
}

// Generator yields the events of a population in event-time order. It is not safe for
// concurrent use.
type Generator struct {
	profiles []Profile
	queue    queue
	emitted  int
}

// New prepares the population of cfg. It allocates a few hundred bytes per customer; events are
// generated as Next asks for them.
func New(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("synth config: %w", err)
	}
	if cfg.Mix == (Mix{}) {
		cfg.Mix = DefaultMix
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = "cust-"
	}
	end := cfg.End.UTC().Truncate(time.Millisecond)
	start := end.AddDate(0, -cfg.Months, 0)
	kinds := assign(cfg.Customers, cfg.Mix, rand.New(rand.NewPCG(cfg.Seed, math.MaxUint64)))
	g := &Generator{profiles: make([]Profile, cfg.Customers), queue: make(queue, 0, cfg.Customers)}
	width := len(fmt.Sprint(cfg.Customers))
	for i, kind := range kinds {
		id := fmt.Sprintf("%s%0*d", cfg.IDPrefix, max(width, 6), i+1)
		c := newCustomer(id, i, kind, start, end, rand.New(rand.NewPCG(cfg.Seed, uint64(i))))
		g.profiles[i] = Profile{ID: id, Archetype: kind, Joined: c.join}
		if !c.next.IsZero() {
			g.queue = append(g.queue, c)
		}
	}
	heap.Init(&g.queue)
	return g, nil
}

// Profiles returns every customer, in id order.
func (g *Generator) Profiles() []Profile { return g.profiles }

// Emitted returns how many events Next has returned.
func (g *Generator) Emitted() int { return g.emitted }

// Next returns the next event in event-time order, or false when the history is over. The
// event is an event.Purchase, event.Login or event.Feedback value.
func (g *Generator) Next() (event.Input, bool) {
	if len(g.queue) == 0 {
		return nil, false
	}
	c := g.queue[0]
	e := c.pop()
	if c.next.IsZero() {
		heap.Pop(&g.queue)
	} else {
		heap.Fix(&g.queue, 0)
	}
	g.emitted++
	return e, true
}

// assign gives every customer an archetype: exact counts by largest remainder (so even a
// small population has its big spenders and detractors), in a seeded random order.
func assign(n int, mix Mix, rng *rand.Rand) []Archetype {
	total := 0.0
	for _, s := range mix {
		total += s
	}
	counts := make([]int, numArchetypes)
	type rem struct {
		a    int
		frac float64
	}
	var rems []rem
	left := n
	for a, s := range mix {
		exact := float64(n) * s / total
		counts[a] = int(exact)
		left -= counts[a]
		rems = append(rems, rem{a, exact - float64(counts[a])})
	}
	for ; left > 0; left-- {
		best := 0
		for i := range rems {
			if rems[i].frac > rems[best].frac {
				best = i
			}
		}
		counts[rems[best].a]++
		rems[best].frac = -1
	}
	kinds := make([]Archetype, 0, n)
	for a, k := range counts {
		for range k {
			kinds = append(kinds, Archetype(a))
		}
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	return kinds
}

// queue orders customers by their next event time, then by index.
type queue []*customer

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].next.Equal(q[j].next) {
		return q[i].next.Before(q[j].next)
	}
	return q[i].idx < q[j].idx
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*customer)) }
func (q *queue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}
