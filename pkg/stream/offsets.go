package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Offsets maps partition → offset for one topic.
type Offsets map[int]int64

// listOffsets asks for one offset of each partition of topic; an error of any partition fails
// the whole call (retry then asks again for all of them).
func (a *Admin) listOffsets(ctx context.Context, topic string, partitions int, req func(p int) kafka.OffsetRequest) (map[int]kafka.PartitionOffsets, error) {
	reqs := make([]kafka.OffsetRequest, partitions)
	for p := range partitions {
		reqs[p] = req(p)
	}
	resp, err := a.api.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	out := make(map[int]kafka.PartitionOffsets, partitions)
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("listing offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = po
	}
	return out, nil
}

// listOffsetsRetried is listOffsets under the retry policy.
func (a *Admin) listOffsetsRetried(ctx context.Context, what, topic string, partitions int, req func(p int) kafka.OffsetRequest) (map[int]kafka.PartitionOffsets, error) {
	var out map[int]kafka.PartitionOffsets
	err := a.retry(ctx, what+" of "+topic, func(ctx context.Context) error {
		var err error
		out, err = a.listOffsets(ctx, topic, partitions, req)
		return err
	})
	return out, err
}

// EndOffsets returns each partition's high-water mark (the offset the next record gets).
func (a *Admin) EndOffsets(ctx context.Context, topic string) (Offsets, error) {
	n, err := a.PartitionCount(ctx, topic)
	if err != nil {
		return nil, err
	}
	last, err := a.listOffsetsRetried(ctx, "reading end offsets", topic, n, kafka.LastOffsetOf)
	if err != nil {
		return nil, err
	}
	out := make(Offsets, n)
	for p, po := range last {
		out[p] = po.LastOffset
	}
	return out, nil
}

// OffsetsForTime returns, per partition, the first offset whose record timestamp is at or
// after t (Kafka's ListOffsets by timestamp), or the partition's end when there is none. A
// zero t means the start of each partition.
func (a *Admin) OffsetsForTime(ctx context.Context, topic string, t time.Time) (Offsets, error) {
	n, err := a.PartitionCount(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(Offsets, n)
	if t.IsZero() {
		first, err := a.listOffsetsRetried(ctx, "reading start offsets", topic, n, kafka.FirstOffsetOf)
		if err != nil {
			return nil, err
		}
		for p, po := range first {
			out[p] = po.FirstOffset
		}
		return out, nil
	}
	byTime, err := a.listOffsetsRetried(ctx, "reading offsets at "+t.Format(time.RFC3339), topic, n,
		func(p int) kafka.OffsetRequest { return kafka.TimeOffsetOf(p, t) })
	if err != nil {
		return nil, err
	}
	ends, err := a.EndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	for p := range n {
		out[p] = ends[p]
		for off := range byTime[p].Offsets {
			if off >= 0 {
				out[p] = off
			}
		}
	}
	return out, nil
}

// GroupOffsets returns a consumer group's committed offsets on topic; partitions without a
// commit are absent.
func (a *Admin) GroupOffsets(ctx context.Context, group, topic string) (Offsets, error) {
	n, err := a.PartitionCount(ctx, topic)
	if err != nil {
		return nil, err
	}
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	var out Offsets
	err = a.retry(ctx, "reading offsets of group "+group+" on "+topic, func(ctx context.Context) error {
		var err error
		out, err = a.groupOffsets(ctx, group, topic, parts)
		return err
	})
	return out, err
}

func (a *Admin) groupOffsets(ctx context.Context, group, topic string, parts []int) (Offsets, error) {
	resp, err := a.api.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("fetching offsets of group %s: %w", group, err)
	}
	out := Offsets{}
	if errors.Is(resp.Error, kafka.GroupIdNotFound) {
		return out, nil // a group that never committed (some brokers say so, Kafka returns -1s)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("fetching offsets of group %s: %w", group, resp.Error)
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("fetching offset of %s/%d for group %s: %w", topic, p.Partition, group, p.Error)
		}
		if p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// ErrGroupActive is returned by CommitGroupOffsets when the group has live members: offsets
// of a running group cannot be reset from outside.
var ErrGroupActive = errors.New("consumer group has active members; stop them first")

// CommitGroupOffsets sets a consumer group's committed offsets on topic, as the position its
// members start from. kafka-go cannot seek a group, so this is how a new group is placed at
// a time, and how reset-offsets works. The group must have no active members.
func (a *Admin) CommitGroupOffsets(ctx context.Context, group, topic string, offsets Offsets) error {
	commits := make([]kafka.OffsetCommit, 0, len(offsets))
	for p, off := range offsets {
		commits = append(commits, kafka.OffsetCommit{Partition: p, Offset: off})
	}
	req := &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{topic: commits}}
	return a.retry(ctx, "committing offsets of group "+group+" on "+topic, func(ctx context.Context) error {
		resp, err := a.api.OffsetCommit(ctx, req)
		if err != nil {
			return fmt.Errorf("committing offsets of group %s: %w", group, err)
		}
		for _, p := range resp.Topics[topic] {
			if p.Error != nil {
				if errors.Is(p.Error, kafka.IllegalGeneration) || errors.Is(p.Error, kafka.UnknownMemberId) || errors.Is(p.Error, kafka.RebalanceInProgress) {
					return fmt.Errorf("group %s: %w (%w)", group, ErrGroupActive, p.Error)
				}
				return fmt.Errorf("committing %s/%d for group %s: %w", topic, p.Partition, group, p.Error)
			}
		}
		return nil
	})
}
