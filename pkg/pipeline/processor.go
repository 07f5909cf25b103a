package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// Suppressor tells which customers were erased and must not be brought back.
type Suppressor interface {
	Suppressed(ctx context.Context, customerIDs []string) (map[string]bool, error)
}

// Processor is the records handler of the consumer services: it applies a batch's valid
// records to the store and then reports the batch's partition positions to the watermark.
// Before it applies a customer's records it closes the days the watermark has closed, as the
// sweeper would: a day's evaluation never depends on which of them got there first.
type Processor struct {
	Scorer     *Scorer
	Store      *state.Store
	Watermarks *watermark.Tracker
	// Required lists the watermark fields of the input partitions holding records: until
	// each has reported, the watermark is unknown and no day is closed (nil: none).
	Required   func(ctx context.Context) ([]string, error)
	Suppressor Suppressor // nil: nobody is suppressed
	// Outbox, when not nil, pauses the processor (the batch fails, uncommitted, and is
	// retried) while the namespace's outboxes are at their bound.
	Outbox *OutboxBound
	// Now is the wall clock of caught-up heartbeats; nil means time.Now.
	Now func() time.Time
}

// HandleRecords implements ingest.RecordsHandler.
func (p *Processor) HandleRecords(ctx context.Context, b *stream.Batch, records []ingest.Record) error {
	policy := p.Scorer.Policy()
	byCustomer := make(map[string][]ingest.Record, len(records))
	ids := make([]string, 0, len(records))
	for _, r := range records {
		if err := ScoringEvent(r).Validate(policy); err != nil {
			r.Reject("invalid", err)
			continue
		}
		id := r.Event.Customer()
		if _, seen := byCustomer[id]; !seen {
			ids = append(ids, id)
		}
		byCustomer[id] = append(byCustomer[id], r)
	}
	if p.Suppressor != nil && len(ids) > 0 {
		erased, err := p.Suppressor.Suppressed(ctx, ids)
		if err != nil {
			return err
		}
		if len(erased) > 0 {
			kept := ids[:0]
			for _, id := range ids {
				if !erased[id] {
					kept = append(kept, id)
				}
			}
			ids = kept
		}
	}
	if len(ids) > 0 {
		var wm time.Time
		if p.Watermarks != nil {
			var required []string
			if p.Required != nil {
				var err error
				if required, err = p.Required(ctx); err != nil {
					return err
				}
			}
			at, known, err := p.Watermarks.Clock(ctx, required...)
			if err != nil {
				return err
			}
			if known {
				wm = at
			}
		}
		if err := p.Outbox.Check(ctx); err != nil {
			return err
		}
		res, err := p.Store.Apply(ctx, ids, p.Scorer.ApplyCompute(byCustomer, wm))
		p.Outbox.Added(res.Outbox)
		if err != nil {
			return fmt.Errorf("applying batch: %w", err)
		}
	}
	if p.Watermarks != nil {
		now := time.Now
		if p.Now != nil {
			now = p.Now
		}
		return p.Watermarks.Report(ctx, positions(b, records), now())
	}
	return nil
}

// positions summarises, per partition of the batch, the newest event time applied and
// whether the batch ended at the partition's high-water mark.
func positions(b *stream.Batch, records []ingest.Record) []watermark.Position {
	type tp struct {
		topic     string
		partition int
	}
	pos := map[tp]*watermark.Position{}
	for _, m := range b.Messages {
		k := tp{m.Topic, m.Partition}
		p, ok := pos[k]
		if !ok {
			p = &watermark.Position{Topic: m.Topic, Partition: m.Partition}
			pos[k] = p
		}
		p.CaughtUp = m.HighWaterMark > 0 && m.Offset+1 >= m.HighWaterMark
	}
	for _, r := range records {
		p := pos[tp{r.Message.Topic, r.Message.Partition}]
		if t := r.Event.Time(); t.After(p.MaxEventTime) {
			p.MaxEventTime = t
		}
	}
	out := make([]watermark.Position, 0, len(pos))
	for _, p := range pos {
		if p.MaxEventTime.IsZero() {
			p.MaxEventTime = time.UnixMilli(0)
		}
		out = append(out, *p)
	}
	return out
}
