package pipeline

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// KPISnapshot is a namespace's KPI counters summed over its shards, with what says which days
// are final.
type KPISnapshot struct {
	Counters *kpi.Counters
	// Watermark is the pipeline watermark when read (zero: unknown), FirstDue the earliest
	// customer deadline over the shards (zero: none).
	Watermark, FirstDue time.Time
	// Complete is the last day whose KPIs are final (kpi.CompleteThrough); HasComplete is false
	// while no day is.
	Complete    scoring.Day
	HasComplete bool
	// Fields is the number of stored counters read.
	Fields int
}

// Quality is the churn model's quality report of every observation day, oldest first, with
// each horizon final as far as the snapshot's complete days reach (none while no day is).
func (s KPISnapshot) Quality(p *scoring.Policy) []kpi.QualityReport {
	complete := s.Complete
	if !s.HasComplete {
		complete = math.MinInt32
	}
	out := []kpi.QualityReport{}
	for _, d := range s.Counters.QualityDays() {
		out = append(out, s.Counters.Quality(d, complete, p))
	}
	return out
}

// ReadKPIs reads a namespace's KPI counters and its watermark. The counters and earliest
// deadline of each shard are read atomically; the watermark first, so a day it closed cannot
// be reported final before its changes are counted.
func ReadKPIs(ctx context.Context, store *state.Store, marks *watermark.Tracker, p *scoring.Policy) (KPISnapshot, error) {
	reading, err := marks.Read(ctx)
	if err != nil {
		return KPISnapshot{}, err
	}
	shards, err := store.ReadKPI(ctx)
	if err != nil {
		return KPISnapshot{}, fmt.Errorf("reading the KPIs: %w", err)
	}
	snap := KPISnapshot{Counters: kpi.NewCounters()}
	if reading.Known {
		snap.Watermark = reading.At
	}
	for _, sh := range shards {
		snap.Counters.AddAll(sh.Counters)
		snap.Fields += len(sh.Counters)
		if !sh.FirstDue.IsZero() && (snap.FirstDue.IsZero() || sh.FirstDue.Before(snap.FirstDue)) {
			snap.FirstDue = sh.FirstDue
		}
	}
	snap.Complete, snap.HasComplete = kpi.CompleteThrough(snap.Watermark, snap.FirstDue, p)
	return snap, nil
}
