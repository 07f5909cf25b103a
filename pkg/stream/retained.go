package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// NotRetainedError says a partition no longer holds every record from a time on: records
// were deleted from its start (retention, or an operator's delete-records) and the earliest
// one left is later than the time, so a read from the time would silently miss history.
type NotRetainedError struct {
	Topic     string
	Partition int
	From      time.Time
	// LogStart is the partition's first offset still held; the records before it were
	// deleted.
	LogStart int64
	// Earliest is the timestamp of the record at LogStart; zero when the partition holds no
	// record at all any more.
	Earliest time.Time
	// Retention is the topic's retention.ms (RetentionInfinite for -1).
	Retention time.Duration
}

// Error names the topic, the partition, what it still holds and its retention.
func (e *NotRetainedError) Error() string {
	retention := "-1 (infinite: the records were deleted explicitly)"
	if e.Retention != RetentionInfinite {
		retention = fmt.Sprintf("%d (%s)", e.Retention.Milliseconds(), e.Retention)
	}
	if e.Earliest.IsZero() {
		return fmt.Sprintf("%s partition %d no longer holds records from %s: all %d records it had were deleted (retention.ms %s)",
			e.Topic, e.Partition, e.From.UTC().Format(time.RFC3339), e.LogStart, retention)
	}
	return fmt.Sprintf("%s partition %d no longer holds records from %s: the %d records before offset %d were deleted, the earliest retained is from %s (retention.ms %s)",
		e.Topic, e.Partition, e.From.UTC().Format(time.RFC3339), e.LogStart, e.LogStart,
		e.Earliest.UTC().Format(time.RFC3339Nano), retention)
}

// CheckRetained reports, as *NotRetainedError joined per partition, the partitions of topic
// that no longer hold every record from from on. The rule, per partition:
//
//   - log start offset 0: nothing was ever deleted; whatever the partition holds is all it
//     ever had from from on (a topic that started later simply has no older records). Held.
//   - log start offset > 0 with records left: records were deleted. If the record at the log
//     start offset, the earliest left, is later than from, the deleted ones may have been at
//     or after from: not held. If some retained record is at or before from, the range
//     starts inside what is left: held.
//   - log start offset > 0 and no record left: all were deleted, when is not known. Held only
//     when the topic's retention is finite and from is within it (retention deletes only
//     records older than now less retention.ms, so none at or after from).
//
// Timestamps are the records' Kafka timestamps, which replay's ListOffsets by time also
// reads (producers' stamps: CreateTime, bounded ahead on input topics). A zero
// from means "from the start of each partition", which is always held.
func (a *Admin) CheckRetained(ctx context.Context, topic string, from time.Time) error {
	if from.IsZero() {
		return nil
	}
	starts, err := a.OffsetsForTime(ctx, topic, time.Time{})
	if err != nil {
		return err
	}
	ends, err := a.EndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	var deleted []int
	for p, start := range starts {
		if start > 0 {
			deleted = append(deleted, p)
		}
	}
	if len(deleted) == 0 {
		return nil
	}
	retention, err := a.TopicRetention(ctx, topic)
	if err != nil {
		return err
	}
	byTime, err := a.listOffsetsRetried(ctx, "reading offsets at "+from.Format(time.RFC3339), topic, len(starts),
		func(p int) kafka.OffsetRequest { return kafka.TimeOffsetOf(p, from) })
	if err != nil {
		return err
	}
	var errs []error
	for p := range len(starts) {
		start := starts[p]
		if start == 0 {
			continue
		}
		e := &NotRetainedError{Topic: topic, Partition: p, From: from, LogStart: start, Retention: retention}
		if ends[p] <= start {
			if retention == RetentionInfinite || from.Before(time.Now().Add(-retention)) {
				errs = append(errs, e)
			}
			continue
		}
		// The first record at or after from is the earliest left: no retained record is
		// before from. (kafka-go reports the requested timestamp, not the record's, so the
		// record is read.)
		if _, ok := byTime[p].Offsets[start]; !ok {
			continue
		}
		earliest, err := a.recordTime(ctx, topic, p, start)
		if err != nil {
			return err
		}
		if earliest.After(from) {
			e.Earliest = earliest
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// recordTime reads the Kafka timestamp of the record at offset of topic's partition.
func (a *Admin) recordTime(ctx context.Context, topic string, partition int, offset int64) (time.Time, error) {
	ch := make(chan Message, 1)
	if err := a.ReadRange(ctx, topic, partition, offset, offset+1, ch); err != nil {
		return time.Time{}, err
	}
	select {
	case m := <-ch:
		return m.Time, nil
	default:
		return time.Time{}, fmt.Errorf("reading %s/%d@%d: no record", topic, partition, offset)
	}
}
