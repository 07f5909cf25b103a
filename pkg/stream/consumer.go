package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// ConsumerConfig configures a consumer-group consumer.
type ConsumerConfig struct {
	Brokers []string
	GroupID string
	Topics  []string
	// BatchSize is the most records handed to the handler at once.
	BatchSize int
	// Linger is how long to wait for more records after the first one of a batch arrived.
	Linger time.Duration
	// MaxFetchBytes bounds one fetch response: a request covers every partition of the
	// consumer led by one broker, each allowed an equal share (at least 64 KiB).
	MaxFetchBytes int
	// MaxWait bounds how long the broker holds a fetch that has no data.
	MaxWait time.Duration
	// StartFromLatest makes a group with no committed offsets start at the end instead of
	// the beginning of each partition.
	StartFromLatest bool
	SessionTimeout  time.Duration
	// CommitInterval, when positive, hands each handled batch's offsets to the reader, which
	// commits them at most this often and when its partitions are reassigned or it closes
	// (kafka-go's CommitInterval); the next batch does not wait for the broker. Zero commits
	// each batch before fetching the next. A record handled but not committed yet is
	// redelivered after a crash, and the state store skips it as applied.
	CommitInterval time.Duration
	// DrainTimeout bounds how long an in-flight batch may still run after shutdown began.
	DrainTimeout time.Duration
	// RetryBackoffMax caps the pause between retries of a failing batch.
	RetryBackoffMax time.Duration
	Security        Security
	// Pacer, when set, aligns the consumer's partitions in event time (see Pacer); nil
	// handles records as they are fetched.
	Pacer Pacer
	// MaxHeld bounds the records a paced consumer holds back (0: 100000). At the bound it
	// stops fetching; if the pipeline waits for one of its own partitions meanwhile, it lets
	// the earliest held records go rather than stall (logged).
	MaxHeld int
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int
}

// Pacer aligns a consumer's partitions in event time, as Flink's watermark alignment does
// for splits: records more than a lead ahead of the pipeline's watermark are held back, per
// partition and in order, while the consumer keeps fetching the partitions that are behind.
// A held record is neither handled nor committed; the consumer stays in its group.
type Pacer interface {
	// TimeOf returns a record's event time.
	TimeOf(m Message) time.Time
	// Admit returns the event time up to which held records may be handled now, given the
	// earliest time each partition holds (heads, which it may report so that the partitions
	// the pipeline waits for can move on). ownHolder is true when the pipeline waits for a
	// partition of this consumer's own: it must fetch more, whatever it holds.
	Admit(ctx context.Context, heads map[TopicPartition]time.Time) (limit time.Time, ownHolder bool, err error)
}

// DefaultBatchSize is the default BatchSize. Live a batch is cut by its Linger long before
// it is full; in a backlog a larger batch holds more events of each customer, so a customer is
// written once for several (docs/design.md, "Cost per event": 4,000 against 1,000 wrote a
// third fewer logins states, for about a fifth more events a second).
const DefaultBatchSize = 4000

// WithDefaults fills unset fields with values tuned for throughput on small machines.
func (c ConsumerConfig) WithDefaults() ConsumerConfig {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Linger == 0 {
		c.Linger = 50 * time.Millisecond
	}
	if c.MaxFetchBytes == 0 {
		c.MaxFetchBytes = 8 << 20
	}
	if c.MaxWait == 0 {
		c.MaxWait = 500 * time.Millisecond
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.RetryBackoffMax == 0 {
		c.RetryBackoffMax = 10 * time.Second
	}
	if c.MaxHeld == 0 {
		c.MaxHeld = 100_000
	}
	return c
}

// Validate reports the first problem, naming the field.
func (c ConsumerConfig) Validate() error {
	if err := validateBrokers(c.Brokers); err != nil {
		return err
	}
	switch {
	case c.GroupID == "":
		return errors.New("GroupID: required")
	case len(c.Topics) == 0:
		return errors.New("Topics: at least one topic is required")
	case c.BatchSize < 1 || c.BatchSize > 100_000:
		return fmt.Errorf("BatchSize: %d is not in 1..100000", c.BatchSize)
	case c.Linger < 0 || c.Linger > time.Minute:
		return fmt.Errorf("Linger: %s is not in 0..1m", c.Linger)
	case c.MaxFetchBytes < 1024:
		return fmt.Errorf("MaxFetchBytes: %d is below 1024", c.MaxFetchBytes)
	case c.CommitInterval < 0 || c.CommitInterval > 10*time.Second:
		return fmt.Errorf("CommitInterval: %s is not in 0..10s", c.CommitInterval)
	case c.DrainTimeout <= 0:
		return errors.New("DrainTimeout: must be positive")
	}
	return c.Security.Validate()
}

// Consumer reads a consumer group's topics in micro-batches and commits each batch's offsets
// only after its handler returned nil.
type Consumer struct {
	cfg     ConsumerConfig
	reader  groupReader
	handler Handler
	metrics *Metrics
	log     *zap.Logger
}

// groupReader is what a Consumer reads its group's records with: a groupFetcher (kafka-go's
// Reader has the same methods).
type groupReader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
	Close() error
}

// NewConsumer validates cfg (after WithDefaults) and joins the group in the background (see
// groupFetcher). metrics may be nil.
func NewConsumer(cfg ConsumerConfig, handler Handler, metrics *Metrics, log *zap.Logger) (*Consumer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("consumer config: %w", err)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	reader, err := newGroupFetcher(cfg, log)
	if err != nil {
		return nil, err
	}
	metrics.requests.add(reader)
	return &Consumer{cfg: cfg, reader: reader, handler: handler, metrics: metrics, log: log}, nil
}

// Run consumes until ctx is cancelled, then finishes and commits the in-flight batch (within
// DrainTimeout) and closes the reader. It returns nil on a clean shutdown.
func (c *Consumer) Run(ctx context.Context) error {
	defer func() {
		if err := c.reader.Close(); err != nil {
			c.log.Warn("closing reader", zap.Error(err))
		}
	}()
	if c.cfg.Pacer != nil {
		return c.runPaced(ctx)
	}
	fetchBackoff := 100 * time.Millisecond
	for {
		msgs, err := c.fetchBatch(ctx)
		if err != nil && len(msgs) == 0 {
			if ctx.Err() != nil {
				return nil
			}
			if !Retriable(err) {
				return fmt.Errorf("fetching: %w", err)
			}
			// Leadership moving (a broker just started or restarted, a topic just created) or
			// a broker too busy to answer: the reader re-resolves the leader by itself, so
			// wait and fetch again instead of exiting and crash-looping.
			c.metrics.fetchErrors.Inc()
			c.log.Warn("fetch failed with a transient error; retrying", zap.Error(err), zap.Duration("backoff", fetchBackoff))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(fetchBackoff):
			}
			fetchBackoff = min(fetchBackoff*2, c.cfg.RetryBackoffMax)
			continue
		}
		fetchBackoff = 100 * time.Millisecond
		if len(msgs) == 0 {
			continue
		}
		// The batch is finished even if shutdown begins now: drain, do not abandon.
		work, cancel := c.drainContext(ctx)
		err = c.handle(ctx, work, msgs)
		if err == nil {
			c.commit(work, msgs)
		}
		cancel()
		if err != nil || ctx.Err() != nil {
			return c.stopped(ctx, err)
		}
	}
}

// drainContext is the context a batch runs under. Shutdown does not cancel it: from the moment
// ctx ends the batch has DrainTimeout to finish and commit. Before that it has no deadline, so
// an outage of Redis or Kafka of any length is waited out (handle retries the batch with
// backoff, /readyz reports the dependency down) instead of failing the batch and making the
// service exit into a crash loop.
func (c *Consumer) drainContext(ctx context.Context) (context.Context, context.CancelFunc) {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.DrainTimeout, cancel) })
	return work, func() { stop(); cancel() }
}

// stopped is what Run returns after a batch once shutdown began: nil, since a batch that did
// not succeed before the drain timeout (an outage still going on) is simply not committed and
// goes to the partition's next owner. err without a shutdown cannot happen (handle retries
// until one of the two) but is returned as it is.
func (c *Consumer) stopped(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	if err != nil {
		c.log.Warn("stopped with a batch not handled; it is redelivered to the partition's next owner", zap.Error(err))
	}
	return nil
}

// fetchBatch blocks for the first record, then gathers more until BatchSize or Linger.
func (c *Consumer) fetchBatch(ctx context.Context) ([]Message, error) {
	return c.fetchUpTo(ctx, c.cfg.BatchSize)
}

// fetchUpTo blocks for the first record, then gathers more until n or Linger.
func (c *Consumer) fetchUpTo(ctx context.Context, n int) ([]Message, error) {
	first, err := c.reader.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	msgs := make([]Message, 0, n)
	msgs = append(msgs, c.convert(first))
	lingerCtx, cancel := context.WithTimeout(ctx, c.cfg.Linger)
	defer cancel()
	for len(msgs) < n {
		m, err := c.reader.FetchMessage(lingerCtx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
				return msgs, nil
			}
			return msgs, err
		}
		msgs = append(msgs, c.convert(m))
	}
	return msgs, nil
}

func (c *Consumer) convert(m kafka.Message) Message {
	var headers []Header
	if len(m.Headers) > 0 {
		headers = make([]Header, len(m.Headers))
		for i, h := range m.Headers {
			headers[i] = Header{Key: h.Key, Value: h.Value}
		}
	}
	msg := Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, HighWaterMark: m.HighWaterMark,
		Key: m.Key, Value: m.Value, Headers: headers, Time: m.Time}
	c.metrics.observeLag(msg)
	return msg
}

// handle runs the handler until it succeeds. A failing batch (Redis or Kafka unreachable) is
// retried with capped exponential backoff; it is never skipped, and shutdown stops the retries
// without committing, so the batch is redelivered to whoever owns the partition next.
func (c *Consumer) handle(runCtx, work context.Context, msgs []Message) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := c.handler.HandleBatch(work, NewBatch(msgs))
		if err == nil {
			if attempt > 1 {
				c.log.Info("batch succeeded after retries", zap.Int("attempts", attempt))
			}
			return nil
		}
		c.log.Warn("batch failed; retrying", zap.Error(err), zap.Int("attempt", attempt),
			zap.Int("records", len(msgs)), zap.Duration("backoff", backoff))
		select {
		case <-runCtx.Done():
			return fmt.Errorf("giving up on batch at shutdown: %w", err)
		case <-work.Done():
			return fmt.Errorf("batch not done within the drain timeout: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.RetryBackoffMax)
	}
}

// commit commits the highest offset of each partition in the batch. A failed commit (say,
// the partition moved to another member in a rebalance) is logged, not fatal: the records
// are redelivered and the state store skips them as already applied.
func (c *Consumer) commit(ctx context.Context, msgs []Message) {
	type tp struct {
		topic     string
		partition int
	}
	last := map[tp]kafka.Message{}
	for _, m := range msgs {
		k := tp{m.Topic, m.Partition}
		if cur, ok := last[k]; !ok || m.Offset > cur.Offset {
			last[k] = kafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
		}
	}
	commits := make([]kafka.Message, 0, len(last))
	for _, m := range last {
		commits = append(commits, m)
	}
	if err := c.reader.CommitMessages(ctx, commits...); err != nil {
		c.metrics.commitErrors.Inc()
		c.log.Warn("committing offsets", zap.Error(err))
	}
}
