package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// RetryPolicy bounds how an Admin retries Kafka's transient errors: the wait starts at
// Initial, doubles after each failed attempt up to Max, and the operation gives up once the
// next wait would take it past Total since its first attempt.
type RetryPolicy struct {
	Initial time.Duration
	Max     time.Duration
	Total   time.Duration
}

// DefaultRetryPolicy is what NewAdmin uses unless told otherwise: enough for a broker that
// was just started, or a topic just created, to elect its leaders (Kafka 4.x answers
// ListOffsets of a new partition with NOT_LEADER_OR_FOLLOWER for a moment).
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Total: 30 * time.Second}
}

// withDefaults fills the zero fields from DefaultRetryPolicy.
func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.Initial <= 0 {
		p.Initial = d.Initial
	}
	if p.Max <= 0 {
		p.Max = d.Max
	}
	if p.Total <= 0 {
		p.Total = d.Total
	}
	p.Max = max(p.Max, p.Initial)
	return p
}

// backoff is the wait after the given failed attempt (1 for the first).
func (p RetryPolicy) backoff(attempt int) time.Duration {
	d := p.Initial
	for i := 1; i < attempt && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// retriableCode reports whether a Kafka error goes away by itself: leadership or group
// coordination moving (a broker starting or stopping, a topic just created), or a broker too
// busy to answer in time.
func retriableCode(e kafka.Error) bool {
	switch e {
	case kafka.NotLeaderForPartition,
		kafka.LeaderNotAvailable,
		kafka.UnknownTopicOrPartition,
		kafka.GroupLoadInProgress,          // COORDINATOR_LOAD_IN_PROGRESS
		kafka.GroupCoordinatorNotAvailable, // COORDINATOR_NOT_AVAILABLE
		kafka.NotCoordinatorForGroup,       // NOT_COORDINATOR
		kafka.RequestTimedOut,
		kafka.NetworkException,
		kafka.BrokerNotAvailable,
		kafka.NotController,
		kafka.NotEnoughReplicas,
		kafka.KafkaStorageError,
		kafka.FencedLeaderEpoch,
		kafka.UnknownLeaderEpoch,
		kafka.OffsetNotAvailable,
		kafka.PreferredLeaderNotAvailable,
		kafka.UnstableOffsetCommit,
		kafka.ThrottlingQuotaExceeded:
		return true
	}
	return false
}

// Retriable reports whether err is transient: one of Kafka's retriable error codes, a
// network error, or a request that timed out. Cancellation is not; the caller's own
// deadline is checked apart (a request's deadline is the client's per-call timeout).
func Retriable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		return retriableCode(ke)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// retry runs op until it succeeds, fails with an error that is not Retriable, ctx ends, or
// the policy's time budget is spent. what names the operation and topic in the error.
func retry(ctx context.Context, p RetryPolicy, log *zap.Logger, what string, op func(context.Context) error) error {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), err)
		}
		if !Retriable(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		wait := p.backoff(attempt)
		elapsed := time.Since(start)
		if elapsed+wait > p.Total {
			return fmt.Errorf("%s: still failing after %d attempts in %s: %w", what, attempt, elapsed.Round(time.Millisecond), err)
		}
		log.Debug("retrying kafka admin request", zap.String("op", what), zap.Int("attempt", attempt),
			zap.Duration("wait", wait), zap.Error(err))
		if !sleepCtx(ctx, wait) {
			return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), err)
		}
	}
}

// sleepCtx waits for d, or less when ctx ends first; it reports whether it waited d.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
