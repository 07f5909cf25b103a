package stream

import (
	"testing"
	"time"
)

func TestHoldBackReleasesEachPartitionsPrefixUpToTheLimitInOrder(t *testing.T) {
	day := func(n int) time.Time { return time.Date(2026, 3, 1+n, 0, 0, 0, 0, time.UTC) }
	h := newHoldBack()
	// Partition 0 runs ahead; partition 1 is behind, with one record out of order.
	for i, d := range []int{5, 6, 7} {
		h.add(Message{Topic: "t", Partition: 0, Offset: int64(i)}, day(d))
	}
	for i, d := range []int{1, 3, 2, 9} {
		h.add(Message{Topic: "t", Partition: 1, Offset: int64(i)}, day(d))
	}
	h.add(Message{Topic: "t", Partition: 0, Offset: 1}, day(6)) // redelivered: held once
	if h.n != 7 {
		t.Fatalf("holding %d records, want 7", h.n)
	}
	heads := h.heads()
	if !heads[TopicPartition{"t", 0}].Equal(day(5)) || !heads[TopicPartition{"t", 1}].Equal(day(1)) {
		t.Fatalf("heads %v", heads)
	}
	got := h.take(h.heads(), day(5), 100)
	// Partition 1 first (earliest head): in offset order, its records up to its last one
	// within the limit (day 3 comes before day 2); then partition 0's first.
	want := []struct {
		p   int
		off int64
	}{{1, 0}, {1, 1}, {1, 2}, {0, 0}}
	// A record out of order never holds an earlier one back: day 8 at offset 4, then day 2.
	h2 := newHoldBack()
	h2.add(Message{Topic: "t", Offset: 4}, day(8))
	h2.add(Message{Topic: "t", Offset: 5}, day(2))
	if got := h2.take(h2.heads(), day(3), 100); len(got) != 2 {
		t.Fatalf("released %d records, want both: the partition holds day 2 behind day 8", len(got))
	}
	if len(got) != len(want) {
		t.Fatalf("released %d records, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Partition != w.p || got[i].Offset != w.off {
			t.Fatalf("record %d is %d@%d, want %d@%d", i, got[i].Partition, got[i].Offset, w.p, w.off)
		}
	}
	if h.n != 3 {
		t.Fatalf("still holding %d, want 3", h.n)
	}
	if got := h.take(h.heads(), day(5), 100); len(got) != 0 {
		t.Fatalf("released %d more at the same limit", len(got))
	}
	// At the bound, the earliest partition's records go whatever their time.
	if got := h.takeEarliest(h.heads(), 1); len(got) != 1 || got[0].Partition != 0 || got[0].Offset != 1 {
		t.Fatalf("takeEarliest gave %+v, want partition 0's offset 1", got)
	}
}
