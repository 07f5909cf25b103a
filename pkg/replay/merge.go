package replay

import (
	"container/heap"
	"context"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// source is one input partition being replayed.
type source struct {
	topic     string
	partition int
	next      int64 // next offset to read (the group's committed position)
	end       int64 // exclusive
	ch        chan stream.Message
	head      *stream.Message
	headTime  time.Time
	done      bool
}

// timeOf is the merge key of a record: its event time when it decodes as an input event,
// otherwise its Kafka timestamp (it will be dead-lettered; where it lands in the order does
// not matter).
type timeOf func(stream.Message) time.Time

// merger releases records of all sources in event-time order: a record is released only when
// every source that still has records has a head to compare it with. Per partition, offset
// order is kept (a customer's records are never reordered within their partition).
type merger struct {
	sources []*source
	h       headHeap
	timeOf  timeOf
}

type headHeap []*source

func (h headHeap) Len() int { return len(h) }
func (h headHeap) Less(i, j int) bool {
	if !h[i].headTime.Equal(h[j].headTime) {
		return h[i].headTime.Before(h[j].headTime)
	}
	if h[i].topic != h[j].topic {
		return h[i].topic < h[j].topic
	}
	return h[i].partition < h[j].partition
}
func (h headHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *headHeap) Push(x any)   { *h = append(*h, x.(*source)) }
func (h *headHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// fill makes sure s has a head unless it is exhausted; it blocks until the partition reader
// delivers (records up to the end offset always exist).
func (m *merger) fill(ctx context.Context, s *source) error {
	if s.head != nil || s.done {
		return nil
	}
	select {
	case msg, ok := <-s.ch:
		if !ok {
			s.done = true
			return nil
		}
		s.head = &msg
		s.headTime = m.timeOf(msg)
		heap.Push(&m.h, s)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next returns up to max records in merged order; an empty result means every source is
// exhausted.
func (m *merger) next(ctx context.Context, limit int) ([]stream.Message, error) {
	out := make([]stream.Message, 0, limit)
	for len(out) < limit {
		for _, s := range m.sources {
			if err := m.fill(ctx, s); err != nil {
				return out, err
			}
		}
		if m.h.Len() == 0 {
			break
		}
		s := heap.Pop(&m.h).(*source)
		out = append(out, *s.head)
		s.next = s.head.Offset + 1
		s.head = nil
	}
	return out, nil
}
