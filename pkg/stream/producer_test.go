package stream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// TestOneProduceOfManyLargeRecordsFitsTheBrokersRequestLimit: 600 records of 8 KB for one key
// (one partition), about 4.8 MB, in one Produce: the producer splits them into requests the
// broker accepts (message.max.bytes, about 1 MB by default) instead of sending one batch the
// broker refuses on every retry, which would stall a relay's outbox shard.
func TestOneProduceOfManyLargeRecordsFitsTheBrokersRequestLimit(t *testing.T) {
	brokers := testinfra.Kafka(t)
	topic := testinfra.Name("large-batch")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := newAdmin(t, brokers).EnsureTopics(ctx, stream.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recs := make([]stream.Record, 600)
	for i := range recs {
		recs[i] = stream.Record{Topic: topic, Key: []byte("one-customer"), Value: append([]byte(fmt.Sprintf("%06d", i)), bytes.Repeat([]byte{'x'}, 8<<10)...)}
	}
	if err := p.Produce(ctx, recs...); err != nil {
		t.Fatalf("producing 600 records of 8 KB to one partition: %v", err)
	}
	ends, err := newAdmin(t, brokers).EndOffsets(ctx, topic)
	if err != nil || ends[0] != int64(len(recs)) {
		t.Fatalf("end offset %v (%v), want all %d records written", ends, err, len(recs))
	}
	// Over several requests, the partition's records keep their order.
	got := readAll(ctx, t, brokers, topic, 0, len(recs))
	for i, v := range got {
		if want := fmt.Sprintf("%06d", i); !bytes.HasPrefix(v, []byte(want)) {
			t.Fatalf("record at offset %d begins %q, want %q", i, v[:min(len(v), 6)], want)
		}
	}
}

// readAll reads the values of the first n records of one partition.
func readAll(ctx context.Context, t *testing.T, brokers []string, topic string, partition, n int) [][]byte {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: partition, MaxBytes: 8 << 20,
		MaxWait: 250 * time.Millisecond}) // Close waits for the fetch in flight
	defer r.Close()
	out := make([][]byte, 0, n)
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading %s[%d] after %d records: %v", topic, partition, len(out), err)
		}
		out = append(out, m.Value)
	}
	return out
}

// producerOn creates the topics (name: partitions) on the test broker and a producer with
// cfg (its Brokers filled in), closed when the test ends; it returns the broker's admin and
// the producer, whose requests are counted in reg.
func producerOn(ctx context.Context, t *testing.T, cfg stream.ProducerConfig, topics map[string]int) (*stream.Admin, *stream.Producer, *prometheus.Registry) {
	t.Helper()
	brokers := testinfra.Kafka(t)
	admin := newAdmin(t, brokers)
	for name, n := range topics {
		if err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: name, Partitions: n, ReplicationFactor: 1}); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Brokers = brokers
	p, err := stream.NewProducer(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Requests())
	return admin, p, reg
}

// TestOneProduceSendsOneRequestPerLeaderForAllItsPartitions: records for every partition of
// two topics go in one request, each lands on the partition the Java client's murmur2 picks,
// and a record over BatchBytes is refused before anything is sent.
func TestOneProduceSendsOneRequestPerLeaderForAllItsPartitions(t *testing.T) {
	a, b := testinfra.Name("multi-a"), testinfra.Name("multi-b")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, p, reg := producerOn(ctx, t, stream.ProducerConfig{BatchBytes: 4 << 10}, map[string]int{a: 6, b: 3})
	var recs []stream.Record
	want := map[string][]int64{a: make([]int64, 6), b: make([]int64, 3)}
	for i := range 300 {
		topic := a
		if i%3 == 0 {
			topic = b
		}
		key := []byte(fmt.Sprintf("customer-%d", i))
		recs = append(recs, stream.Record{Topic: topic, Key: key, Value: []byte("v")})
		want[topic][stream.PartitionOf(key, len(want[topic]))]++
	}
	if err := p.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, reg)["loyalty_kafka_produce_requests_total"]; got != 1 {
		t.Errorf("produce requests = %v, want 1 for 300 small records over 9 partitions of one broker", got)
	}
	for topic, counts := range want {
		ends, err := admin.EndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		for part, n := range counts {
			if ends[part] != n {
				t.Errorf("%s partition %d holds %d records, want %d (murmur2 of their keys)", topic, part, ends[part], n)
			}
		}
	}
	big := stream.Record{Topic: a, Key: []byte("k"), Value: bytes.Repeat([]byte{'x'}, 5<<10)}
	if err := p.Produce(ctx, stream.Record{Topic: a, Key: []byte("k"), Value: []byte("small")}, big); err == nil ||
		!strings.Contains(err.Error(), "larger than the producer's limit") || !stream.RecordRefused(err) {
		t.Fatalf("producing a record over BatchBytes: %v, want the size refused, a refusal of the record (RecordRefused)", err)
	}
	if got := gathered(t, reg)["loyalty_kafka_produce_requests_total"]; got != 1 {
		t.Errorf("produce requests = %v after a refused record, want none sent", got)
	}
}

// TestAProducerWritesToATopicCreatedAfterItsFirstRequest: kafka-go's transport refreshes its
// metadata every few seconds, so a topic created after the producer's first request is
// unknown to it for a moment; the produce waits for it rather than failing.
func TestAProducerWritesToATopicCreatedAfterItsFirstRequest(t *testing.T) {
	first, later := testinfra.Name("first"), testinfra.Name("later")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, p, _ := producerOn(ctx, t, stream.ProducerConfig{}, map[string]int{first: 1})
	if err := p.Produce(ctx, stream.Record{Topic: first, Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: later, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(ctx, stream.Record{Topic: later, Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("producing to a topic created after the producer's first request: %v", err)
	}
}

// TestConcurrentProducesShareRequests: calls made while another call's request is in flight
// go together in the next request, and every call's records are written.
func TestConcurrentProducesShareRequests(t *testing.T) {
	topic := testinfra.Name("shared")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, p, reg := producerOn(ctx, t, stream.ProducerConfig{}, map[string]int{topic: 3})
	const calls, each = 40, 10
	start := make(chan struct{})
	errs := make(chan error, calls)
	for c := range calls {
		go func() {
			recs := make([]stream.Record, each)
			for i := range recs {
				recs[i] = stream.Record{Topic: topic, Key: []byte(fmt.Sprintf("c%d-%d", c, i)), Value: []byte("v")}
			}
			<-start
			errs <- p.Produce(ctx, recs...)
		}()
	}
	close(start)
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ends, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var written int64
	for _, n := range ends {
		written += n
	}
	if written != calls*each {
		t.Fatalf("%d records written, want %d", written, calls*each)
	}
	got := gathered(t, reg)["loyalty_kafka_produce_requests_total"]
	t.Logf("%d concurrent calls took %v produce requests", calls, got)
	if got > calls/2 {
		t.Errorf("%v produce requests for %d concurrent calls, want them to share requests (at most %d)", got, calls, calls/2)
	}
}

// Calls that share a request do not share a refusal: a record the broker refuses for good
// (here a record larger than its topic's max.message.bytes) fails its own call, and the calls
// that went with it are sent again on their own and succeed.
func TestARefusedRecordFailsOnlyItsOwnCall(t *testing.T) {
	good, strict := testinfra.Name("shared-good"), testinfra.Name("shared-strict")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, p, reg := producerOn(ctx, t, stream.ProducerConfig{Linger: 300 * time.Millisecond}, map[string]int{good: 1})
	if err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: strict, Partitions: 1, ReplicationFactor: 1,
		Config: map[string]string{"max.message.bytes": "1000"}}); err != nil {
		t.Fatal(err)
	}
	// Both topics' layouts are known before the shared call, so its records go in one request.
	if err := p.Produce(ctx, stream.Record{Topic: good, Value: []byte("warm")}, stream.Record{Topic: strict, Value: []byte("warm")}); err != nil {
		t.Fatal(err)
	}
	before := gathered(t, reg)["loyalty_kafka_produce_requests_total"]
	refused, accepted := make(chan error, 1), make(chan error, 1)
	go func() {
		refused <- p.Produce(ctx, stream.Record{Topic: strict, Value: make([]byte, 5000)})
	}()
	time.Sleep(50 * time.Millisecond) // within the first call's linger: the second shares its request
	go func() { accepted <- p.Produce(ctx, stream.Record{Topic: good, Value: []byte("ok")}) }()
	if err := <-refused; err == nil || !errors.Is(err, kafka.MessageSizeTooLarge) || !stream.RecordRefused(err) {
		t.Errorf("the call with a record over its topic's limit returned %v, want the broker's refusal (%v), a refusal of the record (RecordRefused)", err, kafka.MessageSizeTooLarge)
	}
	if err := <-accepted; err != nil {
		t.Errorf("the call that shared a request with a refused record failed: %v", err)
	}
	// One shared request, refused; then each call's own.
	if requests := gathered(t, reg)["loyalty_kafka_produce_requests_total"] - before; requests != 3 {
		t.Errorf("%v produce requests, want 3: the shared one, then one per call", requests)
	}
	ends, err := admin.EndOffsets(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if ends[0] < 2 {
		t.Errorf("%s holds %d records, want the warm-up's and the accepted call's", good, ends[0])
	}
}

// TestCompressedBatchesAreStoredCompressedAndReadBack: with a codec set, the batches the
// broker stores and serves carry it (read from a raw fetch's record set, as the broker sends
// it), and a consumer reads every record back as produced.
func TestCompressedBatchesAreStoredCompressedAndReadBack(t *testing.T) {
	for _, name := range []string{"none", "snappy", "lz4", "zstd"} {
		t.Run(name, func(t *testing.T) {
			codec, err := stream.ParseCompression(name)
			if err != nil {
				t.Fatal(err)
			}
			topic := testinfra.Name("compressed-" + name)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			brokers := testinfra.Kafka(t)
			if err := newAdmin(t, brokers).EnsureTopics(ctx, stream.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}); err != nil {
				t.Fatal(err)
			}
			p, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers, Compression: codec}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			recs := make([]stream.Record, 200)
			for i := range recs {
				recs[i] = stream.Record{Topic: topic, Key: []byte("c-1"),
					Value: []byte(fmt.Sprintf(`{"customer_id":"c-1","seq":%06d,"channel":"web","amount_cents":1999}`, i))}
			}
			if err := p.Produce(ctx, recs...); err != nil {
				t.Fatal(err)
			}
			got, err := p.FetchedCompression(ctx, topic, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got != codec {
				t.Errorf("the broker serves batches compressed with %v, want %v", got, codec)
			}
			for i, v := range readAll(ctx, t, brokers, topic, 0, len(recs)) {
				if !bytes.Equal(v, recs[i].Value) {
					t.Fatalf("record %d reads back as %q, want %q", i, v, recs[i].Value)
				}
			}
		})
	}
}

func TestParseCompressionRefusesAnUnknownCodec(t *testing.T) {
	for _, name := range []string{"lz5", "LZ4 ", "", "3"} {
		if _, err := stream.ParseCompression(name); err == nil {
			t.Errorf("ParseCompression(%q) accepted it", name)
		}
	}
}

// TestATransientOrUnrelatedErrorIsNotARefusedRecord: only a refusal of the record itself lets
// a caller set a record aside; a timeout, a cancelled call or a broker's code outside a
// produce answer means trying again. (The refusals are checked where they happen, above.)
func TestATransientOrUnrelatedErrorIsNotARefusedRecord(t *testing.T) {
	for _, err := range []error{errors.New("broker unreachable"), kafka.RequestTimedOut, context.Canceled,
		fmt.Errorf("producing 3 records: %w", kafka.MessageSizeTooLarge), nil} {
		if stream.RecordRefused(err) {
			t.Errorf("RecordRefused(%v) = true", err)
		}
	}
}
