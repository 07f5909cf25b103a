package stream

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"
)

// heldMessage is a fetched record waiting for the watermark, with its event time.
type heldMessage struct {
	msg Message
	at  time.Time
}

// holdBack is a paced consumer's fetched records not handled yet: one queue per partition,
// in offset order.
type holdBack struct {
	queues map[TopicPartition][]heldMessage
	next   map[TopicPartition]int64 // the offset after the last record held or handled
	n      int
	// head caches the earliest event time of each queue; a queue in stale had records taken
	// since and is scanned again by heads. The cache keeps heads from scanning every held
	// record on every batch (up to MaxHeld of them while the consumer is held back).
	head  map[TopicPartition]time.Time
	stale map[TopicPartition]bool
}

func newHoldBack() *holdBack {
	return &holdBack{queues: map[TopicPartition][]heldMessage{}, next: map[TopicPartition]int64{},
		head: map[TopicPartition]time.Time{}, stale: map[TopicPartition]bool{}}
}

// add holds m; a record fetched again (redelivered after a rebalance) is held once.
func (h *holdBack) add(m Message, at time.Time) {
	tp := TopicPartition{m.Topic, m.Partition}
	if next, ok := h.next[tp]; ok && m.Offset < next {
		return
	}
	h.next[tp] = m.Offset + 1
	h.queues[tp] = append(h.queues[tp], heldMessage{msg: m, at: at})
	h.n++
	if cur, ok := h.head[tp]; !h.stale[tp] && (!ok || at.Before(cur)) {
		h.head[tp] = at
	}
}

// heads returns the earliest event time each partition holds.
func (h *holdBack) heads() map[TopicPartition]time.Time {
	out := make(map[TopicPartition]time.Time, len(h.queues))
	for tp, q := range h.queues {
		if h.stale[tp] {
			earliest := q[0].at
			for _, m := range q[1:] {
				if m.at.Before(earliest) {
					earliest = m.at
				}
			}
			h.head[tp] = earliest
			delete(h.stale, tp)
		}
		out[tp] = h.head[tp]
	}
	return out
}

// byHead lists the partitions holding records (the keys of heads), earliest head first.
func byHead(heads map[TopicPartition]time.Time) []TopicPartition {
	tps := make([]TopicPartition, 0, len(heads))
	for tp := range heads {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		if !heads[tps[i]].Equal(heads[tps[j]]) {
			return heads[tps[i]].Before(heads[tps[j]])
		}
		return tps[i].Topic < tps[j].Topic || (tps[i].Topic == tps[j].Topic && tps[i].Partition < tps[j].Partition)
	})
	return tps
}

// take removes and returns up to n records that may go at limit: of each partition, in
// offset order, the records up to its last one at or before limit (so a record out of order
// in its partition never holds back an earlier one), earliest partitions first. heads is
// h.heads().
func (h *holdBack) take(heads map[TopicPartition]time.Time, limit time.Time, n int) []Message {
	var out []Message
	for _, tp := range byHead(heads) {
		if heads[tp].After(limit) {
			break // this partition and every later one hold only records past the limit
		}
		q := h.queues[tp]
		last := -1
		for i, m := range q {
			if !m.at.After(limit) {
				last = i
			}
		}
		if last >= 0 && out == nil {
			out = make([]Message, 0, min(n, h.n)) // grown by appends, a batch was copied several times
		}
		i := 0
		for i <= last && len(out) < n {
			out = append(out, q[i].msg)
			i++
		}
		h.drop(tp, i)
		if len(out) == n {
			break
		}
	}
	return out
}

// takeEarliest removes and returns up to n records of the partition with the earliest head,
// whatever their time. heads is h.heads().
func (h *holdBack) takeEarliest(heads map[TopicPartition]time.Time, n int) []Message {
	tps := byHead(heads)
	if len(tps) == 0 {
		return nil
	}
	q := h.queues[tps[0]]
	k := min(n, len(q))
	out := make([]Message, k)
	for i := range k {
		out[i] = q[i].msg
	}
	h.drop(tps[0], k)
	return out
}

func (h *holdBack) drop(tp TopicPartition, k int) {
	if k == 0 {
		return
	}
	h.n -= k
	if rest := h.queues[tp][k:]; len(rest) > 0 {
		h.queues[tp] = rest
		h.stale[tp] = true
	} else {
		delete(h.queues, tp)
		delete(h.head, tp)
		delete(h.stale, tp)
	}
}

// runPaced is Run with a Pacer: it holds back, per partition, the records more than the
// pacer's limit ahead, hands the rest to the handler, and keeps fetching while it holds
// fewer than MaxHeld records (or while the pipeline waits for a partition of its own).
func (c *Consumer) runPaced(ctx context.Context) error {
	held := newHoldBack()
	const poll = 250 * time.Millisecond
	fetchBackoff := 100 * time.Millisecond
	var pausedSince, lastLog time.Time
	for ctx.Err() == nil {
		heads := held.heads()
		limit, ownHolder, err := c.cfg.Pacer.Admit(ctx, heads)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if time.Since(lastLog) >= 30*time.Second {
				lastLog = time.Now()
				c.log.Warn("event-time alignment cannot read the watermark; holding records", zap.Error(err), zap.Int("held", held.n))
			}
			sleep(ctx, poll)
			continue
		}
		batch := held.take(heads, limit, c.cfg.BatchSize)
		if len(batch) == 0 && held.n >= c.cfg.MaxHeld && ownHolder {
			// The pipeline waits for a partition of this consumer's own, whose records are
			// behind the ones held: let the earliest go rather than stall.
			batch = held.takeEarliest(heads, c.cfg.BatchSize)
			c.log.Warn("holding the most records allowed while the watermark waits for a partition of this consumer: handling the earliest held ones ahead of the alignment lead",
				zap.Int("max_held", c.cfg.MaxHeld))
		}
		c.metrics.setHeld(held.n)
		if len(batch) > 0 {
			if !pausedSince.IsZero() {
				c.log.Info("resumed: the watermark caught up", zap.Duration("paused", time.Since(pausedSince).Round(time.Second)))
				pausedSince = time.Time{}
				c.metrics.setPaused(false)
			}
			work, cancel := c.drainContext(ctx)
			err := c.handle(ctx, work, batch)
			if err == nil {
				c.commit(work, batch)
			}
			cancel()
			if err != nil || ctx.Err() != nil {
				return c.stopped(ctx, err)
			}
			continue
		}
		if held.n < c.cfg.MaxHeld || ownHolder {
			// Fetch more: the partitions behind may be among the next records. While records
			// are held, look at the watermark again every poll even if nothing arrives.
			fetchCtx, cancel := ctx, context.CancelFunc(func() {})
			if held.n > 0 {
				fetchCtx, cancel = context.WithTimeout(ctx, poll)
			}
			msgs, err := c.fetchUpTo(fetchCtx, c.cfg.BatchSize)
			cancel()
			for _, m := range msgs {
				held.add(m, c.cfg.Pacer.TimeOf(m))
			}
			if err != nil && len(msgs) == 0 {
				switch {
				case ctx.Err() != nil:
					return nil
				case errors.Is(err, context.DeadlineExceeded):
				case !Retriable(err):
					return fmt.Errorf("fetching: %w", err)
				default:
					c.metrics.fetchErrors.Inc()
					c.log.Warn("fetch failed with a transient error; retrying", zap.Error(err), zap.Duration("backoff", fetchBackoff))
					sleep(ctx, fetchBackoff)
					fetchBackoff = min(fetchBackoff*2, c.cfg.RetryBackoffMax)
				}
				continue
			}
			fetchBackoff = 100 * time.Millisecond
			continue
		}
		// Holding all it may, ahead of a partition of another service: paused.
		if pausedSince.IsZero() {
			pausedSince = time.Now()
			c.metrics.setPaused(true)
		}
		if time.Since(lastLog) >= 30*time.Second {
			lastLog = time.Now()
			c.log.Warn("paused: more than the alignment lead ahead of the pipeline watermark",
				zap.Time("up_to", limit), zap.Int("held", held.n), zap.Duration("paused", time.Since(pausedSince).Round(time.Second)))
		}
		sleep(ctx, poll)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
