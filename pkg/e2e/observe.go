package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// Observer reads a cluster's progress and results from Kafka (through Admin) and Redis.
type Observer struct {
	Admin  *stream.Admin
	Redis  redis.UniversalClient
	Keys   keyspace.Keyspace
	Suffix string
	// Lateness is the allowed lateness of the namespace's policy, which the watermark
	// counts caught-up partitions less (0: the default policy's).
	Lateness time.Duration
}

// Watermark returns the namespace's pipeline watermark, and false while it is unknown.
func (o *Observer) Watermark(ctx context.Context) (time.Time, bool, error) {
	lateness := o.Lateness
	if lateness == 0 {
		lateness = scoring.DefaultPolicy().AllowedLateness
	}
	tr, err := watermark.NewTracker(ctx, o.Redis, o.Keys.Watermarks(), lateness)
	if err != nil {
		return time.Time{}, false, err
	}
	return tr.Clock(ctx)
}

// Group is the consumer group a consumer service of the observed namespace uses.
func (o *Observer) Group(service string) string {
	return "loyalty-" + o.Keys.Namespace() + "-" + service
}

// InputTopic is the physical input topic of a consumer service.
func (o *Observer) InputTopic(service string) string {
	if s, ok := event.StreamOfService(service); ok {
		return s.Topic + o.Suffix
	}
	return ""
}

// Progress is what is still to do.
type Progress struct {
	Lag    int64 // input records not yet committed by their consumer group
	Outbox int64 // derived events not yet published
	Due    int64 // customers whose inactivity deadline is at or before now
}

// Done reports whether nothing is left to do.
func (p Progress) Done() bool { return p.Lag == 0 && p.Outbox == 0 && p.Due == 0 }

func (p Progress) String() string {
	return fmt.Sprintf("lag %d, outbox %d, due %d", p.Lag, p.Outbox, p.Due)
}

// ServiceLags measures each consumer service's lag (input records its group has not
// committed) and their total.
func (o *Observer) ServiceLags(ctx context.Context) (total int64, lags map[string]int64, err error) {
	lags = make(map[string]int64, len(event.ConsumerServices()))
	for _, svc := range event.ConsumerServices() {
		topic := o.InputTopic(svc)
		end, err := o.Admin.EndOffsets(ctx, topic)
		if err != nil {
			return 0, nil, err
		}
		committed, err := o.Admin.GroupOffsets(ctx, o.Group(svc), topic)
		if err != nil {
			return 0, nil, err
		}
		for p, e := range end {
			c, ok := committed[p]
			if !ok || c < 0 {
				c = 0
			}
			lags[svc] += max(e-c, 0)
		}
		total += lags[svc]
	}
	return total, lags, nil
}

// Progress measures the consumer groups' lag, the outbox depth and the deadlines due: those
// at or before the pipeline watermark (and now), which the sweeper has still to fire.
func (o *Observer) Progress(ctx context.Context, now time.Time) (Progress, error) {
	var pr Progress
	var err error
	if pr.Lag, _, err = o.ServiceLags(ctx); err != nil {
		return pr, err
	}
	wm, known, err := o.Watermark(ctx)
	if err != nil {
		return pr, err
	}
	dueBy := "-inf"
	if known {
		dueBy = strconv.FormatInt(min(now.UnixMilli(), wm.UnixMilli()), 10)
	}
	pipe := o.Redis.Pipeline()
	lens := make([]*redis.IntCmd, o.Keys.Shards())
	due := make([]*redis.IntCmd, o.Keys.Shards())
	for s := range o.Keys.Shards() {
		lens[s] = pipe.XLen(ctx, o.Keys.Outbox(s))
		due[s] = pipe.ZCount(ctx, o.Keys.Deadlines(s), "-inf", dueBy)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return pr, fmt.Errorf("reading outbox and deadlines: %w", err)
	}
	for s := range lens {
		pr.Outbox += lens[s].Val()
		pr.Due += due[s].Val()
	}
	return pr, nil
}

// WaitDone polls Progress until it is done twice in a row a second apart (the sweeper may
// still be between a pass and its outbox write), or timeout passes. check runs every poll
// (e.g. to fail fast when a service died); its error ends the wait.
func (o *Observer) WaitDone(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	done := 0
	var last Progress
	for {
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		pr, err := o.Progress(ctx, time.Now())
		if err == nil {
			last = pr
			if pr.Done() {
				done++
			} else {
				done = 0
			}
			if done >= 2 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pipeline %s not done after %s: %s (last error: %w)", o.Keys.Namespace(), timeout, last, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// State returns every customer's stored state in its text view (state.Current.View), from
// every master of a Redis Cluster.
func (o *Observer) State(ctx context.Context) (map[string]map[string]string, error) {
	var mu sync.Mutex
	out := map[string]map[string]string{}
	err := state.ForEachCustomer(ctx, o.Redis, o.Keys, func(id string, cur state.Current) {
		view := cur.View()
		mu.Lock()
		out[id] = view
		mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("reading customer states: %w", err)
	}
	return out, nil
}

// OutputTopics are the physical derived-event topics.
func (o *Observer) OutputTopics() []string {
	var out []string
	for _, t := range event.DerivedTopics() {
		out = append(out, t+o.Suffix)
	}
	return out
}

// Positions returns the end offsets of topics.
func Positions(ctx context.Context, admin *stream.Admin, topics ...string) (map[string]stream.Offsets, error) {
	out := make(map[string]stream.Offsets, len(topics))
	for _, t := range topics {
		end, err := admin.EndOffsets(ctx, t)
		if err != nil {
			return nil, err
		}
		out[t] = end
	}
	return out, nil
}

// Derived is one derived event read back from an output topic.
type Derived struct {
	Topic     string
	Partition int
	Offset    int64
	// Time is the record's Kafka timestamp.
	Time     time.Time
	ID       string
	Customer string
	Source   event.Source
	Value    []byte
	Event    event.Event
}

// Identify returns the id, customer and source of a derived event.
func Identify(e event.Event) (id, customer string, src event.Source) {
	switch v := e.(type) {
	case event.TierChanged:
		return v.EventID, v.CustomerID, v.Source
	case event.ChurnRiskChanged:
		return v.EventID, v.CustomerID, v.Source
	case event.SegmentChanged:
		return v.EventID, v.CustomerID, v.Source
	}
	return "", "", event.Source{}
}

// ReadDerived reads and decodes the records of every partition of the given topics between
// from (inclusive; a missing partition means its start) and to (exclusive), in offset order
// per partition.
func ReadDerived(ctx context.Context, admin *stream.Admin, c *codec.Codec, from, to map[string]stream.Offsets) ([]Derived, error) {
	var (
		mu   sync.Mutex
		out  []Derived
		wg   sync.WaitGroup
		errs []error
	)
	for topic, ends := range to {
		for p, end := range ends {
			start := from[topic][p]
			if start >= end {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch := make(chan stream.Message, 1024)
				var part []Derived
				var decodeErr error
				go func() {
					defer close(ch)
					if err := admin.ReadRange(ctx, topic, p, start, end, ch); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}()
				for m := range ch {
					ev, err := c.Decode(ctx, m.Value)
					if err != nil {
						decodeErr = fmt.Errorf("%s/%d@%d does not decode: %w", topic, p, m.Offset, err)
						continue
					}
					id, customer, src := Identify(ev)
					part = append(part, Derived{Topic: topic, Partition: p, Offset: m.Offset, Time: m.Time, ID: id,
						Customer: customer, Source: src, Value: m.Value, Event: ev})
				}
				mu.Lock()
				out = append(out, part...)
				if decodeErr != nil {
					errs = append(errs, decodeErr)
				}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// FieldDiff lists the fields whose values differ between two stored states, as
// "field: a vs b", in field order.
func FieldDiff(a, b map[string]string) []string {
	all := maps.Clone(a)
	maps.Copy(all, b)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(all)) {
		if a[k] != b[k] {
			out = append(out, fmt.Sprintf("%s: %q vs %q", k, a[k], b[k]))
		}
	}
	return out
}
