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
	// BacklogLag is how far the watermark must be behind the wall clock, beyond the allowed
	// lateness, for the sweeper to sweep at re-check days only while the watermark moves
	// (scoring.LastRecheckCloses): in a backlog or a replay the customers' deadlines between
	// two re-check days are then taken in one evaluation each, not one per deadline. Once the
	// watermark has not moved for a second, or is closer than this, every deadline it passed is
	// swept. Results do not depend on it, only when they are published. Zero means a day;
	// negative turns it off.
	BacklogLag time.Duration
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
	if c.BacklogLag == 0 {
		c.BacklogLag = 24 * time.Hour
	}
	return c
}

// MetricSweeperEvaluations counts the customers a sweeper evaluated at their deadlines (a
// replay's summary and bench-e2e read it).
const MetricSweeperEvaluations = "loyalty_sweeper_evaluations_total"

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
	// clock and clockMoved are the clock of the last pass and when it last changed.
	clock, clockMoved time.Time
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
	evaluated := prometheus.NewCounter(prometheus.CounterOpts{Name: MetricSweeperEvaluations,
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
	clock = s.backlogClock(clock)
	held, err := s.leases.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	// One round trip reads every held shard's due customers; they are evaluated in calls of up
	// to sweepChunk customers, spanning shards (Store.SpanShards), a few calls at once so the
	// round trips of one overlap the computation of another. Redis spends most of a write on
	// fixed costs per call: between boundaries a pass finds a few customers per shard, and a
	// call per shard would pay them for each.
	due, err := s.store.DueIn(ctx, held, clock, s.cfg.BatchSize)
	if err != nil {
		return 0, err
	}
	var ids []string
	for _, d := range due {
		ids = append(ids, d...)
	}
	var (
		total atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		slots = make(chan struct{}, sweepConcurrency)
	)
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), sweepChunk)]
		ids = ids[len(chunk):]
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			// A customer another writer changed since it was read stays due if it still is,
			// and the next pass takes it: a consumer that wrote it closed its days too.
			res, left, err := s.store.ApplyOnce(ctx, chunk, s.scorer.EvaluateCompute(clock))
			s.cfg.Outbox.Added(res.Outbox)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("evaluating %d due customers: %w", len(chunk), err))
				mu.Unlock()
				return
			}
			total.Add(int64(len(chunk) - len(left)))
			s.evaluated.Add(float64(len(chunk) - len(left)))
		}()
	}
	wg.Wait()
	return int(total.Load()), errors.Join(errs...)
}

// backlogClock is the clock a pass sweeps at: clock itself, or, while the watermark moves
// more than BacklogLag behind the wall clock, the closing of the last re-check day it passed
// (SweeperConfig.BacklogLag).
func (s *Sweeper) backlogClock(clock time.Time) time.Time {
	now := s.cfg.Now()
	if !clock.Equal(s.clock) {
		s.clock, s.clockMoved = clock, now
	}
	p := s.scorer.Policy()
	if s.cfg.BacklogLag < 0 || now.Sub(clock) <= p.AllowedLateness+s.cfg.BacklogLag || now.Sub(s.clockMoved) >= backlogStill {
		return clock
	}
	return scoring.LastRecheckCloses(clock, p)
}

// backlogStill is how long the watermark must stand still before a sweeper behind it sweeps
// every deadline it passed: a bounded replay's, or one held by a stopped consumer.
const backlogStill = time.Second

// sweepConcurrency is how many calls a sweeper pass has in flight at once; sweepChunk is the
// most customers one call evaluates.
const (
	sweepConcurrency = 4
	sweepChunk       = 500
)
