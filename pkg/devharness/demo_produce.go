package devharness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/synth"
)

// producer sends the generated history to the input topics in event-time order, one
// synchronous produce call at a time (so that each acknowledged call is a prefix of the
// history, which the event clock relies on), at most rate events per second when rate > 0.
type producer struct {
	out   *stream.Producer
	codec *codec.Codec
	gen   *synth.Generator
	clock *eventClock
	rate  float64
	// lead bounds how far in event time the producer runs ahead of the applied history.
	lead   time.Duration
	topics map[string]string // schema name -> physical topic

	mu   sync.Mutex
	sent producerStats
}

// producerStats is what the producer has had acknowledged so far.
type producerStats struct {
	Total    int64
	BySchema map[string]int64 // Purchase, Login, Feedback
	// Frontier is the event time of the last acknowledged event.
	Frontier time.Time
	Done     bool
}

func (p *producer) snapshot() producerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sent
	s.BySchema = make(map[string]int64, len(p.sent.BySchema))
	for k, v := range p.sent.BySchema {
		s.BySchema[k] = v
	}
	return s
}

// run produces until the history is over or ctx ends; it returns nil in both cases.
func (p *producer) run(ctx context.Context) error {
	batch := demoBatch
	if p.rate > 0 {
		batch = min(max(int(p.rate/10), 1), demoBatch) // about ten calls a second
	}
	start := time.Now()
	sent := map[string]int64{}
	bySchema := map[string]int64{}
	var total int64
	recs := make([]stream.Record, 0, batch)
	var first, last time.Time
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.lead > 0 {
			if err := p.waitForConsumers(ctx, first.Add(-p.lead)); err != nil {
				return err
			}
		}
		if p.rate > 0 {
			due := start.Add(time.Duration(float64(total+int64(len(recs))) / p.rate * float64(time.Second)))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Until(due)):
			}
		}
		// A call under way finishes even if the demo is stopping, so that what was written is
		// also what is counted as produced.
		if err := p.out.Produce(context.WithoutCancel(ctx), recs...); err != nil {
			return fmt.Errorf("producing the history: %w", err)
		}
		for _, r := range recs {
			sent[r.Topic]++
		}
		total += int64(len(recs))
		recs = recs[:0]
		p.clock.mark(sent, last)
		p.mu.Lock()
		p.sent.Total, p.sent.Frontier = total, last
		p.sent.BySchema = make(map[string]int64, len(bySchema))
		for k, v := range bySchema {
			p.sent.BySchema[k] = v
		}
		p.mu.Unlock()
		return nil
	}
	for {
		e, ok := p.gen.Next()
		if !ok {
			break
		}
		v, err := p.codec.Encode(e)
		if err != nil {
			return fmt.Errorf("encoding %s %s: %w", e.Schema(), e.ID(), err)
		}
		if len(recs) == 0 {
			first = e.Time()
		}
		recs = append(recs, stream.Record{Topic: p.topics[e.Schema()], Key: []byte(e.Customer()), Value: v})
		bySchema[e.Schema()]++
		last = e.Time()
		if len(recs) == batch || (p.lead > 0 && last.Sub(first) >= p.lead/4) {
			if err := flush(); err != nil {
				return stopped(ctx, err)
			}
		}
	}
	if err := flush(); err != nil {
		return stopped(ctx, err)
	}
	p.clock.finish()
	p.mu.Lock()
	p.sent.Done = true
	p.mu.Unlock()
	return nil
}

// waitForConsumers waits until the consumers have applied the history up to at.
//
// Each input topic has its own consumer service, and a customer's state is shared by all three:
// when the purchases consumer runs days ahead of the logins consumer, a customer's purchases
// close days whose logins have not arrived yet, and those logins then count as late (see
// docs/scoring.md, "Out-of-order and late events"). Live, the topics move together; replaying
// months in seconds, they only do if the producer keeps the lead small.
func (p *producer) waitForConsumers(ctx context.Context, at time.Time) error {
	for p.clock.Behind(at) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// stopped turns an error caused by the end of ctx into nil: stopping mid-history is normal.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// inputSchemas are the input schema names in display order.
var inputSchemas = []string{event.Purchase{}.Schema(), event.Login{}.Schema(), event.Feedback{}.Schema()}
