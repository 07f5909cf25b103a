package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"
	"go.uber.org/zap"
)

// groupFetcher is a consumer group member that fetches all of its partitions led by one broker
// with one Fetch request, as the Java client does. kafka-go's Reader runs one fetch loop per
// partition, each with its own requests, and the broker's cost is per request (docs/design.md,
// "Cost per event"): live, a consumer service of six partitions made about six times the
// fetches it needs. Group membership, heartbeats, rebalances and offset commits are kafka-go's
// ConsumerGroup's, with the Reader's semantics: records of a generation that ended are dropped
// unread, commits go to the generation current when they are made, and a CommitInterval
// gathers them and commits at most that often and when the generation ends. Unlike the
// Reader, a commit leaves out the partitions the generation did not assign to this member
// (commitLoop).
type groupFetcher struct {
	cfg       ConsumerConfig
	group     *kafka.ConsumerGroup
	transport *kafka.Transport
	client    *kafka.Client
	addr      net.Addr
	log       *zap.Logger

	msgs    chan fetchedMessage
	commits chan commitRequest
	errs    chan error // a generation that could not be joined, for FetchMessage to report

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	generation atomic.Int64 // counts the generations joined; messages of older ones are dropped

	fetches, bytes, records, dials, rebalances atomic.Int64
}

// fetchedMessage is a record and the generation it was fetched in.
type fetchedMessage struct {
	msg        kafka.Message
	generation int64
}

// commitRequest is offsets to commit (the next offset to read, per partition), and where to
// answer when commits are synchronous.
type commitRequest struct {
	offsets map[string]map[int]int64
	answer  chan error
}

// fetchWaitMargin is how much longer than MaxWait a fetch may take before it is abandoned: the
// broker holds a fetch with no data for MaxWait, and a busy machine answers late. A deadline
// too close to MaxWait made kafka-go's readers reconnect under load (docs/design.md).
const fetchWaitMargin = 10 * time.Second

// newGroupFetcher joins the group in the background and starts fetching.
func newGroupFetcher(cfg ConsumerConfig, log *zap.Logger) (*groupFetcher, error) {
	dialer, err := cfg.Security.dialer()
	if err != nil {
		return nil, err
	}
	transport, err := cfg.Security.transport()
	if err != nil {
		return nil, err
	}
	f := &groupFetcher{cfg: cfg, transport: transport, log: log,
		msgs: make(chan fetchedMessage, cfg.BatchSize), commits: make(chan commitRequest, 16), errs: make(chan error, 1),
		done: make(chan struct{})}
	netDialer := &net.Dialer{Timeout: transport.DialTimeout}
	transport.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		f.dials.Add(1)
		return netDialer.DialContext(ctx, network, address)
	}
	f.addr = kafka.TCP(cfg.Brokers...)
	f.client = &kafka.Client{Addr: f.addr, Transport: transport, Timeout: 10 * time.Second}
	start := kafka.FirstOffset
	if cfg.StartFromLatest {
		start = kafka.LastOffset
	}
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    cfg.GroupID,
		Brokers:               cfg.Brokers,
		Dialer:                dialer,
		Topics:                cfg.Topics,
		HeartbeatInterval:     cfg.SessionTimeout / 4,
		SessionTimeout:        cfg.SessionTimeout,
		RebalanceTimeout:      cfg.SessionTimeout * 3,
		JoinGroupBackoff:      500 * time.Millisecond,
		WatchPartitionChanges: true,
		StartOffset:           start,
		Logger:                kafka.LoggerFunc(func(msg string, args ...any) { log.Debug(fmt.Sprintf(msg, args...)) }),
		ErrorLogger:           kafka.LoggerFunc(func(msg string, args ...any) { log.Warn(fmt.Sprintf(msg, args...)) }),
	})
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", cfg.GroupID, err)
	}
	f.group = group
	f.ctx, f.cancel = context.WithCancel(context.Background())
	go f.run()
	return f, nil
}

// run joins each generation in turn and runs its fetch and commit loops until the fetcher is
// closed.
func (f *groupFetcher) run() {
	defer close(f.done)
	defer func() {
		if err := f.group.Close(); err != nil {
			f.log.Debug("leaving the consumer group", zap.Error(err))
		}
	}()
	failures := 0
	for {
		gen, err := f.group.Next(f.ctx)
		if err != nil {
			if f.ctx.Err() != nil {
				return
			}
			// The Reader reports a join that failed three times running to FetchMessage
			// (which retries a transient error) and keeps trying.
			if failures++; failures%3 == 0 {
				select {
				case f.errs <- err:
				default:
				}
			}
			f.log.Warn("joining the consumer group failed; retrying", zap.String("group", f.cfg.GroupID), zap.Error(err))
			if !sleepCtx(f.ctx, time.Second) {
				return
			}
			continue
		}
		failures = 0
		f.rebalances.Add(1)
		generation := f.generation.Add(1)
		gen.Start(func(ctx context.Context) { f.commitLoop(ctx, gen) })
		gen.Start(func(ctx context.Context) { f.fetchLoop(ctx, gen, generation) })
	}
}

// FetchMessage returns the next record of the current generation.
func (f *groupFetcher) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		select {
		case <-ctx.Done():
			return kafka.Message{}, ctx.Err()
		case <-f.ctx.Done():
			return kafka.Message{}, io.EOF
		case err := <-f.errs:
			return kafka.Message{}, err
		case m := <-f.msgs:
			if m.generation == f.generation.Load() {
				return m.msg, nil
			}
			// Fetched before a rebalance: the partition may be another member's now, which
			// reads it from the last commit.
		}
	}
}

// CommitMessages commits each partition's highest offset among msgs (the next record to read
// is the one after it): at once and answering the broker's verdict when CommitInterval is
// zero, else with the generation's next periodic commit.
func (f *groupFetcher) CommitMessages(ctx context.Context, msgs ...kafka.Message) error {
	offsets := map[string]map[int]int64{}
	for _, m := range msgs {
		raiseOffset(offsets, m.Topic, m.Partition, m.Offset+1)
	}
	req := commitRequest{offsets: offsets}
	if f.cfg.CommitInterval == 0 {
		req.answer = make(chan error, 1)
	}
	select {
	case f.commits <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-f.ctx.Done():
		return io.ErrClosedPipe
	}
	if req.answer == nil {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-req.answer:
		return err
	case <-f.done:
		return io.ErrClosedPipe
	}
}

// Close leaves the group, committing what was handed to CommitMessages first.
func (f *groupFetcher) Close() error {
	f.cancel()
	<-f.done
	f.transport.CloseIdleConnections()
	return nil
}

// Stats returns what the fetcher counted since the last call, as kafka-go's Reader does.
func (f *groupFetcher) Stats() kafka.ReaderStats {
	return kafka.ReaderStats{Fetches: f.fetches.Swap(0), Bytes: f.bytes.Swap(0), Messages: f.records.Swap(0),
		Dials: f.dials.Swap(0), Rebalances: f.rebalances.Swap(0)}
}

// commitLoop commits the offsets handed to CommitMessages during gen: each at once, or those
// gathered every CommitInterval, and what is left when gen ends.
//
// Only gen's partitions are committed, and never at or below their committed offset when gen
// began or what gen committed since: a batch handled across a rebalance may hold records of a
// partition that moved to another member, which reads it from the last commit and may have
// committed further since; committing the batch there would move the partition back and have
// its records read again (kafka-go's Reader commits them). The same holds for a partition
// that moved and came back in a later generation. A partition that stayed is committed as
// usual.
func (f *groupFetcher) commitLoop(ctx context.Context, gen *kafka.Generation) {
	// committed holds gen's partitions, each with the offset committed last: the group's when
	// gen began (-1 when there was none: kafka.FirstOffset or LastOffset), then gen's own.
	committed := map[TopicPartition]int64{}
	for topic, parts := range gen.Assignments {
		for _, p := range parts {
			committed[TopicPartition{Topic: topic, Partition: p.ID}] = max(p.Offset, -1)
		}
	}
	pending := map[string]map[int]int64{}
	var answers []chan error
	merge := func(req commitRequest) {
		for topic, parts := range req.offsets {
			for p, off := range parts {
				tp := TopicPartition{Topic: topic, Partition: p}
				last, held := committed[tp]
				if !held {
					f.log.Debug("not committing a partition this member no longer holds",
						zap.String("topic", topic), zap.Int("partition", p), zap.Int64("offset", off))
					continue
				}
				if off <= last {
					continue
				}
				raiseOffset(pending, topic, p, off)
			}
		}
		if req.answer != nil {
			answers = append(answers, req.answer)
		}
	}
	commit := func() {
		var err error
		if len(pending) > 0 {
			err = f.commitWithRetry(gen, pending)
			if err != nil {
				f.log.Warn("committing offsets", zap.String("group", f.cfg.GroupID), zap.Error(err))
			}
		}
		for _, a := range answers {
			a <- err
		}
		answers = answers[:0]
		if err == nil {
			for topic, parts := range pending {
				for p, off := range parts {
					committed[TopicPartition{Topic: topic, Partition: p}] = off
				}
			}
			pending = map[string]map[int]int64{}
		}
	}
	var tick <-chan time.Time
	if f.cfg.CommitInterval > 0 {
		ticker := time.NewTicker(f.cfg.CommitInterval)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case <-ctx.Done():
			for drained := false; !drained; {
				select {
				case req := <-f.commits:
					merge(req)
				default:
					drained = true
				}
			}
			commit()
			return
		case <-tick:
			commit()
		case req := <-f.commits:
			merge(req)
			if f.cfg.CommitInterval == 0 {
				commit()
			}
		}
	}
}

// raiseOffset sets offsets' entry for a partition to off unless it holds a higher one.
func raiseOffset(offsets map[string]map[int]int64, topic string, partition int, off int64) {
	byPartition, ok := offsets[topic]
	if !ok {
		byPartition = map[int]int64{}
		offsets[topic] = byPartition
	}
	if cur, ok := byPartition[partition]; !ok || off > cur {
		byPartition[partition] = off
	}
}

// commitWithRetry commits offsets, trying three times 100 ms apart (the Reader's retries).
func (f *groupFetcher) commitWithRetry(gen *kafka.Generation, offsets map[string]map[int]int64) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 && !sleepCtx(f.ctx, 100*time.Millisecond) {
			break
		}
		if err = gen.CommitOffsets(offsets); err == nil {
			return nil
		}
	}
	return err
}

// fetchPosition is where a partition is read next.
type fetchPosition struct {
	topic     string
	partition int
	offset    int64
}

// fetchLoop reads gen's partitions until gen ends: one request per partition leader at a
// time, each for every partition that leader has. It never returns before gen ends (a
// function of a generation that returns ends it), whatever fails: errors are logged and the
// fetch retried with backoff.
func (f *groupFetcher) fetchLoop(ctx context.Context, gen *kafka.Generation, generation int64) {
	// Once gen ends, what it fetched and FetchMessage has not returned yet is dropped at once
	// rather than when the next generation is joined.
	defer f.generation.CompareAndSwap(generation, generation+1)
	positions := f.startPositions(ctx, gen)
	if len(positions) == 0 {
		<-ctx.Done()
		return
	}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		began := time.Now()
		leaders, err := f.leaders(ctx, positions)
		if err != nil {
			f.log.Warn("reading the partitions' leaders; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		// One loop per leader, until one of them sees the partitions' layout change; then
		// the leaders are read again and the loops restarted with the positions they reached.
		roundCtx, endRound := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, parts := range leaders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer endRound()
				f.fetchFromLeader(roundCtx, parts, generation)
			}()
		}
		wg.Wait()
		endRound()
		if time.Since(began) > time.Second {
			backoff = 50 * time.Millisecond
		} else {
			// The layout changed again at once (the metadata lags a leader's move): wait
			// rather than spin.
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, time.Second)
		}
	}
}

// startPositions resolves gen's assigned offsets: a committed offset as it is, the group's
// start (first or last offset) for a partition never committed.
func (f *groupFetcher) startPositions(ctx context.Context, gen *kafka.Generation) []*fetchPosition {
	var positions []*fetchPosition
	unresolved := map[string][]kafka.OffsetRequest{}
	for topic, assigned := range gen.Assignments {
		for _, a := range assigned {
			positions = append(positions, &fetchPosition{topic: topic, partition: a.ID, offset: a.Offset})
			if a.Offset < 0 {
				unresolved[topic] = append(unresolved[topic], kafka.OffsetRequest{Partition: a.ID, Timestamp: a.Offset})
			}
		}
	}
	sort.Slice(positions, func(i, j int) bool {
		if positions[i].topic != positions[j].topic {
			return positions[i].topic < positions[j].topic
		}
		return positions[i].partition < positions[j].partition
	})
	for backoff := 50 * time.Millisecond; len(unresolved) > 0 && ctx.Err() == nil; backoff = min(2*backoff, time.Second) {
		res, err := f.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: unresolved})
		if err == nil {
			err = resolveStarts(positions, res)
		}
		if err == nil {
			break
		}
		f.log.Warn("reading the start offsets of new partitions; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		sleepCtx(ctx, backoff)
	}
	return positions
}

// resolveStarts sets each position still at FirstOffset or LastOffset to the offset res has
// for it.
func resolveStarts(positions []*fetchPosition, res *kafka.ListOffsetsResponse) error {
	for _, p := range positions {
		if p.offset >= 0 {
			continue
		}
		found := false
		for _, o := range res.Topics[p.topic] {
			if o.Partition != p.partition {
				continue
			}
			if o.Error != nil {
				return fmt.Errorf("%s partition %d: %w", p.topic, p.partition, o.Error)
			}
			found = true
			if p.offset == kafka.FirstOffset {
				p.offset = o.FirstOffset
			} else {
				p.offset = o.LastOffset
			}
		}
		if !found {
			return fmt.Errorf("%s partition %d: no offsets in the answer", p.topic, p.partition)
		}
	}
	return nil
}

// leaders groups the positions by their partition's leader.
func (f *groupFetcher) leaders(ctx context.Context, positions []*fetchPosition) (map[int][]*fetchPosition, error) {
	topics := map[string]bool{}
	var names []string
	for _, p := range positions {
		if !topics[p.topic] {
			topics[p.topic] = true
			names = append(names, p.topic)
		}
	}
	md, err := f.client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return nil, err
	}
	leader := map[TopicPartition]int{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, t.Error)
		}
		for _, part := range t.Partitions {
			leader[TopicPartition{Topic: t.Name, Partition: part.ID}] = part.Leader.ID
		}
	}
	out := map[int][]*fetchPosition{}
	for _, p := range positions {
		id, ok := leader[TopicPartition{Topic: p.topic, Partition: p.partition}]
		if !ok {
			return nil, fmt.Errorf("%s partition %d: %w", p.topic, p.partition, kafka.UnknownTopicOrPartition)
		}
		out[id] = append(out[id], p)
	}
	return out, nil
}

// fetchFromLeader fetches parts, all led by one broker, with one request at a time until ctx
// ends or a partition's leadership moved (it returns, for the caller to group them again).
func (f *groupFetcher) fetchFromLeader(ctx context.Context, parts []*fetchPosition, generation int64) {
	backoff := 50 * time.Millisecond
	first := 0 // the partition the next request lists first: rotated, so none waits behind the others
	for ctx.Err() == nil {
		req := f.request(parts, first)
		first = (first + 1) % len(parts)
		f.fetches.Add(1)
		reqCtx, cancel := context.WithTimeout(ctx, f.cfg.MaxWait+fetchWaitMargin)
		m, err := f.transport.RoundTrip(reqCtx, f.addr, req)
		cancel()
		if err == nil {
			var moved bool
			moved, err = f.deliver(ctx, parts, m, generation)
			if moved {
				return
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.log.Warn("fetch failed; retrying", zap.String("group", f.cfg.GroupID), zap.Error(err), zap.Duration("backoff", backoff))
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, f.cfg.RetryBackoffMax)
			if !Retriable(err) {
				return // read the layout again: a topic or partition may have changed
			}
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// request is one Fetch for parts, listing them from first on. Each partition may fill the
// response up to MaxFetchBytes shared among them (at least 64 KiB); a partition whose next
// batch is larger still gets that batch whole when it comes first (KIP-74), so none stalls.
func (f *groupFetcher) request(parts []*fetchPosition, first int) *fetchapi.Request {
	perPartition := int32(max(f.cfg.MaxFetchBytes/len(parts), 64<<10))
	req := &fetchapi.Request{ReplicaID: -1, MaxWaitTime: int32(f.cfg.MaxWait / time.Millisecond), MinBytes: 1,
		MaxBytes: int32(f.cfg.MaxFetchBytes), SessionID: -1, SessionEpoch: -1}
	index := map[string]int{}
	for i := range parts {
		p := parts[(first+i)%len(parts)]
		t, ok := index[p.topic]
		if !ok {
			t = len(req.Topics)
			index[p.topic] = t
			req.Topics = append(req.Topics, fetchapi.RequestTopic{Topic: p.topic})
		}
		req.Topics[t].Partitions = append(req.Topics[t].Partitions, fetchapi.RequestPartition{Partition: int32(p.partition),
			CurrentLeaderEpoch: -1, FetchOffset: p.offset, LogStartOffset: -1, PartitionMaxBytes: perPartition})
	}
	return req
}

// deliver hands the records of a fetch response to FetchMessage, in each partition's order,
// and moves the positions past them. moved reports a partition whose leader or layout changed.
func (f *groupFetcher) deliver(ctx context.Context, parts []*fetchPosition, m protocol.Message, generation int64) (moved bool, err error) {
	res, ok := m.(*fetchapi.Response)
	if !ok {
		return false, fmt.Errorf("unexpected answer %T to a fetch request", m)
	}
	if res.ErrorCode != 0 {
		return false, kafka.Error(res.ErrorCode)
	}
	byKey := make(map[TopicPartition]*fetchPosition, len(parts))
	for _, p := range parts {
		byKey[TopicPartition{Topic: p.topic, Partition: p.partition}] = p
	}
	var firstErr error
	for _, t := range res.Topics {
		for _, part := range t.Partitions {
			p := byKey[TopicPartition{Topic: t.Topic, Partition: int(part.Partition)}]
			if p == nil {
				continue
			}
			if part.ErrorCode != 0 {
				perr := kafka.Error(part.ErrorCode)
				switch {
				case errors.Is(perr, kafka.OffsetOutOfRange) && part.LogStartOffset > p.offset:
					// Retention deleted records the group had not read: they are gone, and
					// the partition goes on from its first record (the Reader does the same).
					f.log.Error("records deleted before they were consumed; skipping to the partition's first offset",
						zap.String("topic", p.topic), zap.Int("partition", p.partition),
						zap.Int64("offset", p.offset), zap.Int64("first", part.LogStartOffset))
					p.offset = part.LogStartOffset
				case retriableCode(perr):
					moved = true
				default:
					if firstErr == nil {
						firstErr = fmt.Errorf("%s partition %d: %w", p.topic, p.partition, perr)
					}
				}
				continue
			}
			if part.RecordSet.Records == nil {
				continue
			}
			if err := f.readRecords(ctx, p, part.RecordSet.Records, part.HighWatermark, generation); err != nil {
				return false, err
			}
		}
	}
	return moved, firstErr
}

// readRecords passes a partition's records from its position on to FetchMessage.
func (f *groupFetcher) readRecords(ctx context.Context, p *fetchPosition, records protocol.RecordReader, highWatermark, generation int64) error {
	for {
		r, err := records.ReadRecord()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading %s partition %d at offset %d: %w", p.topic, p.partition, p.offset, err)
		}
		if r.Offset < p.offset {
			continue // a batch starts before the position
		}
		msg := kafka.Message{Topic: p.topic, Partition: p.partition, Offset: r.Offset, HighWaterMark: highWatermark, Time: r.Time}
		if msg.Key, err = protocol.ReadAll(r.Key); err == nil {
			msg.Value, err = protocol.ReadAll(r.Value)
		}
		if err != nil {
			return fmt.Errorf("reading %s partition %d at offset %d: %w", p.topic, p.partition, r.Offset, err)
		}
		if len(r.Headers) > 0 {
			msg.Headers = make([]kafka.Header, len(r.Headers))
			copy(msg.Headers, r.Headers)
		}
		select {
		case f.msgs <- fetchedMessage{msg: msg, generation: generation}:
		case <-ctx.Done():
			return nil
		}
		p.offset = r.Offset + 1
		f.records.Add(1)
		f.bytes.Add(int64(len(msg.Key) + len(msg.Value)))
	}
}
