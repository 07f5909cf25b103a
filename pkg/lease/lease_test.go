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

func TestEveryAcquisitionGetsAGreaterTokenAndARenewalKeepsIt(t *testing.T) {
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	key := testinfra.Name("lease") + ":{s0}"
	a, err := lease.NewSet(ctx, rdb, "a", time.Minute, []string{key})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := lease.NewSet(ctx, rdb, "b", time.Minute, []string{key})
	acquire := func(s *lease.Set) []lease.Grant {
		t.Helper()
		g, err := s.AcquireFenced(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}

	first := acquire(a)
	if len(first) != 1 || first[0].Token < 1 || first[0].Key != key {
		t.Fatalf("a's first acquisition: %+v", first)
	}
	a.Forget() // as a third of the TTL later: the acquisition goes to Redis and renews
	if again := acquire(a); len(again) != 1 || again[0].Token != first[0].Token || again[0].Value != first[0].Value {
		t.Fatalf("renewing by acquisition changed the grant: %+v then %+v", first, again)
	}
	if g := acquire(b); len(g) != 0 {
		t.Fatalf("b got %+v while a holds the lease", g)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b.Forget() // b's last acquisition, which found the lease held, is no longer recent
	second := acquire(b)
	if len(second) != 1 || second[0].Token <= first[0].Token {
		t.Fatalf("b took the released lease with %+v after token %d", second, first[0].Token)
	}
	// The lease expires as Redis would expire it: the key is gone, the fence counter stays.
	if err := rdb.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if held, err := b.Renew(ctx, second); err != nil || len(held) != 0 {
		t.Fatalf("b renewed an expired lease: %+v, %v", held, err)
	}
	third := acquire(a)
	if len(third) != 1 || third[0].Token <= second[0].Token {
		t.Fatalf("a took the expired lease with %+v after token %d", third, second[0].Token)
	}
	// Renewal goes by token, not by owner: a's grant from before the release stays lost.
	if held, err := a.Renew(ctx, first); err != nil || len(held) != 0 {
		t.Fatalf("a renewed its stale grant %+v: %+v, %v", first, held, err)
	}
	held, err := a.Renew(ctx, third)
	if err != nil || len(held) != 1 || held[0].Token != third[0].Token || !held[0].Until.After(third[0].Until) {
		t.Fatalf("a could not renew its current grant %+v: %+v, %v", third, held, err)
	}
}

func TestAFencedScriptRefusesAGrantWhoseLeaseMovedOn(t *testing.T) {
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	p := testinfra.Name("lease")
	key, guarded := p+":{s0}", p+":guarded:{s0}"
	write := redisconn.NewScript("fenced-incr", lease.FenceCheck+`return redis.call('INCR', KEYS[2])`)
	a, _ := lease.NewSet(ctx, rdb, "a", time.Minute, []string{key})
	b, _ := lease.NewSet(ctx, rdb, "b", time.Minute, []string{key})
	ga, err := a.AcquireFenced(ctx)
	if err != nil || len(ga) != 1 {
		t.Fatalf("a: %+v, %v", ga, err)
	}
	if err := write.Run(ctx, rdb, []string{key, guarded}, ga[0].Value).Err(); err != nil {
		t.Fatalf("the holder's fenced write failed: %v", err)
	}
	if err := rdb.Del(ctx, key).Err(); err != nil { // a's lease expires
		t.Fatal(err)
	}
	if gb, err := b.AcquireFenced(ctx); err != nil || len(gb) != 1 {
		t.Fatalf("b: %+v, %v", gb, err)
	}
	err = write.Run(ctx, rdb, []string{key, guarded}, ga[0].Value).Err()
	if !lease.Fenced(err) {
		t.Fatalf("a's write after b took over: %v, want a fenced refusal", err)
	}
	if n, _ := rdb.Get(ctx, guarded).Int(); n != 1 {
		t.Fatalf("guarded key is %d, want only the holder's write", n)
	}
}

func TestLeaseKeysNeedAHashTagForTheirFence(t *testing.T) {
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if _, err := lease.NewSet(context.Background(), rdb, "a", time.Minute, []string{"lease:untagged"}); err == nil {
		t.Fatal("a key without a hash tag was accepted")
	}
}

// Within a third of the TTL an acquisition answers from the last one, without Redis; after
// Forget (or that long) it asks Redis again, which here finds the lease gone and takes it
// with a new token.
func TestAcquisitionsWithinAThirdOfTheTTLAnswerFromTheLastOne(t *testing.T) {
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	key := testinfra.Name("lease") + ":{s0}"
	const ttl = 900 * time.Millisecond
	a, err := lease.NewSet(ctx, rdb, "a", ttl, []string{key})
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.AcquireFenced(ctx)
	if err != nil || len(first) != 1 {
		t.Fatalf("first acquisition: %+v, %v", first, err)
	}
	if err := rdb.Del(ctx, key).Err(); err != nil { // the lease is gone in Redis
		t.Fatal(err)
	}
	if cached, err := a.AcquireFenced(ctx); err != nil || len(cached) != 1 || cached[0].Token != first[0].Token {
		t.Fatalf("an acquisition right after the first went to Redis: %+v, %v", cached, err)
	}
	if exists, _ := rdb.Exists(ctx, key).Result(); exists != 0 {
		t.Fatal("the cached acquisition wrote the lease")
	}
	a.Forget()
	again, err := a.AcquireFenced(ctx)
	if err != nil || len(again) != 1 || again[0].Token <= first[0].Token {
		t.Fatalf("after Forget: %+v, %v (first token %d)", again, err, first[0].Token)
	}
	time.Sleep(ttl/3 + 50*time.Millisecond)
	if err := rdb.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	late, err := a.AcquireFenced(ctx)
	if err != nil || len(late) != 1 || late[0].Token <= again[0].Token {
		t.Fatalf("a third of the TTL later: %+v, %v (previous token %d)", late, err, again[0].Token)
	}
}
