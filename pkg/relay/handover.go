package relay

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// Drain publishes what the relay's namespace holds in its outboxes and returns once every
// outbox shard has been empty for idle, releasing its leases. It is how a namespace retired
// by a promote hands over: its services stop within seconds of the promote (some after its
// own relay did), so the relay of the promoted namespace drains the retired one until nothing
// more can arrive, under the retired namespace's leases, so it never overlaps a relay of the
// retired namespace still running. It returns nil when ctx ends first.
func (r *Relay) Drain(ctx context.Context, idle time.Duration) error {
	defer func() {
		if err := r.leases.Release(context.WithoutCancel(ctx)); err != nil {
			r.log.Warn("releasing relay leases", zap.Error(err))
		}
	}()
	quietSince := time.Now()
	backoff := r.cfg.IdlePoll
	for ctx.Err() == nil {
		n, err := r.Pass(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.metrics.errors.Inc()
			r.log.Warn("relay pass over a retired namespace failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			backoff = min(backoff*2, 5*time.Second)
		case n > 0:
			quietSince, backoff = time.Now(), r.cfg.IdlePoll
			continue
		case time.Since(quietSince) >= idle:
			empty, err := r.empty(ctx)
			if err != nil {
				r.log.Warn("reading the outbox lengths of a retired namespace", zap.Error(err))
			} else if empty {
				return nil
			}
			quietSince = time.Now()
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	return nil
}

// empty reports whether every outbox shard of the namespace is empty.
func (r *Relay) empty(ctx context.Context) (bool, error) {
	depths, err := state.OutboxDepths(ctx, r.rdb, r.keys)
	if err != nil {
		return false, err
	}
	for _, d := range depths {
		if d > 0 {
			return false, nil
		}
	}
	return true, nil
}
