package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/lease"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// SweeperConfig configures the inactivity sweeper.
type SweeperConfig struct {
	// BatchSize is the most due customers evaluated per shard per pass.
	BatchSize int
	// Poll is the pause after a pass that found nothing due.
	Poll     time.Duration
	LeaseTTL time.Duration
	Owner    string
	// Now is the wall clock the watermark lag is measured against; nil means time.Now.
	Now func() time.Time
	// Required lists the watermark fields (watermark.Field) that must have reported before
	// the clock is trusted: every input partition holding records. Nil requires none.
	Required func(ctx context.Context) ([]string, error)
	// Outbox, when not nil, holds a pass back while the namespace's outboxes are at their
	// bound (the pass fails and is retried).
	Outbox *OutboxBound
}

func (c SweeperConfig) withDefaults() SweeperConfig {
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.Poll == 0 {
		c.Poll = 200 * time.Millisecond
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.Owner == "" {
		c.Owner = lease.DefaultOwner()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Sweeper evaluates customers whose inactivity deadline the pipeline watermark has passed.
// It is a service of its own (services/sweeper) rather than a goroutine in every consumer:
// its clock needs the watermark of all three input topics, and one process per shard is
// enough work. Several sweepers split the shards with leases and take over from a dead one.
type Sweeper struct {
	cfg        SweeperConfig
	store      *state.Store
	scorer     *Scorer
	watermarks *watermark.Tracker
	leases     *lease.Set
	evaluated  prometheus.Counter
	lag        prometheus.Gauge
	log        *zap.Logger
}

// NewSweeper returns a sweeper; reg may be nil.
func NewSweeper(ctx context.Context, cfg SweeperConfig, rdb redisconn.Client, store *state.Store, scorer *Scorer,
	wm *watermark.Tracker, reg prometheus.Registerer, log *zap.Logger) (*Sweeper, error) {
	cfg = cfg.withDefaults()
	keys := store.Keys()
	leases, err := lease.NewSet(ctx, rdb, cfg.Owner, cfg.LeaseTTL, keys.Leases("sweeper"))
	if err != nil {
		return nil, err
	}
	evaluated := prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_sweeper_evaluations_total",
		Help: "Customers evaluated because their inactivity deadline passed."})
	lag := prometheus.NewGauge(prometheus.GaugeOpts{Name: "loyalty_watermark_lag_seconds",
		Help: "Wall clock minus the pipeline's event-time watermark. Live and caught up it is the allowed lateness plus a heartbeat; it grows while a consumer is down or behind (see docs/operations.md)."})
	lateness := prometheus.NewGauge(prometheus.GaugeOpts{Name: "loyalty_watermark_allowed_lateness_seconds",
		Help: "The policy's allowed lateness: the watermark lag of a live, caught-up pipeline (alerts compare the lag with it)."})
	lateness.Set(scorer.Policy().AllowedLateness.Seconds())
	if reg != nil {
		reg.MustRegister(evaluated, lag, lateness)
	}
	return &Sweeper{cfg: cfg, store: store, scorer: scorer, watermarks: wm, leases: leases, evaluated: evaluated, lag: lag, log: log}, nil
}

// Run sweeps until ctx is cancelled.
func (s *Sweeper) Run(ctx context.Context) error {
	defer func() { _ = s.leases.Release(context.WithoutCancel(ctx)) }()
	for ctx.Err() == nil {
		n, err := s.Pass(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("sweep failed; retrying", zap.Error(err))
		}
		if n == 0 || err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(s.cfg.Poll):
			}
		}
	}
	return nil
}

// Pass evaluates the due customers of every held shard once and returns how many it
// evaluated.
func (s *Sweeper) Pass(ctx context.Context) (int, error) {
	var required []string
	if s.cfg.Required != nil {
		var err error
		if required, err = s.cfg.Required(ctx); err != nil {
			return 0, err
		}
	}
	clock, ok, err := s.watermarks.Clock(ctx, required...)
	if err != nil || !ok {
		return 0, err
	}
	s.lag.Set(max(s.cfg.Now().Sub(clock), 0).Seconds())
	if err := s.cfg.Outbox.Check(ctx); err != nil {
		return 0, err
	}
	// Days after the next cut-point boundary wait for its cut points: customers due beyond it
	// are left for later rather than picked up again and again.
	clock = scoring.CloseBound(clock, s.scorer.Policy())
	if clock.IsZero() {
		return 0, nil
	}
	held, err := s.leases.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	// Shards are independent: evaluate a few at once, so the round trips of one overlap the
	// computation of another (at a boundary every customer is due).
	var (
		total atomic.Int64
		wg    sync.WaitGroup
		errs  = make([]error, len(held))
		slots = make(chan struct{}, sweepConcurrency)
	)
	for i, shard := range held {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			ids, err := s.store.Due(ctx, shard, clock, s.cfg.BatchSize)
			if err != nil || len(ids) == 0 {
				errs[i] = err
				return
			}
			res, err := s.store.Apply(ctx, ids, s.scorer.EvaluateCompute(clock))
			s.cfg.Outbox.Added(res.Outbox)
			if err != nil {
				errs[i] = fmt.Errorf("evaluating shard %d: %w", shard, err)
				return
			}
			total.Add(int64(len(ids)))
			s.evaluated.Add(float64(len(ids)))
		}()
	}
	wg.Wait()
	return int(total.Load()), errors.Join(errs...)
}

// sweepConcurrency is how many shards a sweeper evaluates at once.
const sweepConcurrency = 4
