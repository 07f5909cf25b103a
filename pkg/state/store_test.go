package state_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// TestStoreContract runs the store's contract against every Redis deployment the tests can
// reach: a real standalone server always, and a real Redis Cluster when one is available.
func TestStoreContract(t *testing.T) {
	deployments := map[string]func(t *testing.T) redis.UniversalClient{
		"standalone": func(t *testing.T) redis.UniversalClient {
			c, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return c
		},
		"cluster": func(t *testing.T) redis.UniversalClient {
			addrs := testinfra.RedisCluster(t)
			c, err := redisconn.New(redisconn.Config{Addrs: addrs, Cluster: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return c
		},
	}
	for name, connect := range deployments {
		t.Run(name, func(t *testing.T) {
			rdb := connect(t)
			for _, tc := range contract {
				t.Run(tc.name, func(t *testing.T) {
					keys, err := keyspace.New(testinfra.Name("st"), 8)
					if err != nil {
						t.Fatal(err)
					}
					store, err := state.New(context.Background(), rdb, keys, nil)
					if err != nil {
						t.Fatal(err)
					}
					tc.run(t, rdb, store)
				})
			}
		})
	}
}

var at = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

var contract = []struct {
	name string
	run  func(t *testing.T, rdb redis.UniversalClient, s *state.Store)
}{
	{"a new customer is written with its outbox entry, deadline and histogram in one step", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		res, err := s.Apply(ctx, []string{"c1"}, func(id string, cur map[string]string) (state.Update, error) {
			if len(cur) != 0 {
				t.Errorf("new customer read as %v", cur)
			}
			return state.Update{
				Fields:    map[string]string{"tier": "SILVER", "spend": "50000"},
				Outbox:    []state.OutboxEntry{{Topic: "loyalty.tier-changes.v1", Key: id, EventID: "ev1", Value: []byte{0, 1, 2}}},
				Deadline:  at,
				Histogram: map[string]int64{"m:3": 1},
			}, nil
		})
		if err != nil || res.Written != 1 || res.Outbox != 1 {
			t.Fatalf("Apply: %+v %v", res, err)
		}
		got, err := s.Get(ctx, "c1")
		if err != nil || got["tier"] != "SILVER" || got["spend"] != "50000" || len(got) != 2 {
			t.Fatalf("state %v %v", got, err)
		}
		k := s.Keys()
		shard := k.Shard("c1")
		entries, err := rdb.XRange(ctx, k.Outbox(shard), "-", "+").Result()
		if err != nil || len(entries) != 1 || entries[0].Values["id"] != "ev1" || entries[0].Values["v"] != string([]byte{0, 1, 2}) {
			t.Fatalf("outbox %+v %v", entries, err)
		}
		if d, ok, err := s.Deadline(ctx, "c1"); err != nil || !ok || !d.Equal(at) {
			t.Fatalf("deadline %v %v %v", d, ok, err)
		}
		if n, _ := rdb.HGet(ctx, k.Histogram(shard), "m:3").Int(); n != 1 {
			t.Fatalf("histogram m:3 = %d", n)
		}
	}},
	{"a customer's transition list keeps the newest entries and erasure removes it", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		for round := range 3 { // 3 writes of 9 transitions each: 27, of which the newest 20 stay
			_, err := s.Apply(ctx, []string{"c-tx"}, func(string, map[string]string) (state.Update, error) {
				u := state.Update{Fields: map[string]string{"r": strconv.Itoa(round)}}
				for i := range 9 {
					u.Transitions = append(u.Transitions, fmt.Sprintf("t%02d", 9*round+i))
				}
				return u, nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Transitions(ctx, "c-tx")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != state.MaxTransitions || got[0] != "t26" || got[len(got)-1] != "t07" {
			t.Fatalf("transitions %v: want the newest %d, t26 first and t07 last", got, state.MaxTransitions)
		}
		if _, err := state.EraseCustomer(ctx, rdb, s.Keys(), "c-tx"); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Transitions(ctx, "c-tx"); len(got) != 0 {
			t.Fatalf("after erasure the transitions are %v", got)
		}
	}},
	{"an update that changes nothing writes nothing", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		res, err := s.Apply(context.Background(), []string{"c1"}, func(string, map[string]string) (state.Update, error) {
			return state.Update{}, nil
		})
		if err != nil || res.Written != 0 {
			t.Fatalf("%+v %v", res, err)
		}
		if _, err := s.Get(context.Background(), "c1"); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	}},
	{"a zero deadline removes the scheduled one and removed fields disappear", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		write := func(u state.Update) {
			if _, err := s.Apply(ctx, []string{"c2"}, func(string, map[string]string) (state.Update, error) { return u, nil }); err != nil {
				t.Fatal(err)
			}
		}
		write(state.Update{Fields: map[string]string{"a": "1", "b": "2"}, Deadline: at})
		write(state.Update{Fields: map[string]string{"a": "3"}})
		if _, ok, _ := s.Deadline(ctx, "c2"); ok {
			t.Fatal("deadline still scheduled")
		}
		if got, _ := s.Get(ctx, "c2"); len(got) != 1 || got["a"] != "3" {
			t.Fatalf("state %v", got)
		}
	}},
	{"concurrent writers to the same customers lose no update", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		ids := []string{"a", "b", "c", "d", "e"}
		const writers, rounds = 6, 30
		var wg sync.WaitGroup
		var conflicts sync.Map
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					res, err := s.Apply(ctx, ids, func(_ string, cur map[string]string) (state.Update, error) {
						n, _ := strconv.Atoi(cur["n"])
						return state.Update{Fields: map[string]string{"n": strconv.Itoa(n + 1)}}, nil
					})
					if err != nil {
						t.Error(err)
						return
					}
					if res.Conflicts > 0 {
						conflicts.Store(w, true)
					}
				}
			}()
		}
		wg.Wait()
		for _, id := range ids {
			got, _ := s.Get(ctx, id)
			if got["n"] != strconv.Itoa(writers*rounds) {
				t.Errorf("customer %s counted %s updates, want %d", id, got["n"], writers*rounds)
			}
		}
	}},
	{"a flushed script cache does not fail a write", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, []string{"x", "y", "z"}, func(id string, _ map[string]string) (state.Update, error) {
			return state.Update{Fields: map[string]string{"id": id}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}},
	{"customer hashes stay in the compact listpack encoding", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		fields := map[string]string{}
		for i := range 40 {
			fields[fmt.Sprintf("f%02d", i)] = fmt.Sprintf("%048d", i)
		}
		if _, err := s.Apply(ctx, []string{"big"}, func(string, map[string]string) (state.Update, error) {
			return state.Update{Fields: fields}, nil
		}); err != nil {
			t.Fatal(err)
		}
		enc, err := rdb.ObjectEncoding(ctx, s.Keys().Customer("big")).Result()
		if err != nil || enc != "listpack" {
			t.Fatalf("encoding %q %v", enc, err)
		}
	}},
}
