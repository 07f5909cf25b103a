package stream_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// partitionLog records what a consumer handled, per partition, in the order it came.
type partitionLog struct {
	mu      sync.Mutex
	offsets map[int][]int64
	n       int
}

func (l *partitionLog) add(b *stream.Batch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range b.Messages {
		l.offsets[m.Partition] = append(l.offsets[m.Partition], m.Offset)
		l.n++
	}
}

func (l *partitionLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func sixPartitions(t *testing.T, perPartition int) (brokers []string, topic string) {
	t.Helper()
	brokers, topic, p := newTopic(t, 6)
	fillPartitions(t, p, topic, 6, perPartition)
	return brokers, topic
}

// fillPartitions produces perPartition records to each of the topic's partitions.
func fillPartitions(t *testing.T, p *stream.Producer, topic string, partitions, perPartition int) {
	t.Helper()
	var recs []stream.Record
	filled := make([]int, partitions)
	for i := 0; len(recs) < partitions*perPartition; i++ {
		key := []byte(fmt.Sprintf("k%d", i))
		if part := stream.PartitionOf(key, partitions); filled[part] < perPartition {
			filled[part]++
			recs = append(recs, stream.Record{Topic: topic, Key: key, Value: []byte(fmt.Sprint(i))})
		}
	}
	if err := p.Produce(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

// runConsumer runs a consumer until the returned stop is called, which fails the test if Run
// returned an error.
func runConsumer(t *testing.T, cfg stream.ConsumerConfig, h stream.Handler, metrics *stream.Metrics) (stop func()) {
	t.Helper()
	c, err := stream.NewConsumer(cfg, h, metrics, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// waitForOffsets polls the group's committed offsets until done accepts them, and returns
// them; after 90 s it fails, saying what was awaited.
func waitForOffsets(t *testing.T, admin *stream.Admin, group, topic, what string, done func(stream.Offsets) bool) stream.Offsets {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		offs, err := admin.GroupOffsets(context.Background(), group, topic)
		if err != nil {
			t.Fatal(err)
		}
		if done(offs) {
			return offs
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets %v, want %s", offs, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkOrdered fails unless log holds offsets 0..perPartition-1 of each of the six partitions,
// once each and in order.
func checkOrdered(t *testing.T, log *partitionLog, perPartition int) {
	t.Helper()
	log.mu.Lock()
	defer log.mu.Unlock()
	for part := 0; part < 6; part++ {
		got := log.offsets[part]
		if len(got) != perPartition {
			t.Fatalf("partition %d: %d records handled, want %d", part, len(got), perPartition)
		}
		for i, off := range got {
			if off != int64(i) {
				t.Fatalf("partition %d: record %d has offset %d, want %d (in order, once each)", part, i, off, i)
			}
		}
	}
}

// The consumer's partitions led by one broker are read with one fetch request: kafka-go's
// Reader makes at least one request per partition.
func TestOneFetchRequestReadsEveryPartitionOfALeader(t *testing.T) {
	const perPartition = 50
	brokers, topic := sixPartitions(t, perPartition)
	reg := prometheus.NewRegistry()
	metrics := stream.NewMetrics(reg)
	log := &partitionLog{offsets: map[int][]int64{}}
	stop := runConsumer(t, stream.ConsumerConfig{Brokers: brokers, GroupID: testinfra.Name("g"), Topics: []string{topic},
		BatchSize: 1000, Linger: 200 * time.Millisecond, MaxWait: 5 * time.Second},
		stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error { log.add(b); return nil }), metrics)
	deadline := time.Now().Add(60 * time.Second)
	for log.count() < 6*perPartition && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	fetches := gathered(t, reg)["loyalty_kafka_fetch_requests_total"]
	stop()
	checkOrdered(t, log, perPartition)
	// The first request answers with every partition's records; the next waits at the broker
	// (MaxWait) for more.
	if fetches < 1 || fetches > 2 {
		t.Errorf("%v fetch requests for six partitions with records, want 1 or 2 (one request for all of them, then a waiting one)", fetches)
	}
}

// A member joining and another leaving mid-stream move partitions between them: every record
// is handled (a record handled but not committed before its partition moved may be handled
// twice, never skipped), and the group's committed offsets end at the partitions' ends.
func TestPartitionsMovedByRebalancesAreReadOnFromTheCommittedOffsets(t *testing.T) {
	const perPartition = 400
	brokers, topic := sixPartitions(t, perPartition)
	group := testinfra.Name("g")
	log := &partitionLog{offsets: map[int][]int64{}}
	var byMember [2]atomic.Int64
	start := func(member int) (stop func()) {
		slow := stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error {
			log.add(b)
			byMember[member].Add(int64(len(b.Messages)))
			time.Sleep(40 * time.Millisecond) // the stream lasts about 10 s: long enough for the group to change mid-stream
			return nil
		})
		return runConsumer(t, stream.ConsumerConfig{Brokers: brokers, GroupID: group, Topics: []string{topic},
			BatchSize: 10, Linger: 5 * time.Millisecond, SessionTimeout: 6 * time.Second}, slow, nil)
	}
	waitHandled := func(n int) {
		deadline := time.Now().Add(90 * time.Second)
		for log.count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("handled %d records, want at least %d", log.count(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	stopFirst := start(0)
	waitHandled(300)
	stopSecond := start(1) // joins: the group rebalances
	deadline := time.Now().Add(90 * time.Second)
	for byMember[1].Load() == 0 { // the partitions were shared
		if time.Now().After(deadline) || byMember[0].Load() >= 6*perPartition {
			t.Fatalf("the second member was given no partition (the first handled %d records)", byMember[0].Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	first := byMember[0].Load()
	stopFirst() // leaves: its partitions move to the second member
	if first >= 6*perPartition {
		t.Fatalf("the first member handled all %d records; the partitions were not shared", first)
	}
	waitForOffsets(t, newAdmin(t, brokers), group, topic, fmt.Sprintf("%d on each of the six partitions", perPartition), func(offs stream.Offsets) bool {
		done := len(offs) == 6
		for _, off := range offs {
			done = done && off == perPartition
		}
		return done
	})
	stopSecond()
	log.mu.Lock()
	defer log.mu.Unlock()
	for part := 0; part < 6; part++ {
		handled := map[int64]bool{}
		for _, off := range log.offsets[part] {
			handled[off] = true
		}
		for off := int64(0); off < perPartition; off++ {
			if !handled[off] {
				t.Fatalf("partition %d: offset %d never handled", part, off)
			}
		}
	}
}

// A batch handled across a rebalance is committed only for the partitions its member still
// holds: the partitions that moved are another member's, which may have committed further, and
// a late commit would move their offsets back (their records would be read again). Nor is it
// committed below where a partition that came back to the member started again.
func TestALateCommitLeavesAPartitionThatMovedToAnotherMember(t *testing.T) {
	t.Run("moved", func(t *testing.T) { lateCommitAfterAMove(t, false) })
	t.Run("moved and came back", func(t *testing.T) { lateCommitAfterAMove(t, true) })
}

func lateCommitAfterAMove(t *testing.T, comesBack bool) {
	brokers, topic, p := newTopic(t, 2)
	fillPartitions(t, p, topic, 2, 50)
	group := testinfra.Name("g")
	type member struct {
		handled chan []stream.Message
		stop    func()
	}
	start := func(hold <-chan struct{}, metrics *stream.Metrics) member {
		m := member{handled: make(chan []stream.Message, 100)}
		h := stream.HandlerFunc(func(ctx context.Context, b *stream.Batch) error {
			m.handled <- b.Messages
			if hold != nil {
				select {
				case <-hold:
				case <-ctx.Done():
				}
			}
			return nil
		})
		m.stop = runConsumer(t, stream.ConsumerConfig{Brokers: brokers, GroupID: group, Topics: []string{topic},
			BatchSize: 1000, Linger: 2 * time.Second, SessionTimeout: 6 * time.Second}, h, metrics)
		return m
	}
	next := func(m member, who string) []stream.Message {
		t.Helper()
		select {
		case msgs := <-m.handled:
			return msgs
		case <-time.After(90 * time.Second):
			t.Fatalf("%s handled no batch", who)
			return nil
		}
	}
	release := make(chan struct{})
	reg := prometheus.NewRegistry()
	first := start(release, stream.NewMetrics(reg))
	held := next(first, "the first member")
	parts := map[int]bool{}
	for _, m := range held {
		parts[m.Partition] = true
	}
	if len(parts) != 2 {
		t.Fatalf("the first batch holds partitions %v, want both", parts)
	}
	fillPartitions(t, p, topic, 2, 50) // the partitions end at 100; the held batch reaches 50 on each
	second := start(nil, nil)          // joins: one partition moves to it
	moved := next(second, "the second member")[0].Partition
	admin := newAdmin(t, brokers)
	waitForOffsets(t, admin, group, topic, fmt.Sprintf("partition %d at 100, committed by the second member", moved),
		func(offs stream.Offsets) bool { return offs[moved] == 100 })
	if comesBack {
		// The second member leaves: the first joins a third generation, holding both
		// partitions again, the moved one from the second member's commit at 100.
		second.stop()
		deadline := time.Now().Add(90 * time.Second)
		for gathered(t, reg)["loyalty_kafka_rebalances_total"] < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("the first member joined %v generations, want 3", gathered(t, reg)["loyalty_kafka_rebalances_total"])
			}
			time.Sleep(20 * time.Millisecond)
		}
	} else {
		defer second.stop()
	}
	close(release) // the first member commits its batch: both partitions in one request
	kept := 1 - moved
	offs := waitForOffsets(t, admin, group, topic, fmt.Sprintf("partition %d at 50 or more: the first member's batch", kept),
		func(offs stream.Offsets) bool { return offs[kept] >= 50 })
	if offs[moved] != 100 {
		t.Errorf("partition %d, moved to the second member, is committed at %d, want 100: the first member's late commit moved it back", moved, offs[moved])
	}
	first.stop()
}
