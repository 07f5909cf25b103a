package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	// Retention is how long the topic keeps records (its retention.ms): zero leaves the
	// broker's default, RetentionInfinite keeps them forever.
	Retention time.Duration
	// Config holds other topic-level settings; retention.ms is set with Retention.
	Config map[string]string
}

// RetentionInfinite is the Retention of a topic that never deletes records (retention.ms -1).
const RetentionInfinite time.Duration = -1

// retentionMS is d as a retention.ms value.
func retentionMS(d time.Duration) string {
	if d < 0 {
		return "-1"
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// EnsureTopics creates the topics that do not exist yet; existing ones are left as they are
// (their partition count and retention are not changed; TopicRetention reads the latter). It is safe to run from every service at start-up,
// concurrently. It retries while the cluster has no controller yet (a broker still starting),
// and any other transient error, whether of the call or of one topic.
func (a *Admin) EnsureTopics(ctx context.Context, specs ...TopicSpec) error {
	req := &kafka.CreateTopicsRequest{}
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		if s.Partitions < 1 || s.ReplicationFactor < 1 {
			return fmt.Errorf("topic %s: partitions and replication factor must be positive", s.Name)
		}
		if _, ok := s.Config["retention.ms"]; ok {
			return fmt.Errorf("topic %s: set retention.ms with TopicSpec.Retention", s.Name)
		}
		if s.Retention > 0 && s.Retention < time.Millisecond {
			return fmt.Errorf("topic %s: retention %s is below Kafka's resolution of 1ms", s.Name, s.Retention)
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		if s.Retention != 0 {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: retentionMS(s.Retention)})
		}
		for k, v := range s.Config {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, tc)
		names = append(names, s.Name)
	}
	return a.retry(ctx, fmt.Sprintf("creating topics %v", names), func(ctx context.Context) error {
		return a.createTopics(ctx, req)
	})
}

// createTopics sends one CreateTopics request. The per-topic errors are joined; the join is
// retriable only when every one of them is (a topic that can never be created fails at once).
func (a *Admin) createTopics(ctx context.Context, req *kafka.CreateTopicsRequest) error {
	resp, err := a.api.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("creating topics: %w", err)
	}
	var retriable, fatal []error
	for topic, terr := range resp.Errors {
		if terr == nil || errors.Is(terr, kafka.TopicAlreadyExists) {
			continue
		}
		if Retriable(terr) {
			retriable = append(retriable, fmt.Errorf("creating topic %s: %w", topic, terr))
		} else {
			fatal = append(fatal, fmt.Errorf("creating topic %s: %w", topic, terr))
		}
	}
	if len(fatal) > 0 {
		return errors.Join(append(fatal, retriable...)...)
	}
	return errors.Join(retriable...)
}

// PartitionCount returns the number of partitions of topic. The Admin answers it from its
// cached cluster metadata (refreshed every few seconds, and after EnsureTopics); a topic
// it does not know yet is retried as UnknownTopicOrPartition until the cache catches up.
func (a *Admin) PartitionCount(ctx context.Context, topic string) (int, error) {
	var n int
	err := a.retry(ctx, "reading metadata of "+topic, func(ctx context.Context) error {
		meta, err := a.api.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil {
			return fmt.Errorf("reading metadata of %s: %w", topic, err)
		}
		for _, t := range meta.Topics {
			if t.Name == topic {
				if t.Error != nil {
					return fmt.Errorf("topic %s: %w", topic, t.Error)
				}
				n = len(t.Partitions)
				return nil
			}
		}
		return fmt.Errorf("topic %s: not in metadata", topic)
	})
	return n, err
}

// TopicRetention returns the retention.ms of topic as the broker reports it (its own setting
// or the broker's default): RetentionInfinite for -1. Operators and tests use it to check
// that a topic keeps its records as long as replays need.
func (a *Admin) TopicRetention(ctx context.Context, topic string) (time.Duration, error) {
	var d time.Duration
	err := a.retry(ctx, "describing the configuration of "+topic, func(ctx context.Context) error {
		resp, err := a.api.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"retention.ms"}}}})
		if err != nil {
			return fmt.Errorf("describing the configuration of %s: %w", topic, err)
		}
		for _, r := range resp.Resources {
			if r.ResourceName != topic {
				continue
			}
			if r.Error != nil {
				return fmt.Errorf("topic %s: %w", topic, r.Error)
			}
			for _, e := range r.ConfigEntries {
				if e.ConfigName != "retention.ms" {
					continue
				}
				ms, err := strconv.ParseInt(e.ConfigValue, 10, 64)
				if err != nil {
					return fmt.Errorf("topic %s: retention.ms %q: %w", topic, e.ConfigValue, err)
				}
				if ms < 0 {
					d = RetentionInfinite
				} else {
					d = time.Duration(ms) * time.Millisecond
				}
				return nil
			}
		}
		return fmt.Errorf("topic %s: retention.ms not in the broker's answer", topic)
	})
	return d, err
}

// partitionLabel keeps label formatting in one place.
func partitionLabel(p int) string { return strconv.Itoa(p) }
