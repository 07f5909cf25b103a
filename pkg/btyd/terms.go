package btyd

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// termChunk is how many groups' terms a goroutine of a likelihood evaluation takes at a time.
const termChunk = 512

// maxTermWorkers bounds the goroutines of one fit's likelihood evaluations.
const maxTermWorkers = 8

// termPool takes the terms of a fit's likelihood evaluations on several cores. A refit
// evaluates its likelihood hundreds of times over every group, and a boundary's cut points
// wait for it (in a replay, so does the merge), so each evaluation's terms can be split into
// chunks that the fitting goroutine and the pool's helpers take in turn. The helpers stay
// awake, spinning and yielding, between evaluations for the length of one fit: a goroutine
// woken for each evaluation started too late to help (waking an idle core took 0.1–0.3 ms on
// the development VM, against about 0.7 ms for an evaluation of 18,000 groups). So a fit
// that owns the machine gains, and one on a machine busy with other work takes CPU from it
// (see FitBGNBDPenalizedOn). Chunks only fill their own terms and the caller sums them in
// index order (sumInOrder), so a fit is the same bits on any number of cores.
type termPool struct {
	cur  atomic.Pointer[evaluation]
	stop atomic.Bool
	wg   sync.WaitGroup
}

// evaluation is one likelihood evaluation's chunks, taken in turn.
type evaluation struct {
	fill   func(lo, hi int)
	n      int
	chunks int64
	next   atomic.Int64 // the next chunk to take
	done   atomic.Int64 // chunks filled
}

// newTermPool returns a pool of up to workers goroutines (the caller's included, at most
// GOMAXPROCS) for a fit over n groups, or nil when one goroutine is enough. Close it when the
// fit ends.
func newTermPool(n, workers int) *termPool {
	workers = min(workers, runtime.GOMAXPROCS(0), maxTermWorkers, (n+termChunk-1)/termChunk)
	if workers <= 1 {
		return nil
	}
	p := &termPool{}
	for range workers - 1 {
		p.wg.Go(p.help)
	}
	return p
}

// help takes chunks of each evaluation until the pool is closed.
func (p *termPool) help() {
	var last *evaluation
	for !p.stop.Load() {
		e := p.cur.Load()
		if e == nil || e == last {
			runtime.Gosched()
			continue
		}
		last = e
		e.take()
	}
}

// take fills chunks of e until none is left.
func (e *evaluation) take() {
	for {
		c := e.next.Add(1) - 1
		if c >= e.chunks {
			return
		}
		lo := int(c) * termChunk
		e.fill(lo, min(lo+termChunk, e.n))
		e.done.Add(1)
	}
}

// fillTerms has fill compute the terms of groups [lo, hi) for chunks covering [0, n), on the
// pool's goroutines and the caller's, and returns when all are filled; p nil fills them all
// on the caller's.
func (p *termPool) fillTerms(n int, fill func(lo, hi int)) {
	if p == nil {
		fill(0, n)
		return
	}
	e := &evaluation{fill: fill, n: n, chunks: int64((n + termChunk - 1) / termChunk)}
	p.cur.Store(e)
	e.take()
	for e.done.Load() < e.chunks {
		runtime.Gosched()
	}
}

// close stops the pool's helpers.
func (p *termPool) close() {
	if p == nil {
		return
	}
	p.stop.Store(true)
	p.wg.Wait()
}

// sumInOrder adds the terms from the first to the last.
func sumInOrder(terms []float64) float64 {
	var sum float64
	for _, v := range terms {
		sum += v
	}
	return sum
}
