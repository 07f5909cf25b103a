package devharness

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// tally follows the derived events the pipeline publishes: each customer's current tier, churn
// level and segment, counts of changes, dead letters, and the latest churn alerts.
type tally struct {
	customers int

	mu      sync.Mutex
	tier    map[string]event.Tier
	churn   map[string]event.ChurnLevel
	segment map[string]string
	counts  tallyCounts
	alerts  []churnAlert // newest last, at most maxAlerts
	// changed is when the last record arrived.
	changed time.Time
}

// tallyCounts counts output records.
type tallyCounts struct {
	TierChanges    map[event.TierDirection]int64
	ChurnChanges   map[event.ChurnLevel]int64 // by the level changed to
	SegmentChanges int64
	DeadLetters    int64
	// Actions counts the notifier's decisions by kind and by outcome.
	Actions  map[event.ActionKind]int64
	Outcomes map[event.ActionOutcome]int64
}

// churnAlert is a churn-risk change towards more risk.
type churnAlert struct {
	Seq      int64 // position among all alerts, for the progress report
	Customer string
	At       time.Time
	From, To event.ChurnLevel
	Score    float64
	Reasons  []string
}

const maxAlerts = 5

func newTally(customers int) *tally {
	return &tally{customers: customers, tier: map[string]event.Tier{}, churn: map[string]event.ChurnLevel{},
		segment: map[string]string{}, counts: tallyCounts{TierChanges: map[event.TierDirection]int64{},
			ChurnChanges: map[event.ChurnLevel]int64{}, Actions: map[event.ActionKind]int64{}, Outcomes: map[event.ActionOutcome]int64{}}}
}

var churnRank = map[event.ChurnLevel]int{event.ChurnLow: 0, event.ChurnMedium: 1, event.ChurnHigh: 2}

func (t *tally) add(e event.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.changed = time.Now()
	switch v := e.(type) {
	case event.TierChanged:
		t.counts.TierChanges[v.Direction]++
		t.tier[v.CustomerID] = v.ToTier
	case event.ChurnRiskChanged:
		t.counts.ChurnChanges[v.ToLevel]++
		t.churn[v.CustomerID] = v.ToLevel
		if churnRank[v.ToLevel] > churnRank[v.FromLevel] {
			a := churnAlert{Customer: v.CustomerID, At: v.OccurredAt, From: v.FromLevel, To: v.ToLevel, Score: v.Score}
			for _, r := range v.Reasons {
				a.Reasons = append(a.Reasons, r.Message)
			}
			if n := len(t.alerts); n > 0 {
				a.Seq = t.alerts[n-1].Seq + 1
			}
			t.alerts = append(t.alerts, a)
			if len(t.alerts) > maxAlerts {
				t.alerts = t.alerts[1:]
			}
		}
	case event.SegmentChanged:
		t.counts.SegmentChanges++
		t.segment[v.CustomerID] = v.ToSegment
	case event.ActionDecided:
		t.counts.Actions[v.Kind]++
		t.counts.Outcomes[v.Outcome]++
	case event.DeadLetter:
		t.counts.DeadLetters++
	}
}

// tallySnapshot is the tally at one moment.
type tallySnapshot struct {
	tallyCounts
	Tiers    map[event.Tier]int64
	Churn    map[event.ChurnLevel]int64
	Segments map[string]int64
	Alerts   []churnAlert
}

// Derived is the number of derived events of all kinds.
func (s tallySnapshot) Derived() (tier, churn, segment int64) {
	for _, n := range s.TierChanges {
		tier += n
	}
	for _, n := range s.ChurnChanges {
		churn += n
	}
	return tier, churn, s.SegmentChanges
}

func (t *tally) snapshot() tallySnapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := tallySnapshot{Tiers: map[event.Tier]int64{}, Churn: map[event.ChurnLevel]int64{}, Segments: map[string]int64{},
		Alerts: append([]churnAlert(nil), t.alerts...)}
	s.TierChanges = maps.Clone(t.counts.TierChanges)
	s.ChurnChanges = maps.Clone(t.counts.ChurnChanges)
	s.SegmentChanges, s.DeadLetters = t.counts.SegmentChanges, t.counts.DeadLetters
	s.Actions, s.Outcomes = maps.Clone(t.counts.Actions), maps.Clone(t.counts.Outcomes)
	// Customers the pipeline never moved are where everyone starts: BRONZE and LOW.
	s.Tiers[event.TierBronze] = int64(t.customers)
	for _, tier := range t.tier {
		s.Tiers[tier]++
		s.Tiers[event.TierBronze]--
	}
	s.Churn[event.ChurnLow] = int64(t.customers)
	for _, level := range t.churn {
		s.Churn[level]++
		s.Churn[event.ChurnLow]--
	}
	for _, seg := range t.segment {
		s.Segments[seg]++
	}
	return s
}

// waitQuiet returns once no record has arrived for quiet, or after at most limit.
func (t *tally) waitQuiet(quiet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		t.mu.Lock()
		last := t.changed
		t.mu.Unlock()
		if time.Since(last) >= quiet {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newCollector returns a consumer of the derived-event topics, the notifier's decisions and the
// dead-letter topic that feeds t. The broker log is fresh, so the group reads everything the relay publishes.
// topic maps logical to physical topic names; dec decodes the records.
func newCollector(brokers []string, topic func(string) string, dec *codec.Codec, t *tally, log *zap.Logger) (*stream.Consumer, error) {
	topics := []string{topic(event.TopicTierChanges), topic(event.TopicChurnRisk), topic(event.TopicSegmentChanges),
		topic(event.TopicActions), topic(event.TopicDeadLetter)}
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: "loyalty-" + demoNamespace + "-watch",
		Topics: topics, Linger: 20 * time.Millisecond},
		stream.HandlerFunc(func(ctx context.Context, b *stream.Batch) error {
			for _, m := range b.Messages {
				e, err := dec.Decode(ctx, m.Value)
				if err != nil {
					// Not the demo's to dead-letter: report it and keep watching.
					log.Warn("undecodable output record", zap.String("topic", m.Topic), zap.Int64("offset", m.Offset), zap.Error(err))
					continue
				}
				t.add(e)
			}
			return nil
		}), nil, log.WithOptions(zap.IncreaseLevel(zap.ErrorLevel))) // the reader retries its timed-out fetches itself
	if err != nil {
		return nil, fmt.Errorf("creating the output collector: %w", err)
	}
	return c, nil
}
