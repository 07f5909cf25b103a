package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/population"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// CutpointWatch keeps a scorer under its namespace's sealed cut points: it loads them once at
// start, then polls for the next sealed boundary. Until a service sees a boundary sealed it
// closes no day after the next one, so the poll is short: it is what a backlog waits for at
// every boundary.
type CutpointWatch struct {
	Redis  redisconn.Client
	Keys   keyspace.Keyspace
	Scorer *Scorer
	Every  time.Duration // 0: 100ms
	Log    *zap.Logger
}

// Load follows the sealed cut points once.
func (w CutpointWatch) Load(ctx context.Context) error {
	sealed, ok, err := namespace.LoadSealedCutpoints(ctx, w.Redis, w.Keys)
	if err != nil {
		return err
	}
	moved, err := w.Scorer.Follow(sealed, ok)
	if err != nil {
		return fmt.Errorf("sealed cut points of %s: %w", sealed.Date, err)
	}
	if moved && ok {
		version := w.Scorer.Policy().Cutpoints.Version
		w.Log.Debug("following sealed cut points", zap.String("boundary", sealed.Date), zap.String("version", version))
	}
	return nil
}

// Run watches until ctx ends.
func (w CutpointWatch) Run(ctx context.Context) error {
	every := w.Every
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	return EveryTick(ctx, every, w.Load, w.Log, "reading the sealed cut points failed; days after the next boundary wait", "reading the sealed cut points recovered")
}

// CutpointDeriver seals the population cut points boundary after boundary. A boundary is
// complete once the watermark has closed its day and no customer of any shard has a deadline
// at or before that closing: every customer's evaluation has passed the boundary day, adding
// its RFM measures to its shard's histogram in the same write (boundary days are re-check
// days, so every customer has such a deadline until it has). The deriver then takes the
// quantiles of the summed histograms as the boundary's cut points (population.MinCustomers at
// least, else the previous ones stay in force), seals them and drops the boundary's counters.
//
// The first boundary sealed is the one before the earliest customer's first boundary, once
// the watermark has closed it: it has no population. Sealing depends only on the history, so a
// replay seals the same boundaries with the same cut points. Several derivers (one per
// sweeper) may run; sealing is compare-and-set, and they derive the same cut points.
type CutpointDeriver struct {
	Redis      redisconn.Client
	Store      *state.Store
	Watermarks *watermark.Tracker
	// Required lists the watermark fields that must have reported (see SweeperConfig).
	Required func(ctx context.Context) ([]string, error)
	// Policy is the namespace's policy: its boundary days and allowed lateness.
	Policy *scoring.Policy
	Poll   time.Duration // 0: 100ms
	Log    *zap.Logger
	// FitWorkers is how many goroutines a refit takes its likelihood on (0 or 1: its own);
	// the model is the same either way. A replay, which owns the machine and whose merge
	// waits for every refit, sets GOMAXPROCS; the sweeper service keeps one, since the helpers
	// spin between evaluations and take CPU the consumers and Redis need in a backlog
	// (btyd.FitBGNBDPenalizedOn).
	FitWorkers int

	sealedAt   prometheus.Gauge
	fitSeconds prometheus.Histogram
}

// MetricChurnModelFitSeconds is the deriver's histogram of refit times (a replay's summary
// reads its count and sum).
const MetricChurnModelFitSeconds = "loyalty_churn_model_fit_seconds"

// NewCutpointDeriver returns a deriver; reg may be nil.
func NewCutpointDeriver(d CutpointDeriver, reg prometheus.Registerer) *CutpointDeriver {
	d.sealedAt = prometheus.NewGauge(prometheus.GaugeOpts{Name: "loyalty_cutpoints_sealed_boundary_seconds",
		Help: "End of the last cut-point boundary day sealed (Unix seconds); it trails the watermark by less than the boundary distance plus the allowed lateness."})
	d.fitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricChurnModelFitSeconds,
		Help: "Time to fit the churn models (BG/NBD and Gamma-Gamma) at a refit boundary.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 8)})
	if reg != nil {
		reg.MustRegister(d.sealedAt, d.fitSeconds)
	}
	if d.Poll <= 0 {
		d.Poll = 100 * time.Millisecond
	}
	return &d
}

// Run seals boundaries until ctx ends.
func (d *CutpointDeriver) Run(ctx context.Context) error {
	failing := false
	for ctx.Err() == nil {
		sealed, err := d.Step(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			d.Log.Warn("sealing cut points failed; retrying", zap.Error(err))
		case err == nil && failing:
			failing = false
		}
		if !sealed {
			select {
			case <-ctx.Done():
			case <-time.After(d.Poll):
			}
		}
	}
	return nil
}

// Step seals the next boundary if it is complete, and reports whether it did.
func (d *CutpointDeriver) Step(ctx context.Context) (bool, error) {
	cur, ok, err := namespace.LoadSealedCutpoints(ctx, d.Redis, d.Store.Keys())
	if err != nil {
		return false, err
	}
	if ok {
		d.sealedAt.Set(float64((cur.Boundary + 1).Start().Unix()))
	}
	var required []string
	if d.Required != nil {
		if required, err = d.Required(ctx); err != nil {
			return false, err
		}
	}
	wm, known, err := d.Watermarks.Clock(ctx, required...)
	if err != nil || !known {
		return false, err
	}
	p := d.Policy
	if !ok {
		return d.bootstrap(ctx, wm)
	}
	b := scoring.NextBoundary(cur.Boundary, p)
	closes := scoring.DayCloses(b, p)
	if wm.Before(closes) {
		return false, nil
	}
	// While the sweeper works through the boundary, only the earliest deadlines are read
	// (every poll); the histograms, once, when they can be complete.
	if due, err := d.Store.FirstDue(ctx); err != nil || (!due.IsZero() && !due.After(closes)) {
		return false, err
	}
	shards, firstDue, err := d.readHistograms(ctx)
	if err != nil || (!firstDue.IsZero() && !firstDue.After(closes)) {
		return false, err // customers still to evaluate through the boundary
	}
	h := population.NewHistograms()
	for _, sh := range shards {
		for f, n := range sh.Counters {
			h.Add(b, f, n)
		}
	}
	next := namespace.SealedCutpoints{Boundary: b, Date: date(b), Population: h.Customers(), Cutpoints: cur.Cutpoints, Model: cur.Model}
	cp, err := h.Cutpoints("rfm-" + date(b))
	switch {
	case err == nil:
		next.Cutpoints, next.Derived = &cp, true
	case !errors.Is(err, population.ErrTooSmall):
		return false, err
	}
	if p.Churn.Refit.At(b) {
		d.refit(&next, h)
	}
	return d.seal(ctx, next, shards)
}

// refit fits the churn model on the boundary's population. A population below the policy's
// minimum, or a fit that does not converge, keeps the model in force, with a note: the fit is
// a function of the history, so retrying would fail the same way, and a replay keeps the same
// model.
func (d *CutpointDeriver) refit(next *namespace.SealedCutpoints, h population.Histograms) {
	start := time.Now()
	m, err := h.FitModel(next.Boundary, d.Policy, d.FitWorkers)
	if err != nil {
		next.ModelNote = err.Error()
		lvl := d.Log.Warn
		if errors.Is(err, population.ErrTooLittleData) {
			lvl = d.Log.Info
		}
		lvl("churn model not refitted; the model in force stays", zap.String("boundary", next.Date), zap.Error(err))
		return
	}
	next.Model, next.ModelFitted = m, true
	d.fitSeconds.Observe(time.Since(start).Seconds())
	d.Log.Info("churn model refitted", zap.String("boundary", next.Date), zap.String("version", m.Version),
		zap.Int64("customers", m.Customers), zap.Int64("repeat_customers", m.RepeatCustomers),
		zap.Float64("r", m.BGNBD.R), zap.Float64("alpha", m.BGNBD.Alpha), zap.Float64("a", m.BGNBD.A), zap.Float64("b", m.BGNBD.B))
}

// bootstrap seals the namespace's first boundary: the one before the earliest customer's
// first boundary, once the watermark has closed it (no customer has data up to it).
func (d *CutpointDeriver) bootstrap(ctx context.Context, wm time.Time) (bool, error) {
	firstDue, err := d.Store.FirstDue(ctx)
	if err != nil || firstDue.IsZero() {
		return false, err // no customer yet
	}
	// The earliest deadline is a day's closing; that day's boundary is every customer's first.
	p := d.Policy
	day := scoring.DayOf(firstDue.Add(-p.AllowedLateness)) - 1
	start := scoring.NextBoundary(day-1, p) - scoring.Day(p.Segments.CutpointsEveryDays)
	if wm.Before(scoring.DayCloses(start, p)) {
		return false, nil
	}
	shards, _, err := d.readHistograms(ctx)
	if err != nil {
		return false, err
	}
	return d.seal(ctx, namespace.SealedCutpoints{Boundary: start, Date: date(start)}, shards)
}

// readHistograms reads every shard's histogram and returns the earliest deadline of all.
func (d *CutpointDeriver) readHistograms(ctx context.Context) ([]state.ShardHistogram, time.Time, error) {
	shards, err := d.Store.ReadHistograms(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	var firstDue time.Time
	for _, sh := range shards {
		if due := sh.FirstDue; !due.IsZero() && (firstDue.IsZero() || due.Before(firstDue)) {
			firstDue = due
		}
	}
	return shards, firstDue, nil
}

// seal stores a sealed boundary and drops the histogram counters of it and earlier ones.
func (d *CutpointDeriver) seal(ctx context.Context, s namespace.SealedCutpoints, shards []state.ShardHistogram) (bool, error) {
	done, err := namespace.SealCutpoints(ctx, d.Redis, d.Store.Keys(), s)
	if err != nil || !done {
		return false, err
	}
	for i, sh := range shards {
		var drop []string
		for f := range sh.Counters {
			if b, ok := population.BoundaryOf(f); !ok || b <= s.Boundary {
				drop = append(drop, f)
			}
		}
		if err := d.Store.DropHistogramFields(ctx, i, drop); err != nil {
			return true, err
		}
	}
	d.sealedAt.Set(float64((s.Boundary + 1).Start().Unix()))
	fields := []zap.Field{zap.String("boundary", s.Date), zap.Int64("population", s.Population)}
	if s.Cutpoints != nil {
		fields = append(fields, zap.String("version", s.Cutpoints.Version), zap.Bool("derived", s.Derived))
	}
	d.Log.Info("cut points sealed", fields...)
	return true, nil
}

func date(d scoring.Day) string { return d.Start().Format(time.DateOnly) }
