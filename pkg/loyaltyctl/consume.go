package loyaltyctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// consumableTopic maps the --topic of consume (any case) to its topic.
func consumableTopic(name string) (string, bool) {
	switch strings.ToLower(name) {
	case "tier-changes":
		return event.TopicTierChanges, true
	case "churn-risk":
		return event.TopicChurnRisk, true
	case "segment-changes":
		return event.TopicSegmentChanges, true
	case "actions":
		return event.TopicActions, true
	case "dlq":
		return event.TopicDeadLetter, true
	}
	return inputTopic(strings.ToLower(name))
}

// consumeOptions are the flags of consume.
type consumeOptions struct {
	fromBeginning bool
	maxRecords    int
	timeout       time.Duration
}

func consumeCommand() *cobra.Command {
	var topicName string
	var o consumeOptions
	cmd := &cobra.Command{
		Use:   "consume --topic tier-changes|churn-risk|segment-changes|actions|dlq",
		Short: "print decoded records of a topic as JSON lines (records are JSON whatever --output says)",
		Args:  cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			topic, ok := consumableTopic(topicName)
			if !ok {
				return Usagef("--topic %q: want tier-changes, churn-risk, segment-changes, actions or dlq", topicName)
			}
			return runConsume(cmd.Context(), topic, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&topicName, "topic", "", "tier-changes, churn-risk, segment-changes, actions or dlq (or an input topic)")
	fs.BoolVar(&o.fromBeginning, "from-beginning", false, "start at the oldest record instead of the newest")
	fs.IntVar(&o.maxRecords, "max", 0, "stop after this many records (0: no limit)")
	fs.DurationVar(&o.timeout, "timeout", 0, "stop after this long (0: run until interrupted)")
	return cmd
}

func runConsume(ctx context.Context, topic string, o consumeOptions, stdout, stderr io.Writer) error {
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	c, err := env.codec(ctx)
	if err != nil {
		return err
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
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
			if o.maxRecords > 0 && printed >= o.maxRecords {
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
		if o.maxRecords > 0 && printed >= o.maxRecords {
			stop()
		}
		return nil
	})
	// A group of its own each time: reading never moves another reader's offsets.
	group := fmt.Sprintf("loyaltyctl-consume-%d", time.Now().UnixNano())
	consumer, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: env.cfg.KafkaBrokers, GroupID: group, Topics: []string{topic + env.cfg.TopicSuffix},
		StartFromLatest: !o.fromBeginning, Security: env.cfg.KafkaSecurity, BatchSize: 100, Linger: 10 * time.Millisecond}, handler, nil, env.log)
	if err != nil {
		return err
	}
	return consumer.Run(ctx)
}
