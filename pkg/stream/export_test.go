package stream

import (
	"context"
	"fmt"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol/fetch"
)

// FetchedCompression fetches a partition from its first offset with a raw fetch request, on
// the producer's transport (whose metadata knows the topics it wrote), and returns the codec
// of the batches as the broker sent them. For tests: kafka-go's readers decompress and do
// not say.
func (p *Producer) FetchedCompression(ctx context.Context, topic string, partition int) (compress.Compression, error) {
	m, err := p.transport.RoundTrip(ctx, p.addr, &fetch.Request{
		ReplicaID: -1, MaxWaitTime: 100, MinBytes: 1, MaxBytes: 1 << 20, SessionID: -1, SessionEpoch: -1,
		Topics: []fetch.RequestTopic{{Topic: topic, Partitions: []fetch.RequestPartition{{Partition: int32(partition),
			CurrentLeaderEpoch: -1, FetchOffset: 0, LogStartOffset: -1, PartitionMaxBytes: 1 << 20}}}},
	})
	if err != nil {
		return 0, err
	}
	res, ok := m.(*fetch.Response)
	if !ok || len(res.Topics) != 1 || len(res.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("unexpected fetch answer %T", m)
	}
	part := res.Topics[0].Partitions[0]
	if part.ErrorCode != 0 {
		return 0, kafka.Error(part.ErrorCode)
	}
	return part.RecordSet.Attributes.Compression(), nil
}
