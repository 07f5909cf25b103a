package relay_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/relay"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

type memoryPublisher struct {
	mu   sync.Mutex
	got  []stream.Record
	fail bool
}

func (p *memoryPublisher) Produce(_ context.Context, recs ...stream.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return errors.New("kafka unavailable")
	}
	p.got = append(p.got, recs...)
	return nil
}

func setup(t *testing.T, customers int) (redis.UniversalClient, keyspace.Keyspace) {
	t.Helper()
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	keys, _ := keyspace.New(testinfra.Name("relay"), 8)
	store, err := state.New(context.Background(), rdb, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		ids := make([]string, customers)
		for i := range ids {
			ids[i] = fmt.Sprintf("c%d", i)
		}
		_, err := store.Apply(context.Background(), ids, func(id string, _ map[string]string) (state.Update, error) {
			return state.Update{Fields: map[string]string{"r": fmt.Sprint(round)},
				Outbox: []state.OutboxEntry{{Topic: "loyalty.tier-changes.v1", Key: id, EventID: fmt.Sprintf("%s-%d", id, round), Value: []byte("v")}}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return rdb, keys
}

func outboxLen(t *testing.T, rdb redis.UniversalClient, keys keyspace.Keyspace) int64 {
	var n int64
	for s := range keys.Shards() {
		n += rdb.XLen(context.Background(), keys.Outbox(s)).Val()
	}
	return n
}

func TestEntriesArePublishedInOrderPerCustomerAndRemovedOnlyAfterAcknowledgement(t *testing.T) {
	rdb, keys := setup(t, 20)
	pub := &memoryPublisher{fail: true}
	r, err := relay.New(context.Background(), relay.Config{}, rdb, keys, pub, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pass(context.Background()); err == nil {
		t.Fatal("a failed publish must fail the pass")
	}
	if n := outboxLen(t, rdb, keys); n != 60 {
		t.Fatalf("outbox holds %d entries after a failed publish, want all 60", n)
	}
	pub.fail = false
	for outboxLen(t, rdb, keys) > 0 {
		if _, err := r.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(pub.got) != 60 {
		t.Fatalf("published %d, want 60", len(pub.got))
	}
	last := map[string]string{}
	for _, rec := range pub.got {
		id := string(rec.Headers[0].Value)
		if prev, ok := last[string(rec.Key)]; ok && prev >= id {
			t.Fatalf("customer %s: %s published after %s", rec.Key, id, prev)
		}
		last[string(rec.Key)] = id
	}
}

func TestTwoRelaysNeverPublishTheSameEntryTwice(t *testing.T) {
	rdb, keys := setup(t, 200)
	pub := &memoryPublisher{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 2 {
		r, err := relay.New(ctx, relay.Config{Owner: fmt.Sprint("relay-", i), BatchSize: 7}, rdb, keys, pub, nil, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(ctx) }()
	}
	deadline := time.Now().Add(30 * time.Second)
	for outboxLen(t, rdb, keys) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	seen := map[string]int{}
	for _, rec := range pub.got {
		seen[string(rec.Headers[0].Value)]++
	}
	if len(seen) != 600 {
		t.Fatalf("published %d distinct events, want 600", len(seen))
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("%s published %d times", id, n)
		}
	}
}

func TestAReplayWithoutOutputsDropsEntriesWithoutPublishing(t *testing.T) {
	rdb, keys := setup(t, 5)
	pub := &memoryPublisher{}
	r, _ := relay.New(context.Background(), relay.Config{TopicFor: func(string) string { return "" }}, rdb, keys, pub, nil, zaptest.NewLogger(t))
	for outboxLen(t, rdb, keys) > 0 {
		if _, err := r.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(pub.got) != 0 {
		t.Fatalf("published %d records", len(pub.got))
	}
}
