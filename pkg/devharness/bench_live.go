package devharness

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/e2e"
)

// liveStartAllowance is how long after generating a live run's events the first is due: the
// time the services take to start.
const liveStartAllowance = 30 * time.Second

type lagSample struct {
	at  time.Time
	lag float64
}

// sampleLag scrapes the sweeper's loyalty_watermark_lag_seconds every half second until the
// returned function is called, which returns the samples.
func sampleLag(ctx context.Context, sweeperAddr, opsToken string) func() []lagSample {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan []lagSample, 1)
	go func() {
		var out []lagSample
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				done <- out
				return
			case <-t.C:
			}
			m, err := scrape(ctx, sweeperAddr, opsToken)
			if v, ok := m["loyalty_watermark_lag_seconds"]; err == nil && ok && v > 0 {
				out = append(out, lagSample{at: time.Now(), lag: v})
			}
		}
	}()
	return func() []lagSample { cancel(); return <-done }
}

// outageRun stops a service at a time and starts it again after a while.
type outageRun struct {
	service              string
	stoppedAt, resumedAt time.Time
	restarted            *e2e.Process
	done                 chan error
}

func (b *bench) startOutage(ctx context.Context, cluster *e2e.Cluster, procs map[string]*e2e.Process, service string, at time.Time, length time.Duration) *outageRun {
	o := &outageRun{service: service, done: make(chan error, 1)}
	stopping := procs[service]
	go func() {
		time.Sleep(time.Until(at))
		b.say("outage: stopping %s for %s", service, length)
		o.stoppedAt = time.Now()
		if err := stopping.Stop(20 * time.Second); err != nil {
			b.say("outage: %s stopped with %v", service, err)
		}
		time.Sleep(time.Until(o.stoppedAt.Add(length)))
		p, err := cluster.Start(ctx, service)
		if err != nil {
			o.done <- fmt.Errorf("outage: restarting %s: %w", service, err)
			return
		}
		o.restarted, o.resumedAt = p, time.Now()
		b.say("outage: %s restarted after %s", service, o.resumedAt.Sub(o.stoppedAt).Round(time.Second))
		o.done <- nil
	}()
	return o
}

func (o *outageRun) wait() error { return <-o.done }

// liveWarmUp is the start of a live run left out of its steady-state figures: the services'
// first fetches, connections and scripts, and the broker's JIT.
const liveWarmUp = 10 * time.Second

// steadyState reports whether at is in a live run's steady state: after the warm-up from
// start and, with an outage, before it began.
func steadyState(at, start time.Time, outage *outageRun) bool {
	return !at.Before(start.Add(liveWarmUp)) && (outage == nil || at.Before(outage.stoppedAt))
}

// summarizeLag fills the watermark-lag figures: the steady state after a 10 s warm-up and
// before any outage, then the outage's worst lag and the recovery after the restart.
// The recovery compares the watermark with the newest event produced by then (event time is
// produce time), so the pause after the last produce does not count as lag.
func (r *BenchReport) summarizeLag(samples []lagSample, start, produced time.Time, outage *outageRun) {
	var steady []float64
	for _, s := range samples {
		if steadyState(s.at, start, outage) {
			steady = append(steady, s.lag)
		}
	}
	slices.Sort(steady)
	r.WatermarkLagSamples = len(steady)
	if len(steady) > 0 {
		r.WatermarkLagP50, r.WatermarkLagP99, r.WatermarkLagMax = quantile(steady, 0.5), quantile(steady, 0.99), steady[len(steady)-1]
	}
	if outage == nil {
		return
	}
	r.OutageService = outage.service
	r.OutageSeconds = outage.resumedAt.Sub(outage.stoppedAt).Seconds()
	r.RecoverySeconds = -1
	for _, s := range samples {
		if s.at.Before(outage.stoppedAt) {
			continue
		}
		r.OutageLagMax = max(r.OutageLagMax, s.lag)
		behind := s.lag - max(0, s.at.Sub(produced).Seconds())
		if !s.at.Before(outage.resumedAt) && behind <= r.WatermarkLagP50+5 {
			r.RecoverySeconds = s.at.Sub(outage.resumedAt).Seconds()
			return
		}
	}
}
