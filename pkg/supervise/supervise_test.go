package supervise_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/supervise"
)

func TestTheFirstTaskToReturnStopsTheOthersAndItsErrorIsReturned(t *testing.T) {
	boom := errors.New("boom")
	stopped := make(chan struct{})
	var g supervise.Group
	g.Add(func(context.Context) error { return boom }, func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return ctx.Err()
	})
	if err := g.Run(context.Background()); !errors.Is(err, boom) || errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want boom alone", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the other task was not stopped before Run returned")
	}
}

func TestACleanReturnStopsTheGroupWithoutError(t *testing.T) {
	var g supervise.Group
	g.Add(func(context.Context) error { return nil }, func(ctx context.Context) error { <-ctx.Done(); return nil })
	done := make(chan error, 1)
	go func() { done <- g.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the group kept running after a task returned")
	}
}

func TestEveryFailureIsReported(t *testing.T) {
	a, b := errors.New("a"), errors.New("b")
	var g supervise.Group
	g.Add(func(context.Context) error { return a }, func(ctx context.Context) error { <-ctx.Done(); return b })
	if err := g.Run(context.Background()); !errors.Is(err, a) || !errors.Is(err, b) {
		t.Fatalf("got %v, want both", err)
	}
}
