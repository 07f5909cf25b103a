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
	var recs []stream.Record
	filled := make([]int, 6)
	for i := 0; len(recs) < 6*perPartition; i++ {
		key := []byte(fmt.Sprintf("k%d", i))
		if part := stream.PartitionOf(key, 6); filled[part] < perPartition {
			filled[part]++
			recs = append(recs, stream.Record{Topic: topic, Key: key, Value: []byte(fmt.Sprint(i))})
		}
	}
	if err := p.Produce(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	return brokers, topic
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
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: testinfra.Name("g"), Topics: []string{topic},
		BatchSize: 1000, Linger: 200 * time.Millisecond, MaxWait: 5 * time.Second},
		stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error { log.add(b); return nil }), metrics, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for log.count() < 6*perPartition && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	fetches := gathered(t, reg)["loyalty_kafka_fetch_requests_total"]
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
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
		c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: group, Topics: []string{topic},
			BatchSize: 10, Linger: 5 * time.Millisecond, SessionTimeout: 6 * time.Second}, slow, nil, zaptest.NewLogger(t))
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
	admin := newAdmin(t, brokers)
	deadline = time.Now().Add(90 * time.Second)
	for {
		offs, err := admin.GroupOffsets(context.Background(), group, topic)
		if err != nil {
			t.Fatal(err)
		}
		done := len(offs) == 6
		for _, off := range offs {
			done = done && off == perPartition
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets %v, want %d on each of the six partitions", offs, perPartition)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
