package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	// Config holds topic-level settings such as retention.ms.
	Config map[string]string
}

// EnsureTopics creates the topics that do not exist yet; existing ones are left as they are
// (their partition count is not changed). It is safe to run from every service at start-up,
// concurrently. It retries while the cluster has no controller yet (a broker still starting),
// and any other transient error, whether of the call or of one topic.
func (a *Admin) EnsureTopics(ctx context.Context, specs ...TopicSpec) error {
	req := &kafka.CreateTopicsRequest{}
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		if s.Partitions < 1 || s.ReplicationFactor < 1 {
			return fmt.Errorf("topic %s: partitions and replication factor must be positive", s.Name)
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
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

// partitionLabel keeps label formatting in one place.
func partitionLabel(p int) string { return strconv.Itoa(p) }
