package devharness

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// eventClock is the demo sweeper's "wall clock": the event time up to which the produced
// history has been applied by the consumers, and the real wall clock once all of it has.
//
// The producer sends the history in event-time order and records a mark after every
// acknowledged produce call: how many records it has sent to each topic so far and the event
// time of the last one. A mark is reached when every topic's consumer has applied at least that
// many records (loyalty_records_in_total, counted after a batch is durable); every record still
// to be applied is then at or after the mark's time, which is exactly what the watermark needs
// from "now" for a caught-up partition.
type eventClock struct {
	processed func() map[string]float64

	mu       sync.Mutex
	marks    []clockMark
	reached  time.Time
	finished bool // the producer sent the whole history
	// applied is when the whole history was found applied; zero until then.
	applied time.Time
	// read and readAt cache processed() so that busy callers do not gather metrics
	// continuously.
	read   map[string]float64
	readAt time.Time
}

type clockMark struct {
	sent map[string]int64 // cumulative records per physical topic
	at   time.Time
}

// newEventClock starts the clock at the beginning of the history.
func newEventClock(start time.Time, processed func() map[string]float64) *eventClock {
	return &eventClock{processed: processed, reached: start}
}

// mark records that everything up to sent has been acknowledged, the last of it at time at.
func (c *eventClock) mark(sent map[string]int64, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := make(map[string]int64, len(sent))
	for k, v := range sent {
		cp[k] = v
	}
	c.marks = append(c.marks, clockMark{sent: cp, at: at})
}

// finish records that the producer has sent the whole history.
func (c *eventClock) finish() {
	c.mu.Lock()
	c.finished = true
	c.mu.Unlock()
}

// Now returns the clock's time; it is the sweeper's SweeperConfig.Now.
func (c *eventClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.applied.IsZero() {
		return time.Now()
	}
	c.update()
	if !c.applied.IsZero() {
		return c.applied
	}
	return c.reached
}

// Behind reports whether the consumers have yet to apply produced history from before at.
func (c *eventClock) Behind(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.update()
	return len(c.marks) > 0 && c.reached.Before(at)
}

// Reached returns the event time up to which the history has been applied.
func (c *eventClock) Reached() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.update()
	return c.reached
}

// update moves reached past the marks the consumers have covered. Called with mu held.
func (c *eventClock) update() {
	if time.Since(c.readAt) >= 20*time.Millisecond {
		c.read, c.readAt = c.processed(), time.Now()
	}
	for len(c.marks) > 0 && covers(c.read, c.marks[0].sent) {
		c.reached = c.marks[0].at
		c.marks = c.marks[1:]
	}
	if c.finished && len(c.marks) == 0 && c.applied.IsZero() {
		c.applied = time.Now()
	}
}

// appliedAfter returns how long after start the whole history had been applied, or 0 if it
// has not been (yet).
func (c *eventClock) appliedAfter(start time.Time) time.Duration {
	c.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.applied.IsZero() {
		return 0
	}
	return c.applied.Sub(start)
}

func covers(processed map[string]float64, sent map[string]int64) bool {
	for topic, n := range sent {
		if processed[topic] < float64(n) {
			return false
		}
	}
	return true
}

// recordsIn returns loyalty_records_in_total summed by topic over every service of the process.
func recordsIn(g prometheus.Gatherer) map[string]float64 {
	out := map[string]float64{}
	families, err := g.Gather()
	if err != nil {
		return out // a partial read only makes the clock lag; the next read catches up
	}
	for _, f := range families {
		if f.GetName() != "loyalty_records_in_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "topic" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// processed sums the records applied from the given topics.
func processed(in map[string]float64, topics []string) int64 {
	var n float64
	for _, t := range topics {
		n += in[t]
	}
	return int64(n)
}
