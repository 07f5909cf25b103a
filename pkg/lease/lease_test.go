package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/lease"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

func TestALeaseHasOneHolderUntilReleasedOrExpired(t *testing.T) {
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	p := testinfra.Name("lease")
	keys := []string{p + ":{s0}", p + ":{s1}"}
	a, _ := lease.NewSet(ctx, rdb, "a", 300*time.Millisecond, keys)
	b, _ := lease.NewSet(ctx, rdb, "b", 300*time.Millisecond, keys)
	if held, err := a.Acquire(ctx); err != nil || len(held) != 2 {
		t.Fatalf("a holds %v, %v", held, err)
	}
	if held, _ := b.Acquire(ctx); len(held) != 0 {
		t.Fatalf("b took %v while a holds them", held)
	}
	if held, _ := a.Acquire(ctx); len(held) != 2 {
		t.Fatalf("a could not renew: %v", held)
	}
	time.Sleep(400 * time.Millisecond) // a stops renewing, as if crashed
	if held, _ := b.Acquire(ctx); len(held) != 2 {
		t.Fatalf("b did not take over expired leases: %v", held)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if held, _ := a.Acquire(ctx); len(held) != 2 {
		t.Fatalf("a could not take released leases: %v", held)
	}
}
