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
	// MaxTimestampAhead bounds how far ahead of the broker's clock a producer may stamp a
	// record (message.timestamp.after.max.ms, with message.timestamp.type CreateTime): the
	// broker refuses a record stamped later with INVALID_TIMESTAMP. Zero leaves the broker's default (1 hour on Kafka 4, unbounded before
	// Kafka 3.6). Input topics set it: validation takes a record's timestamp as "now" for its
	// future-skew check, which a producer's clock must not be able to move.
	MaxTimestampAhead time.Duration
	// Config holds other topic-level settings; retention.ms is set with Retention and
	// message.timestamp.after.max.ms with MaxTimestampAhead.
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

// Topic-level timestamp settings.
const (
	// TimestampTypeConfig says whose clock stamps a topic's records.
	TimestampTypeConfig = "message.timestamp.type"
	// TimestampAheadConfig bounds how far ahead of the broker a CreateTime stamp may be.
	TimestampAheadConfig = "message.timestamp.after.max.ms"
	// CreateTime keeps the timestamp the producer set (Kafka's default).
	CreateTime = "CreateTime"
	// LogAppendTime has the broker stamp records when it appends them. kafka-go (v0.4.51)
	// does not read that stamp: it reports the producer's timestamp of a record on such a
	// topic, which the broker then no longer checks. The pipeline's topics therefore keep
	// CreateTime and bound it with TimestampAheadConfig.
	LogAppendTime = "LogAppendTime"
)

// DefaultMaxTimestampAhead is the MaxTimestampAhead of the input topics: producers stamp
// records with their own clock (kafka-go's writer, at the write), and a clock more than a
// minute ahead of the broker's has its writes refused instead of moving validation's "now".
const DefaultMaxTimestampAhead = time.Minute

// ErrProducerClock is returned by CheckProducerClock for a topic where a producer's clock can
// set its records' timestamps further ahead of the broker's clock than allowed.
var ErrProducerClock = errors.New("a producer's clock can stamp records ahead of the broker's, moving validation's \"now\"")

// TimestampSettings are a topic's timestamp settings as the broker reports them.
type TimestampSettings struct {
	// Type is CreateTime or LogAppendTime.
	Type string
	// MaxAhead is message.timestamp.after.max.ms; negative when the broker has no such
	// setting (before Kafka 3.6: unbounded).
	MaxAhead time.Duration
}

// ProducerClockFix is the command an operator runs to bound the producer's clock on an
// existing topic as the services create input topics; records already on it keep their
// timestamps.
func ProducerClockFix(topic string, maxAhead time.Duration) string {
	return "kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name " + topic +
		" --add-config " + TimestampTypeConfig + "=" + CreateTime + "," + TimestampAheadConfig + "=" +
		strconv.FormatInt(maxAhead.Milliseconds(), 10)
}

// EnsureTopics creates the topics that do not exist yet; existing ones are left as they are
// (their partition count, retention and timestamp settings are not changed; TopicRetention
// and TopicTimestamps read the latter two). It is safe to run from every service at start-up,
// concurrently. It retries while the cluster has no controller yet (a broker still starting),
// and any other transient error, whether of the call or of one topic, and returns once every
// partition of the topics has a leader that answers.
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
		_, hasType := s.Config[TimestampTypeConfig]
		if _, ok := s.Config[TimestampAheadConfig]; ok || hasType && s.MaxTimestampAhead > 0 {
			return fmt.Errorf("topic %s: set %s and %s with TopicSpec.MaxTimestampAhead", s.Name, TimestampTypeConfig, TimestampAheadConfig)
		}
		if s.MaxTimestampAhead < 0 || s.MaxTimestampAhead > 0 && s.MaxTimestampAhead < time.Millisecond {
			return fmt.Errorf("topic %s: MaxTimestampAhead %s is negative or below Kafka's resolution of 1ms", s.Name, s.MaxTimestampAhead)
		}
		if s.Retention > 0 && s.Retention < time.Millisecond {
			return fmt.Errorf("topic %s: retention %s is below Kafka's resolution of 1ms", s.Name, s.Retention)
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		if s.Retention != 0 {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: retentionMS(s.Retention)})
		}
		if s.MaxTimestampAhead > 0 { // the bound applies to producers' stamps, whatever the broker's default type
			tc.ConfigEntries = append(tc.ConfigEntries,
				kafka.ConfigEntry{ConfigName: TimestampTypeConfig, ConfigValue: CreateTime},
				kafka.ConfigEntry{ConfigName: TimestampAheadConfig, ConfigValue: strconv.FormatInt(s.MaxTimestampAhead.Milliseconds(), 10)})
		}
		for k, v := range s.Config {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, tc)
		names = append(names, s.Name)
	}
	if err := a.retry(ctx, fmt.Sprintf("creating topics %v", names), func(ctx context.Context) error {
		return a.createTopics(ctx, req)
	}); err != nil {
		return err
	}
	// A new topic's partitions answer NOT_LEADER until the broker has taken up their
	// leadership, for longer than a producer's retries on a busy broker: wait until each
	// answers a ListOffsets, which only a partition's leader does.
	for _, name := range names {
		if _, err := a.EndOffsets(ctx, name); err != nil {
			return fmt.Errorf("waiting for the leaders of topic %s: %w", name, err)
		}
	}
	return nil
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
	cfg, err := a.topicConfig(ctx, topic, "retention.ms")
	if err != nil {
		return 0, err
	}
	v, ok := cfg["retention.ms"]
	if !ok {
		return 0, fmt.Errorf("topic %s: retention.ms not in the broker's answer", topic)
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("topic %s: retention.ms %q: %w", topic, v, err)
	}
	if ms < 0 {
		return RetentionInfinite, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// TopicTimestamps returns the timestamp settings of topic as the broker reports them (its own
// settings or the broker's defaults).
func (a *Admin) TopicTimestamps(ctx context.Context, topic string) (TimestampSettings, error) {
	cfg, err := a.topicConfig(ctx, topic, TimestampTypeConfig, TimestampAheadConfig)
	if err != nil {
		return TimestampSettings{}, err
	}
	ts := TimestampSettings{Type: cfg[TimestampTypeConfig], MaxAhead: -1}
	if ts.Type == "" {
		return ts, fmt.Errorf("topic %s: %s not in the broker's answer", topic, TimestampTypeConfig)
	}
	if v, ok := cfg[TimestampAheadConfig]; ok {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return ts, fmt.Errorf("topic %s: %s %q: %w", topic, TimestampAheadConfig, v, err)
		}
		ts.MaxAhead = time.Duration(ms) * time.Millisecond
	}
	return ts, nil
}

// Bounded reports whether a producer's clock can put records at most maxAhead ahead of the
// broker's: the topic keeps producers' stamps (CreateTime, the one kafka-go reads) and the
// broker refuses those further ahead than maxAhead.
func (ts TimestampSettings) Bounded(maxAhead time.Duration) bool {
	return ts.Type == CreateTime && ts.MaxAhead >= 0 && ts.MaxAhead <= maxAhead
}

// CheckProducerClock reports, wrapping ErrProducerClock, when a producer can stamp topic's
// records more than maxAhead ahead of the broker's clock (see TimestampSettings.Bounded);
// other errors say the settings could not be read. Consumer services call it for their input
// topics at start-up and warn; `loyaltyctl status` flags such topics.
func (a *Admin) CheckProducerClock(ctx context.Context, topic string, maxAhead time.Duration) error {
	ts, err := a.TopicTimestamps(ctx, topic)
	if err != nil {
		return err
	}
	if ts.Bounded(maxAhead) {
		return nil
	}
	ahead := "unbounded"
	if ts.MaxAhead >= 0 {
		ahead = ts.MaxAhead.String()
	}
	return fmt.Errorf("topic %s (%s=%s, records up to %s ahead accepted): %w; fix it with: %s", topic, TimestampTypeConfig, ts.Type,
		ahead, ErrProducerClock, ProducerClockFix(topic, maxAhead))
}

// topicConfig returns the values of the named configuration entries of topic as the broker
// reports them; a name the broker does not know is absent.
func (a *Admin) topicConfig(ctx context.Context, topic string, names ...string) (map[string]string, error) {
	var values map[string]string
	err := a.retry(ctx, "describing the configuration of "+topic, func(ctx context.Context) error {
		resp, err := a.api.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: names}}})
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
			values = make(map[string]string, len(names))
			for _, e := range r.ConfigEntries {
				values[e.ConfigName] = e.ConfigValue
			}
			return nil
		}
		return fmt.Errorf("topic %s: not in the broker's answer", topic)
	})
	return values, err
}

// partitionLabel keeps label formatting in one place.
func partitionLabel(p int) string { return strconv.Itoa(p) }
