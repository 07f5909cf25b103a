package loyaltyctl

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

func init() {
	Register(Command{Name: "consume", Summary: "print decoded output records as JSON lines (--topic tier-changes|churn-risk|segment-changes|actions|dlq)", Run: runConsume})
}

var outputTopics = map[string]string{
	"tier-changes": event.TopicTierChanges, "churn-risk": event.TopicChurnRisk, "segment-changes": event.TopicSegmentChanges,
	"actions": event.TopicActions, "dlq": event.TopicDeadLetter,
	"purchases": event.TopicPurchases, "logins": event.TopicLogins, "feedback": event.TopicFeedback,
}

func runConsume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	topicName := fs.String("topic", "", "tier-changes, churn-risk, segment-changes, actions or dlq (or an input topic)")
	fromBeginning := fs.Bool("from-beginning", false, "start at the oldest record instead of the newest")
	maxRecords := fs.Int("max", 0, "stop after this many records (0: no limit)")
	timeout := fs.Duration("timeout", 0, "stop after this long (0: run until interrupted)")
	if err := fs.Parse(args); err != nil {
		return Usagef("%v", err)
	}
	topic, err := topicFromFlag(*topicName, outputTopics)
	if err != nil {
		return Usagef("--topic %q: want tier-changes, churn-risk, segment-changes, actions or dlq", *topicName)
	}
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	c, err := env.codec(ctx)
	if err != nil {
		return err
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	printed := 0
	enc := json.NewEncoder(stdout)
	handler := stream.HandlerFunc(func(ctx context.Context, b *stream.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range b.Messages {
			if *maxRecords > 0 && printed >= *maxRecords {
				stop()
				return nil
			}
			ev, err := c.Decode(ctx, m.Value)
			if err != nil {
				fmt.Fprintf(stderr, "%s/%d@%d: %v\n", m.Topic, m.Partition, m.Offset, err)
				continue
			}
			if err := enc.Encode(ev); err != nil {
				return err
			}
			printed++
		}
		if *maxRecords > 0 && printed >= *maxRecords {
			stop()
		}
		return nil
	})
	// A group of its own each time: reading never moves another reader's offsets.
	group := fmt.Sprintf("loyaltyctl-consume-%d", time.Now().UnixNano())
	consumer, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: env.cfg.KafkaBrokers, GroupID: group, Topics: []string{topic},
		StartFromLatest: !*fromBeginning, Security: env.cfg.KafkaSecurity, BatchSize: 100, Linger: 10 * time.Millisecond}, handler, nil, env.log)
	if err != nil {
		return err
	}
	return consumer.Run(ctx)
}
