package stream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/produce"
	"go.uber.org/zap"
)

// Compression is a Kafka record batch codec (kafka-go's), for the packages that configure
// producers without using kafka-go themselves.
type Compression = compress.Compression

// ParseCompression reads a codec name as KAFKA_COMPRESSION takes it: none, gzip, snappy, lz4
// or zstd.
func ParseCompression(name string) (Compression, error) {
	var c Compression
	switch name {
	case "none", "gzip", "snappy", "lz4", "zstd":
		if err := c.UnmarshalText([]byte(name)); err != nil {
			return 0, fmt.Errorf("compression %q: %w", name, err)
		}
		return c, nil
	}
	return 0, fmt.Errorf("compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

// ProducerConfig configures a Producer.
type ProducerConfig struct {
	Brokers []string
	// Linger is how long the Produce that finds nobody sending waits for other calls to share
	// its requests (default 5 ms; negative: none). Each partition's batch is a log append
	// for the broker: a relay's concurrent drains each touch most partitions of the output
	// topics, and sent at once they make many small batches (docs/design.md, "Cost per
	// event").
	Linger time.Duration
	// WriteTimeout bounds one produce request, and is the broker's wait for the in-sync
	// replicas' acknowledgements.
	WriteTimeout time.Duration
	// MaxAttempts bounds the attempts to write one partition's batch (transient errors:
	// a leader moving, a broker restarting), 50 ms apart, doubling up to a second.
	MaxAttempts int
	// BatchBytes bounds the records sent to one partition in one request, and so the
	// largest record (0: DefaultBatchBytes).
	BatchBytes int
	// Compression is the codec of the record batches the producer sends (KAFKA_COMPRESSION;
	// zero: none). The broker stores and serves them compressed (topics keep
	// compression.type=producer), so it saves network and disk on every hop after this one;
	// the consumers decompress. See docs/design.md, "Cost per event".
	Compression Compression
	Security    Security
}

// WithDefaults fills unset fields.
func (c ProducerConfig) WithDefaults() ProducerConfig {
	if c.Linger == 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	return c
}

// Validate reports the first problem, naming the field.
func (c ProducerConfig) Validate() error {
	if err := validateBrokers(c.Brokers); err != nil {
		return err
	}
	switch {
	case c.Linger > time.Second:
		return fmt.Errorf("Linger: %s is more than 1s", c.Linger)
	case c.WriteTimeout <= 0:
		return errors.New("WriteTimeout: must be positive")
	case c.MaxAttempts < 1:
		return errors.New("MaxAttempts: must be positive")
	case c.BatchBytes < 1:
		return errors.New("BatchBytes: must be positive")
	case c.Compression < compress.None || c.Compression > compress.Zstd:
		return fmt.Errorf("Compression: %d is not a Kafka codec", c.Compression)
	}
	return c.Security.Validate()
}

// Record is one record to produce. Key is the customer id for every topic of the pipeline, so
// one customer's records stay in order on one partition.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
	Time    time.Time // zero means now
}

// Producer writes records synchronously with acks from all in-sync replicas. One Produce
// sends one request per partition leader carrying a batch for every partition it touches, as
// the Java client does, where kafka-go's Writer sends one request per partition batch: the
// broker's cost is per request (docs/design.md, "Cost per event"). A partition whose batch
// would pass BatchBytes gets its records over several requests, in order.
type Producer struct {
	cfg       ProducerConfig
	addr      net.Addr
	transport *kafka.Transport
	client    *kafka.Client
	log       *zap.Logger
	requests  *producerRequests

	mu      sync.Mutex
	layouts map[string]topicLayout

	// Calls made while another call lingers or its requests are in flight wait in queue and
	// go together in the next requests (sending is true meanwhile; see sendQueued).
	qmu     sync.Mutex
	queue   []*call
	sending bool
}

// call is one Produce waiting for its records to be written.
type call struct {
	records []Record
	done    chan error
}

// topicLayout is a topic's partitions and their leaders, as the transport last saw them.
type topicLayout struct {
	partitions []int
	leader     map[int]int
	at         time.Time
}

// layoutTTL bounds how long a topic's cached layout is used before it is read again (from the
// transport's own metadata cache, which kafka-go refreshes every few seconds).
const layoutTTL = 5 * time.Second

// DefaultBatchBytes bounds the records the producer sends to one partition in one request:
// 1 KiB under the broker's default message.max.bytes (1,048,588), which a larger batch would
// exceed, and the broker would refuse it whole (MESSAGE_TOO_LARGE) on every retry: a relay
// batch of large derived events would stall its outbox shard. It is also the largest record
// the producer sends.
const DefaultBatchBytes = 1<<20 - 1<<10

// recordOverhead is what a record adds to its key, value and headers in a v2 record batch, at
// most (varint lengths, attributes, timestamp and offset deltas).
const recordOverhead = 32

// NewProducer validates cfg (after WithDefaults) and returns a producer. Partitioning is
// murmur2 on the key, the hash the Java client uses, so records produced by any Kafka client
// with the same key land on the same partition as ours.
func NewProducer(cfg ProducerConfig, log *zap.Logger) (*Producer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("producer config: %w", err)
	}
	transport, err := cfg.Security.transport()
	if err != nil {
		return nil, err
	}
	addr := kafka.TCP(cfg.Brokers...)
	return &Producer{cfg: cfg, addr: addr, transport: transport, log: log,
		client:   &kafka.Client{Addr: addr, Transport: transport, Timeout: cfg.WriteTimeout},
		requests: newProducerRequests(), layouts: map[string]topicLayout{}}, nil
}

// PartitionOf returns the partition of a topic with n partitions that the producer writes
// key to (murmur2, as the Java client's default partitioner).
func PartitionOf(key []byte, n int) int {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return (&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: key}, parts...)
}

// Produce writes the records and returns once all of them are acknowledged, or the first
// error. On error some records may have been written: callers retry, and consumers dedupe by
// event id. A partition's records are written in their order in records.
func (p *Producer) Produce(ctx context.Context, records ...Record) error {
	if len(records) == 0 {
		return nil
	}
	for _, r := range records {
		if size := batchedSize(r); size > p.cfg.BatchBytes {
			return fmt.Errorf("producing %d records: a record of %d bytes for %s is larger than the producer's limit of %d bytes (BatchBytes): %w",
				len(records), size, r.Topic, p.cfg.BatchBytes, errOverBatchBytes)
		}
	}
	c := &call{records: records, done: make(chan error, 1)}
	p.qmu.Lock()
	p.queue = append(p.queue, c)
	lead := !p.sending
	p.sending = true
	p.qmu.Unlock()
	if lead {
		if p.cfg.Linger > 0 { // gather the calls made meanwhile
			time.Sleep(p.cfg.Linger)
		}
		p.sendQueued(context.WithoutCancel(ctx))
	}
	select {
	case err := <-c.done:
		if err != nil {
			return fmt.Errorf("producing %d records: %w", len(records), err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("producing %d records: %w", len(records), ctx.Err())
	}
}

// sendQueued writes the records of every queued call together: the caller that found nobody
// sending lingers and then sends for every call made meanwhile, so concurrent calls (a
// relay's drains, a consumer's dead letters) share requests. Calls queued while those
// requests were in flight go next, sent by a goroutine of their own, so no caller waits for
// more than its own requests. One call's records keep their order; calls that go together
// succeed or fail together, but for a refusal (a record the broker will never take, or a
// request it will never answer): then each call is sent again alone and gets its own
// outcome. It runs without the caller's cancellation: its requests are bounded by
// WriteTimeout and MaxAttempts, and a caller that stops waiting is not waited for.
func (p *Producer) sendQueued(ctx context.Context) {
	p.qmu.Lock()
	calls := p.queue
	p.queue = nil
	p.qmu.Unlock()
	records := calls[0].records
	if len(calls) > 1 {
		records = nil
		for _, c := range calls {
			records = append(records, c.records...)
		}
	}
	err := p.produce(ctx, records)
	var refused *refusal
	if len(calls) > 1 && errors.As(err, &refused) {
		// A refusal fails the call whose record it names, not the calls that shared its
		// request: each is sent again on its own. The partitions the broker had accepted get
		// their records a second time, as after any failed attempt.
		p.log.Debug("a shared produce request was refused; sending its calls one by one", zap.Int("calls", len(calls)), zap.Error(err))
		for _, c := range calls {
			c.done <- p.produce(ctx, c.records)
		}
	} else {
		for _, c := range calls {
			c.done <- err
		}
	}
	p.qmu.Lock()
	defer p.qmu.Unlock()
	if len(p.queue) == 0 {
		p.sending = false
		return
	}
	go p.sendQueued(ctx)
}

// refusal is an error that sending the same records again cannot change: a partition's batch
// refused with a code that is not transient (a record over the topic's max.message.bytes, a
// topic the client may not write), or a request failed for good.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// errOverBatchBytes is why a record larger than BatchBytes is refused before it is sent.
var errOverBatchBytes = errors.New("record over the producer's limit")

// RecordRefused reports whether a Produce failed because of what one of its records is, so
// that sending it again as it is can never succeed: larger than BatchBytes or than its
// topic's max.message.bytes, or refused by the broker as invalid (a timestamp out of the
// topic's bounds, say). A caller holding several records can find the refused ones by
// sending fewer at a time. A topic the client may not write is not such a refusal: it holds
// for every record until an operator grants the right.
func RecordRefused(err error) bool {
	if errors.Is(err, errOverBatchBytes) {
		return true
	}
	var r *refusal
	if !errors.As(err, &r) {
		return false
	}
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge) ||
		errors.Is(err, kafka.InvalidRecord) || errors.Is(err, kafka.InvalidTimestamp)
}

// batchedSize is a record's size in a v2 record batch, at most.
func batchedSize(r Record) int {
	size := len(r.Key) + len(r.Value) + recordOverhead
	for _, h := range r.Headers {
		size += len(h.Key) + len(h.Value) + 2*binary.MaxVarintLen32
	}
	return size
}

// partitionKey names one partition of one topic.
type partitionKey struct {
	topic     string
	partition int
}

// pendingBatches are one partition's records, cut into batches of at most BatchBytes, to be
// sent one after the other.
type pendingBatches struct {
	batches  [][]kafka.Record
	attempts int // failed attempts of the first batch
}

func (p *Producer) produce(ctx context.Context, records []Record) error {
	topics := map[string]struct{}{}
	for _, r := range records {
		topics[r.Topic] = struct{}{}
	}
	layouts, err := p.awaitLayouts(ctx, topics)
	if err != nil {
		return err
	}
	pending := map[partitionKey]*pendingBatches{}
	var order []partitionKey
	sizes := map[partitionKey]int{}
	now := time.Now()
	for _, r := range records {
		size := batchedSize(r)
		headers := make([]kafka.Header, len(r.Headers))
		for j, h := range r.Headers {
			headers[j] = kafka.Header{Key: h.Key, Value: h.Value}
		}
		l := layouts[r.Topic]
		k := partitionKey{r.Topic, balancer.Balance(kafka.Message{Key: r.Key}, l.partitions...)}
		pb, ok := pending[k]
		if !ok {
			pb = &pendingBatches{batches: [][]kafka.Record{nil}}
			pending[k] = pb
			order = append(order, k)
		}
		if sizes[k]+size > p.cfg.BatchBytes {
			pb.batches = append(pb.batches, nil)
			sizes[k] = 0
		}
		sizes[k] += size
		at := r.Time
		if at.IsZero() {
			at = now
		}
		last := len(pb.batches) - 1
		pb.batches[last] = append(pb.batches[last], kafka.Record{Time: at, Key: bytesOrNil(r.Key), Value: bytesOrNil(r.Value), Headers: headers})
	}
	for len(order) > 0 {
		failed, err := p.round(ctx, order, pending, layouts)
		if err != nil {
			return err
		}
		next := order[:0]
		retry := false
		for _, k := range order {
			pb := pending[k]
			if failed[k] != nil {
				if pb.attempts++; pb.attempts >= p.cfg.MaxAttempts {
					return fmt.Errorf("%s partition %d: still failing after %d attempts: %w", k.topic, k.partition, pb.attempts, failed[k])
				}
				retry = true
			} else {
				pb.batches, pb.attempts = pb.batches[1:], 0
			}
			if len(pb.batches) > 0 {
				next = append(next, k)
			}
		}
		order = next
		if retry {
			wait := min(50*time.Millisecond<<min(maxAttempts(pending)-1, 5), time.Second)
			for k, ferr := range failed {
				p.log.Debug("retrying a partition's batch", zap.String("topic", k.topic), zap.Int("partition", k.partition),
					zap.Int("attempt", pending[k].attempts), zap.Duration("wait", wait), zap.Error(ferr))
			}
			if !sleepCtx(ctx, wait) {
				return ctx.Err()
			}
			p.forget(failed)
			if layouts, err = p.awaitLayouts(ctx, topics); err != nil {
				return err
			}
		}
	}
	return nil
}

func maxAttempts(pending map[partitionKey]*pendingBatches) int {
	n := 1
	for _, pb := range pending {
		n = max(n, pb.attempts)
	}
	return n
}

func bytesOrNil(b []byte) kafka.Bytes {
	if b == nil {
		return nil
	}
	return kafka.NewBytes(b)
}

var balancer = &kafka.Murmur2Balancer{}

// round sends the first pending batch of each partition in order, one request per leader, and
// returns the partitions whose batch failed with a transient error. A failure that is not
// transient is returned as the error.
func (p *Producer) round(ctx context.Context, order []partitionKey, pending map[partitionKey]*pendingBatches, layouts map[string]topicLayout) (map[partitionKey]error, error) {
	byLeader := map[int][]partitionKey{}
	var leaders []int
	for _, k := range order {
		leader := layouts[k.topic].leader[k.partition]
		if _, ok := byLeader[leader]; !ok {
			leaders = append(leaders, leader)
		}
		byLeader[leader] = append(byLeader[leader], k)
	}
	type outcome struct {
		failed map[partitionKey]error
		err    error
	}
	outcomes := make([]outcome, len(leaders))
	var wg sync.WaitGroup
	for i, leader := range leaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			failed, err := p.send(ctx, byLeader[leader], pending)
			outcomes[i] = outcome{failed, err}
		}()
	}
	wg.Wait()
	failed := map[partitionKey]error{}
	for _, o := range outcomes {
		if o.err != nil {
			return nil, o.err
		}
		maps.Copy(failed, o.failed)
	}
	return failed, nil
}

// send writes the first pending batch of each of keys, all led by one broker, in one request.
func (p *Producer) send(ctx context.Context, keys []partitionKey, pending map[partitionKey]*pendingBatches) (map[partitionKey]error, error) {
	req := &produce.Request{Acks: int16(kafka.RequireAll), Timeout: int32(p.cfg.WriteTimeout / time.Millisecond)}
	index := map[string]int{}
	records, bytes := 0, 0
	for _, k := range keys {
		batch := pending[k].batches[0]
		i, ok := index[k.topic]
		if !ok {
			i = len(req.Topics)
			index[k.topic] = i
			req.Topics = append(req.Topics, produce.RequestTopic{Topic: k.topic})
		}
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, produce.RequestPartition{Partition: int32(k.partition),
			RecordSet: protocol.RecordSet{Version: 2, Attributes: protocol.Attributes(p.cfg.Compression),
				Records: kafka.NewRecordReader(batch...)}})
		records += len(batch)
		for _, r := range batch {
			bytes += recordBytes(r)
		}
	}
	reqCtx, cancel := context.WithTimeout(ctx, p.cfg.WriteTimeout)
	defer cancel()
	p.requests.sent(records, bytes)
	m, err := p.transport.RoundTrip(reqCtx, p.addr, req)
	failed := map[partitionKey]error{}
	if err != nil {
		p.requests.failed()
		if ctx.Err() != nil {
			return nil, err
		}
		if !producible(err) {
			return nil, &refusal{err}
		}
		for _, k := range keys {
			failed[k] = err
		}
		return failed, nil
	}
	res, ok := m.(*produce.Response)
	if !ok {
		return nil, fmt.Errorf("unexpected answer %T to a produce request", m)
	}
	answered := map[partitionKey]bool{}
	for _, t := range res.Topics {
		for _, part := range t.Partitions {
			k := partitionKey{t.Topic, int(part.Partition)}
			answered[k] = true
			if part.ErrorCode == 0 {
				continue
			}
			perr := kafka.Error(part.ErrorCode)
			p.requests.failed()
			if !retriableCode(perr) {
				return nil, &refusal{fmt.Errorf("%s partition %d: %w", k.topic, k.partition, perr)}
			}
			failed[k] = perr
		}
	}
	for _, k := range keys {
		if !answered[k] {
			failed[k] = fmt.Errorf("%s partition %d: no answer in the produce response", k.topic, k.partition)
		}
	}
	return failed, nil
}

// producible reports whether a request that failed as a whole may be sent again: a transient
// error, or the transport not yet knowing a topic or its leader (its metadata lags a topic's
// creation or a leader's move by a few seconds).
func producible(err error) bool {
	return Retriable(err) || errors.Is(err, protocol.ErrNoTopic) || errors.Is(err, protocol.ErrNoPartition) ||
		errors.Is(err, protocol.ErrNoLeader) || strings.Contains(err.Error(), "mismatching leaders")
}

func recordBytes(r kafka.Record) int {
	n := 0
	if r.Key != nil {
		n += int(r.Key.Len())
	}
	if r.Value != nil {
		n += int(r.Value.Len())
	}
	return n
}

// awaitLayouts is layoutsOf, waiting up to WriteTimeout for topics the transport's metadata
// does not know yet (kafka-go refreshes it every few seconds: a topic created after the
// producer's first request is unknown to it until then).
func (p *Producer) awaitLayouts(ctx context.Context, topics map[string]struct{}) (map[string]topicLayout, error) {
	deadline := time.Now().Add(p.cfg.WriteTimeout)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		layouts, err := p.layoutsOf(ctx, topics)
		if err == nil || !Retriable(err) || time.Now().Add(wait).After(deadline) {
			return layouts, err
		}
		if !sleepCtx(ctx, wait) {
			return nil, fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
	}
}

// layoutsOf returns the layout of each topic, from the cache while it is fresh.
func (p *Producer) layoutsOf(ctx context.Context, topics map[string]struct{}) (map[string]topicLayout, error) {
	out := make(map[string]topicLayout, len(topics))
	var missing []string
	p.mu.Lock()
	for t := range topics {
		if l, ok := p.layouts[t]; ok && time.Since(l.at) < layoutTTL {
			out[t] = l
		} else {
			missing = append(missing, t)
		}
	}
	p.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	md, err := p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: missing})
	if err != nil {
		return nil, fmt.Errorf("reading the partitions of %s: %w", strings.Join(missing, ", "), err)
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("reading the partitions of %s: %w", t.Name, t.Error)
		}
		if len(t.Partitions) == 0 {
			return nil, fmt.Errorf("reading the partitions of %s: %w", t.Name, kafka.LeaderNotAvailable)
		}
		l := topicLayout{leader: make(map[int]int, len(t.Partitions)), at: now}
		for _, part := range t.Partitions {
			l.partitions = append(l.partitions, part.ID)
			l.leader[part.ID] = part.Leader.ID
		}
		slices.Sort(l.partitions)
		p.layouts[t.Name] = l
		out[t.Name] = l
	}
	for _, t := range missing {
		if _, ok := out[t]; !ok {
			return nil, fmt.Errorf("reading the partitions of %s: %w", t, kafka.UnknownTopicOrPartition)
		}
	}
	return out, nil
}

// forget drops the cached layouts of the topics of failed partitions, to be read again.
func (p *Producer) forget(failed map[partitionKey]error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range failed {
		delete(p.layouts, k.topic)
	}
}

// Requests returns the collector of the producer's requests to the broker (produce requests,
// records, bytes, retries, errors), for the process's Prometheus registry.
func (p *Producer) Requests() prometheus.Collector { return p.requests }

// Close closes the producer's connections. Every Produce has returned by then: it is
// synchronous.
func (p *Producer) Close() error {
	p.transport.CloseIdleConnections()
	return nil
}
