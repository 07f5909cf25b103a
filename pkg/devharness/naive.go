package devharness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// The naive baseline of bench-e2e: the same scoring of the same input events, written the way
// a first kafka-go/go-redis program would be — one loop over a group reader of the three input
// topics that, per message,
// calls ReadMessage (which commits each message), HGETALL the customer's hash, applies the
// event, HSET the hash back (and HDEL the fields it no longer has, when there are any), and
// sends each derived event with its own WriteMessages on a
// default kafka.Writer. It has none of the pipeline's guarantees (no event-time order, no
// outbox, no dead letters): it only measures what the pipeline's I/O design is worth.

// NaiveResult is the baseline's part of the report.
type NaiveResult struct {
	// Events is how many input events the baseline applied within Seconds (it stops after
	// --naive-duration or when it has read every event); EventsPerSec their rate.
	Events       int64   `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	Derived      int64   `json:"derived_events"`
	// CPU is each process's CPU time over the baseline's run (the baseline runs inside the
	// benchmark process), per event it applied.
	CPU                   []ProcessCPU `json:"cpu"`
	MachineMicrosPerEvent float64      `json:"machine_cpu_us_per_event"`
	// Speedup is the pipeline's sustained throughput divided by the baseline's.
	Speedup float64 `json:"speedup"`
}

// naiveRun is one baseline run over the input topics (with suffix) of the benchmark.
type naiveRun struct {
	brokers  []string
	rdb      redisconn.Client
	codec    *codec.Codec
	policy   *scoring.Policy
	suffix   string
	prefix   string // the baseline's Redis keys
	outTopic string // where its derived events go
	scorer   *pipeline.Scorer
}

// run applies the input topics' events until total are applied or d has passed.
func (n *naiveRun) run(ctx context.Context, total int, d time.Duration) (applied, derived int64, elapsed time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	// The default Writer, on a transport of its own with the default transport's settings:
	// the process-wide one caches the cluster's metadata for six seconds, so in the second run
	// of a series (bench-e2e --runs) it did not know this run's new output topic yet, and the
	// writes failed with Unknown Topic Or Partition. A baseline run as a process of its own
	// starts with an empty cache too.
	transport := &kafka.Transport{Dial: (&net.Dialer{Timeout: 3 * time.Second}).DialContext}
	defer transport.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(n.brokers...), Topic: n.outTopic, Transport: transport}
	defer w.Close()
	group := "naive-" + randomName("g")
	var topics []string
	for _, st := range event.Streams() {
		if st.Role == event.RoleInput {
			topics = append(topics, st.Topic+n.suffix)
		}
	}
	// One reader of the three topics in one loop: a customer's events are applied one at a
	// time, as its read-modify-write needs.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: n.brokers, GroupID: group, GroupTopics: topics, StartOffset: kafka.FirstOffset})
	defer r.Close()
	start := time.Now()
	for applied < int64(total) {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				err = nil // the run's time is up
			}
			return applied, derived, time.Since(start), err
		}
		k, err := n.apply(ctx, w, m)
		if err != nil {
			if ctx.Err() != nil {
				err = nil
			}
			return applied, derived, time.Since(start), err
		}
		applied, derived = applied+1, derived+k
	}
	return applied, derived, time.Since(start), nil
}

// apply is the per-message work: decode, HGETALL, apply, HSET, one WriteMessages per change.
func (n *naiveRun) apply(ctx context.Context, w *kafka.Writer, m kafka.Message) (int64, error) {
	ev, err := n.codec.Decode(ctx, m.Value)
	if err != nil {
		return 0, fmt.Errorf("naive baseline: decoding: %w", err)
	}
	in, ok := ev.(event.Input)
	if !ok {
		return 0, fmt.Errorf("naive baseline: %T is not an input event", ev)
	}
	se := pipeline.ScoringEvent(ingest.Record{Message: stream.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}, Event: in})
	key := n.prefix + se.CustomerID
	cur, err := n.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return 0, err
	}
	var st scoring.State
	if len(cur) > 0 {
		if st, err = scoring.UnmarshalFields(cur); err != nil {
			return 0, err
		}
	}
	next, changes, err := scoring.Apply(st, se, n.policy)
	if errors.Is(err, scoring.ErrInvalidEvent) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	fields := next.MarshalFields()
	args := make([]any, 0, 2*len(fields))
	for f, v := range fields {
		args = append(args, f, v)
	}
	if err := n.rdb.HSet(ctx, key, args...).Err(); err != nil {
		return 0, err
	}
	// A field the new state no longer has (a shorter list) must go, or the hash no longer
	// decodes.
	var stale []string
	for f := range cur {
		if _, ok := fields[f]; !ok {
			stale = append(stale, f)
		}
	}
	if len(stale) > 0 {
		if err := n.rdb.HDel(ctx, key, stale...).Err(); err != nil {
			return 0, err
		}
	}
	for _, c := range changes {
		out, err := n.scorer.OutputEvent(c)
		if err != nil {
			return 0, err
		}
		v, err := n.codec.Encode(out)
		if err != nil {
			return 0, err
		}
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(se.CustomerID), Value: v}); err != nil {
			return 0, fmt.Errorf("naive baseline: writing a derived event: %w", err)
		}
	}
	return int64(len(changes)), nil
}

// deleteKeys removes the baseline's keys, on every master (concurrently on a Cluster, where
// each key is unlinked on its own: one command may not span slots). Best effort: what it
// leaves is in a namespace of its own.
func (n *naiveRun) deleteKeys(ctx context.Context) {
	_ = state.ForEachMaster(ctx, n.rdb, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, n.prefix+"*", 1000).Iterator()
		pipe := c.Pipeline()
		for iter.Next(ctx) {
			pipe.Unlink(ctx, iter.Val())
			if pipe.Len() == 500 {
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
		}
		if pipe.Len() > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
		return iter.Err()
	})
}
