package loyaltyctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/txnsummary"
)

// topicRead is what reading the purchases topic found, for the operator.
type topicRead struct {
	Records, Used, Duplicates, Invalid, OtherCurrency, OutOfRange int
}

// topicTransactions reads the namespace's purchases topic (every partition, from its first
// record to its end when the read starts) and returns the purchases and refunds whose event
// time falls on days since..until (since zero: from the first), in minor units of the policy's
// currency, refunds negative. It keeps what the scoring services apply: records that decode,
// pass the same validation, are keyed by their customer and are in the policy's currency; a
// producer's duplicate (an event id seen before) counts once. The range is in event time, so
// the whole topic is read: records are not ordered by event time.
func topicTransactions(ctx context.Context, env *environment, policy *scoring.Policy, since, until txnsummary.Day) ([]txnsummary.Transaction, topicRead, error) {
	var read topicRead
	c, err := env.codec(ctx)
	if err != nil {
		return nil, read, err
	}
	admin, err := env.admin()
	if err != nil {
		return nil, read, err
	}
	defer admin.Close()
	validator, err := event.NewValidator(event.DefaultLimits())
	if err != nil {
		return nil, read, err
	}
	topic := event.TopicPurchases + env.cfg.TopicSuffix
	start, err := admin.OffsetsForTime(ctx, topic, time.Time{})
	if err != nil {
		return nil, read, err
	}
	end, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		return nil, read, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		out  []txnsummary.Transaction
	)
	keep := func(ctx context.Context, m stream.Message) {
		ev, err := c.Decode(ctx, m.Value)
		mu.Lock()
		defer mu.Unlock()
		read.Records++
		if err != nil {
			if !errors.Is(err, codec.ErrNotFramed) && !errors.Is(err, codec.ErrUnknownSchema) && !errors.Is(err, codec.ErrMalformed) {
				fail(fmt.Errorf("decoding %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)) // an outage, not a bad record
				return
			}
			read.Invalid++
			return
		}
		p, ok := ev.(event.Purchase)
		now := m.Time
		if now.IsZero() {
			now = time.Now()
		}
		switch {
		case !ok || validator.Validate(p, now) != nil || !bytes.Equal(m.Key, []byte(p.CustomerID)):
			read.Invalid++
			return
		case p.Currency != policy.Currency:
			read.OtherCurrency++
			return
		case seen[p.EventID]:
			read.Duplicates++
			return
		}
		seen[p.EventID] = true
		day := txnsummary.DayOf(p.OccurredAt.UTC())
		if day > until || (since != 0 && day < since) {
			read.OutOfRange++
			return
		}
		amount := float64(p.AmountMinor)
		if p.Kind == event.KindRefund {
			amount = -amount
		}
		read.Used++
		out = append(out, txnsummary.Transaction{CustomerID: p.CustomerID, Day: day, Amount: amount})
	}
	for part, to := range end {
		from := start[part]
		if from >= to {
			continue
		}
		ch := make(chan stream.Message, 256)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(ch)
			if err := admin.ReadRange(ctx, topic, part, from, to, ch); err != nil {
				fail(err)
			}
		}()
		go func() {
			defer wg.Done()
			for m := range ch {
				keep(ctx, m)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, read, fmt.Errorf("reading %s: %w", topic, firstErr)
	}
	return out, read, nil
}
