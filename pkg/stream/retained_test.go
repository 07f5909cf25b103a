package stream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// kafka-go v0.4.51 has no DeleteRecords; the tests send Kafka's DeleteRecords (API key 21,
// versions 0 and 1) through its transport. Moving a partition's log start offset is what
// retention does, but at once and to a chosen offset.
func init() { protocol.Register(&deleteRecordsRequest{}, &deleteRecordsResponse{}) }

type deleteRecordsRequest struct {
	Topics    []deleteRecordsTopic `kafka:"min=v0,max=v1"`
	TimeoutMs int32                `kafka:"min=v0,max=v1"`
}

type deleteRecordsTopic struct {
	Name       string                   `kafka:"min=v0,max=v1"`
	Partitions []deleteRecordsPartition `kafka:"min=v0,max=v1"`
}

type deleteRecordsPartition struct {
	PartitionIndex int32 `kafka:"min=v0,max=v1"`
	Offset         int64 `kafka:"min=v0,max=v1"`
}

func (r *deleteRecordsRequest) ApiKey() protocol.ApiKey { return protocol.DeleteRecords }

// Broker routes the request to the leader of its first partition (the tests delete from one
// partition at a time).
func (r *deleteRecordsRequest) Broker(c protocol.Cluster) (protocol.Broker, error) {
	t := r.Topics[0]
	p, ok := c.Topics[t.Name].Partitions[t.Partitions[0].PartitionIndex]
	if !ok {
		return protocol.Broker{}, fmt.Errorf("no leader known for %s/%d", t.Name, t.Partitions[0].PartitionIndex)
	}
	return c.Brokers[p.Leader], nil
}

type deleteRecordsResponse struct {
	ThrottleTimeMs int32                   `kafka:"min=v0,max=v1"`
	Topics         []deleteRecordsTopicRes `kafka:"min=v0,max=v1"`
}

type deleteRecordsTopicRes struct {
	Name       string                      `kafka:"min=v0,max=v1"`
	Partitions []deleteRecordsPartitionRes `kafka:"min=v0,max=v1"`
}

type deleteRecordsPartitionRes struct {
	PartitionIndex int32 `kafka:"min=v0,max=v1"`
	LowWatermark   int64 `kafka:"min=v0,max=v1"`
	ErrorCode      int16 `kafka:"min=v0,max=v1"`
}

func (r *deleteRecordsResponse) ApiKey() protocol.ApiKey { return protocol.DeleteRecords }

// deleteRecords deletes the records of topic's partition before offset.
func deleteRecords(t *testing.T, brokers []string, topic string, partition int, before int64) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := tr.RoundTrip(ctx, kafka.TCP(brokers...), &deleteRecordsRequest{TimeoutMs: 10_000,
		Topics: []deleteRecordsTopic{{Name: topic, Partitions: []deleteRecordsPartition{{PartitionIndex: int32(partition), Offset: before}}}}})
	if err != nil {
		t.Fatalf("deleting records of %s/%d before %d: %v", topic, partition, before, err)
	}
	for _, rt := range res.(*deleteRecordsResponse).Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 || rp.LowWatermark != before {
				t.Fatalf("deleting records of %s/%d before %d: %v, low watermark %d", topic, partition, before, kafka.Error(rp.ErrorCode), rp.LowWatermark)
			}
		}
	}
}

// CheckRetained tells a partition whose early records were deleted (log start offset > 0,
// the earliest record left later than the time asked for) from one that simply started
// later (log start offset 0), and names the partition, the earliest retained time and the
// retention. Runs on a real broker: kfake's DeleteRecords is not what retention does on one.
func TestCheckRetainedFailsOnlyWhenRecordsFromTheTimeWereDeleted(t *testing.T) {
	brokers := testinfra.RealKafkaBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := newAdmin(t, brokers)
	topic, fresh, emptied := testinfra.Name("retained"), testinfra.Name("retained-fresh"), testinfra.Name("retained-empty")
	if err := admin.EnsureTopics(ctx,
		stream.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1, Retention: 30 * 24 * time.Hour},
		stream.TopicSpec{Name: fresh, Partitions: 1, ReplicationFactor: 1, Retention: 30 * 24 * time.Hour},
		stream.TopicSpec{Name: emptied, Partitions: 1, ReplicationFactor: 1, Retention: 30 * 24 * time.Hour},
	); err != nil {
		t.Fatal(err)
	}
	producer, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	// Partition 0 of topic: records one hour apart, from 10 hours ago; partition 1 empty.
	// (Producers stamp records; the bound is on the future only.)
	now := time.Now().Truncate(time.Millisecond)
	at := func(i int) time.Time { return now.Add(time.Duration(i-10) * time.Hour) }
	var recs []stream.Record
	for i := range 10 {
		recs = append(recs, stream.Record{Topic: topic, Key: []byte("k"), Value: []byte{byte(i)}, Time: at(i)})
	}
	for _, r := range recs {
		r := r
		r.Topic = fresh
		if err := producer.Produce(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range recs {
		if err := producer.Produce(ctx, recs[i], stream.Record{Topic: emptied, Key: []byte("k"), Value: []byte{byte(i)}, Time: at(i)}); err != nil {
			t.Fatal(err)
		}
	}
	p := 0 // the partition of key "k" (one record there, the other empty)
	if ends, err := admin.EndOffsets(ctx, topic); err != nil {
		t.Fatal(err)
	} else if ends[1] == 10 {
		p = 1
	}

	// Nothing deleted: every time passes, even one before the first record (the topic simply
	// started later).
	for _, tp := range []string{topic, fresh, emptied} {
		if err := admin.CheckRetained(ctx, tp, at(-100)); err != nil {
			t.Errorf("%s before any deletion: %v", tp, err)
		}
	}

	deleteRecords(t, brokers, topic, p, 4) // the records of hours 0..3 are gone; the earliest left is at(4)
	deleteRecords(t, brokers, emptied, 0, 10)

	for _, from := range []time.Time{at(-100), at(2), at(4).Add(-time.Millisecond)} {
		err := admin.CheckRetained(ctx, topic, from)
		var nr *stream.NotRetainedError
		if !errors.As(err, &nr) || nr.Topic != topic || nr.Partition != p || nr.LogStart != 4 || !nr.Earliest.Equal(at(4)) ||
			nr.Retention != 30*24*time.Hour {
			t.Fatalf("from %s: %v (%+v), want partition %d not retained, earliest %s", from, err, nr, p, at(4))
		}
		for _, want := range []string{topic + " partition", "before offset 4 were deleted", at(4).UTC().Format(time.RFC3339Nano), "retention.ms 2592000000"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	}
	for _, from := range []time.Time{at(4), at(7), now.Add(time.Hour)} {
		if err := admin.CheckRetained(ctx, topic, from); err != nil {
			t.Errorf("from %s, at or after the earliest retained record: %v", from, err)
		}
	}
	// A partition whose every record was deleted: within the retention nothing from then on
	// can have been deleted by it; before the retention window, or with infinite retention,
	// it may have been.
	if err := admin.CheckRetained(ctx, emptied, now.Add(-24*time.Hour)); err != nil {
		t.Errorf("emptied partition, from within the retention: %v", err)
	}
	var nr *stream.NotRetainedError
	if err := admin.CheckRetained(ctx, emptied, now.Add(-40*24*time.Hour)); !errors.As(err, &nr) || !nr.Earliest.IsZero() ||
		!strings.Contains(err.Error(), "all 10 records it had were deleted") {
		t.Errorf("emptied partition, from before the retention: %v", err)
	}
	if err := admin.CheckRetained(ctx, fresh, at(-100)); err != nil {
		t.Errorf("a topic whose log starts at 0: %v", err)
	}
}
