// Package supervise runs the long-lived tasks of one process as a unit: a consumer loop, the
// ops server, the watch for a promoted namespace, periodic refreshes. When any task returns,
// with or without an error, the others are cancelled, and the group returns once all of them
// have stopped. Every binary of the pipeline and the notifier run their tasks this way, so a
// failing task always stops its process instead of leaving it half alive.
package supervise

import (
	"context"
	"errors"
	"sync"
)

// Task is one long-lived part of a process. It runs until ctx ends (returning nil) or it
// fails.
type Task func(ctx context.Context) error

// Group is a set of tasks that run and stop together. The zero value is an empty group.
type Group struct {
	tasks []Task
}

// Add adds tasks to the group; call it before Run.
func (g *Group) Add(tasks ...Task) { g.tasks = append(g.tasks, tasks...) }

// Run runs every task until the first returns or ctx ends, then cancels the rest and waits
// for them. It returns the tasks' errors joined, in the order the tasks were added; a
// context.Canceled returned by a task stopped by that cancellation is not an error.
func (g *Group) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(g.tasks))
	for i, task := range g.tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			errs[i] = task(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if errors.Is(err, context.Canceled) {
			errs[i] = nil
		}
	}
	return errors.Join(errs...)
}
