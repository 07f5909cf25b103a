package state_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/outbox"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
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
					keys, err := keyspace.New(testinfra.Namespace(t, "st"), 8)
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
	{"counters written through journals by racing writers sum exactly, folded and bounded", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		k := s.Keys()
		// Three stores (three services) write overlapping customers at once, so writes are
		// refused and retried (their increments taken off a call's totals), and each store
		// folds the journals it appends to.
		const writers, rounds, customers = 3, 60, 12
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			store, err := state.New(ctx, rdb, k, nil)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range rounds {
					ids := make([]string, customers)
					for i := range ids {
						ids[i] = fmt.Sprintf("j-%d", (i+r+w)%customers)
					}
					_, err := store.Apply(ctx, ids, func(id string, _ state.Current) (state.Update, error) {
						return state.Update{Value: []byte(id), KPI: map[string]int64{"orders": 1, "w:" + strconv.Itoa(w): 2},
							Histogram: map[string]int64{"b:" + strconv.Itoa(r%3): 1, "gone": 1}}, nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		kpis, hists := sumCounters(t, s.ReadKPI), sumCounters(t, s.ReadHistograms)
		total := int64(writers * rounds * customers)
		if kpis["orders"] != total || hists["gone"] != total || hists["b:0"]+hists["b:1"]+hists["b:2"] != total {
			t.Fatalf("orders %d, gone %d, b:* %d+%d+%d: want %d each", kpis["orders"], hists["gone"], hists["b:0"], hists["b:1"], hists["b:2"], total)
		}
		for w := range writers {
			if got := kpis["w:"+strconv.Itoa(w)]; got != int64(2*rounds*customers) {
				t.Errorf("writer %d's counter %d, want %d", w, got, 2*rounds*customers)
			}
		}
		folded := int64(0)
		for shard := range k.Shards() {
			n, _ := rdb.HGet(ctx, k.KPI(shard), "orders").Int64()
			folded += n
			// Each writer folds after 32 appends of its own: a journal never holds many more.
			if n, err := rdb.XLen(ctx, k.Journal(k.KPI(shard))).Result(); err != nil || n > int64(writers*32) {
				t.Errorf("shard %d's KPI journal holds %d entries (%v)", shard, n, err)
			}
		}
		if folded == 0 || folded > total {
			t.Errorf("folded orders %d: want some of the %d in the hashes", folded, total)
		}
		// Dropping a histogram field drops its journaled increments too, for good.
		for shard := range k.Shards() {
			if err := s.DropHistogramFields(ctx, shard, []string{"gone"}); err != nil {
				t.Fatal(err)
			}
		}
		for r := range 2 * 32 {
			if _, err := s.Apply(ctx, []string{"j-0"}, func(string, state.Current) (state.Update, error) {
				return state.Update{Value: []byte{byte(r)}, Histogram: map[string]int64{"b:0": 1}}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if hists := sumCounters(t, s.ReadHistograms); hists["gone"] != 0 || hists["b:0"]+hists["b:1"]+hists["b:2"] != total+64 {
			t.Fatalf("after the drop: gone %d, b:* %d, want 0 and %d", hists["gone"], hists["b:0"]+hists["b:1"]+hists["b:2"], total+64)
		}
	}},
	{"a new customer is written with its outbox entry, deadline and histogram in one step", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		res, err := s.Apply(ctx, []string{"c1"}, func(id string, cur state.Current) (state.Update, error) {
			if !cur.Empty() {
				t.Errorf("new customer read as %+v", cur)
			}
			return state.Update{
				Value:     []byte("SILVER 50000"),
				Outbox:    []state.OutboxEntry{{Topic: "loyalty.tier-changes.v1", EventID: "ev1", Value: []byte{0, 1, 2}}},
				Deadline:  at,
				Histogram: map[string]int64{"m:3": 1},
			}, nil
		})
		if err != nil || res.Written != 1 || res.Outbox != 1 {
			t.Fatalf("Apply: %+v %v", res, err)
		}
		got, err := s.Current(ctx, "c1")
		if err != nil || string(got.Value) != "SILVER 50000" || got.Fields != nil {
			t.Fatalf("state %+v %v", got, err)
		}
		if typ, _ := rdb.Type(ctx, s.Keys().Customer("c1")).Result(); typ != "string" {
			t.Fatalf("the customer is a Redis %s, want one string", typ)
		}
		k := s.Keys()
		shard := k.Shard("c1")
		entries, err := rdb.XRange(ctx, k.Outbox(shard), "-", "+").Result()
		if err != nil || len(entries) != 1 {
			t.Fatalf("outbox %+v %v", entries, err)
		}
		entry, err := outbox.Decode(entries[0].Values)
		if err != nil || entry.Key != "c1" || len(entry.Events) != 1 || entry.Events[0].EventID != "ev1" ||
			string(entry.Events[0].Value) != string([]byte{0, 1, 2}) || entry.Events[0].Topic != "loyalty.tier-changes.v1" {
			t.Fatalf("outbox entry %+v %v", entry, err)
		}
		if d, ok, err := s.Deadline(ctx, "c1"); err != nil || !ok || !d.Equal(at) {
			t.Fatalf("deadline %v %v %v", d, ok, err)
		}
		if n := sumCounters(t, s.ReadHistograms)["m:3"]; n != 1 {
			t.Fatalf("histogram m:3 = %d", n)
		}
	}},
	{"a write's derived events go into one outbox entry, in order, and a refused write adds none", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		source := time.UnixMilli(1_700_000_000_123)
		events := []state.OutboxEntry{
			{Topic: "loyalty.segment-changes.v1", EventID: "seg-1", Value: []byte("segment")},
			{Topic: "loyalty.churn-risk.v1", EventID: "churn-1", Value: []byte("churn"), SourceTime: source},
			{Topic: "loyalty.tier-changes.v1", EventID: "tier-1", Value: []byte{}},
		}
		res, err := s.Apply(ctx, []string{"c7", "c8"}, func(id string, _ state.Current) (state.Update, error) {
			if id == "c8" {
				return state.Update{Value: []byte("x")}, nil // written, no events: no entry
			}
			return state.Update{Value: []byte("x"), Outbox: events}, nil
		})
		if err != nil || res.Written != 2 || res.Outbox != 1 {
			t.Fatalf("Apply: %+v %v", res, err)
		}
		k := s.Keys()
		var got []outbox.Entry
		for shard := range k.Shards() {
			entries, err := rdb.XRange(ctx, k.Outbox(shard), "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				entry, err := outbox.Decode(e.Values)
				if err != nil {
					t.Fatalf("entry %s: %v", e.ID, err)
				}
				got = append(got, entry)
			}
		}
		if len(got) != 1 || got[0].Key != "c7" || len(got[0].Events) != len(events) {
			t.Fatalf("outbox entries %+v, want one of c7 with %d events", got, len(events))
		}
		for i, e := range got[0].Events {
			want := events[i]
			if e.Topic != want.Topic || e.EventID != want.EventID || string(e.Value) != string(want.Value) || !e.SourceTime.Equal(want.SourceTime) {
				t.Errorf("event %d = %+v, want %+v", i, e, want)
			}
		}
		// A write refused for its version adds nothing to the outbox: another writer gets to c7
		// first, so the first computation's events are dropped and only the retry's are added.
		shard := k.Shard("c7")
		before, err := rdb.XLen(ctx, k.Outbox(shard)).Result()
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		res, err = s.Apply(ctx, []string{"c7"}, func(string, state.Current) (state.Update, error) {
			calls++
			if calls == 1 {
				if _, err := s.Apply(ctx, []string{"c7"}, func(string, state.Current) (state.Update, error) {
					return state.Update{Value: []byte("other")}, nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			return state.Update{Value: []byte("y"), Outbox: events[:1]}, nil
		})
		if err != nil || res.Conflicts != 1 || res.Written != 1 || res.Outbox != 1 || calls != 2 {
			t.Fatalf("Apply after a concurrent write: %+v %v after %d computations, want one conflict, then one entry", res, err, calls)
		}
		if after, err := rdb.XLen(ctx, k.Outbox(shard)).Result(); err != nil || after != before+1 {
			t.Fatalf("the outbox went from %d to %d entries (%v), want one more", before, after, err)
		}
	}},
	{"a customer's transition list keeps the newest entries and erasure removes it", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		for round := range 3 { // 3 writes of 9 transitions each: 27, of which the newest 20 stay
			_, err := s.Apply(ctx, []string{"c-tx"}, func(string, state.Current) (state.Update, error) {
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
	{"with Concurrency 2 a call's chunks overlap, and every customer is written once", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		s.Chunk, s.Concurrency = 10, 2
		ids := make([]string, 45) // five chunks, the last one short
		for i := range ids {
			ids[i] = fmt.Sprintf("c%02d", i)
		}
		secondChunkComputed := make(chan struct{})
		var calls atomic.Int32
		res, err := s.Apply(ctx, ids, func(id string, _ state.Current) (state.Update, error) {
			calls.Add(1)
			switch id {
			case ids[0]: // the first chunk is still in flight when the second is computed
				select {
				case <-secondChunkComputed:
				case <-time.After(10 * time.Second):
					return state.Update{}, errors.New("the second chunk was not computed while the first was in flight")
				}
			case ids[10]:
				close(secondChunkComputed)
			}
			return state.Update{Fields: map[string]string{"id": id},
				Outbox: []state.OutboxEntry{{Topic: "t", EventID: id + "-e", Value: []byte("v")}}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Written != len(ids) || res.Outbox != len(ids) || res.Conflicts != 0 || calls.Load() != int32(len(ids)) {
			t.Fatalf("result %+v after %d computations, want %d written with an outbox entry each", res, calls.Load(), len(ids))
		}
		for _, id := range ids {
			if f, err := s.Get(ctx, id); err != nil || f["id"] != id {
				t.Fatalf("customer %s: %v (%v)", id, f, err)
			}
		}
		// A failing chunk fails the call, after the chunks in flight have ended.
		_, err = s.Apply(ctx, ids, func(id string, _ state.Current) (state.Update, error) {
			if id == ids[23] {
				return state.Update{}, errors.New("boom")
			}
			return state.Update{Fields: map[string]string{"id": id, "round": "2"}}, nil
		})
		if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), ids[23]) {
			t.Fatalf("a failing computation: %v", err)
		}
	}},
	{"an update that changes nothing writes nothing", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		res, err := s.Apply(context.Background(), []string{"c1"}, func(string, state.Current) (state.Update, error) {
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
			if _, err := s.Apply(ctx, []string{"c2"}, func(string, state.Current) (state.Update, error) { return u, nil }); err != nil {
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
					res, err := s.Apply(ctx, ids, func(_ string, cur state.Current) (state.Update, error) {
						n, _ := strconv.Atoi(string(cur.Value))
						return state.Update{Value: []byte(strconv.Itoa(n + 1))}, nil
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
			got, _ := s.Current(ctx, id)
			if string(got.Value) != strconv.Itoa(writers*rounds) {
				t.Errorf("customer %s counted %s updates, want %d", id, got.Value, writers*rounds)
			}
		}
	}},
	{"a flushed script cache does not fail a write", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, []string{"x", "y", "z"}, func(id string, _ state.Current) (state.Update, error) {
			return state.Update{Value: []byte(id)}, nil
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
		if _, err := s.Apply(ctx, []string{"big"}, func(string, state.Current) (state.Update, error) {
			return state.Update{Fields: fields}, nil
		}); err != nil {
			t.Fatal(err)
		}
		enc, err := rdb.ObjectEncoding(ctx, s.Keys().Customer("big")).Result()
		if err != nil || enc != "listpack" {
			t.Fatalf("encoding %q %v", enc, err)
		}
	}},
	{"a state hash of the former layout is read with its version, and the next write replaces it with the compact value", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		key := s.Keys().Customer("old")
		st := scoring.State{CustomerID: "old", ClockMs: 1_700_000_000_000, EvalDay: 19_700, TierDay: 19_700, Tier: 2, BaseTier: 2}
		fields := st.MarshalFields()
		fields["_v"] = "7"
		if err := rdb.HSet(ctx, key, fields).Err(); err != nil {
			t.Fatal(err)
		}
		calls := 0
		res, err := s.Apply(ctx, []string{"old"}, func(_ string, cur state.Current) (state.Update, error) {
			calls++
			got, err := cur.State()
			if err != nil || cur.Fields == nil || !reflect.DeepEqual(got, st) {
				t.Errorf("read %+v (%v), want the hash's state %+v", cur, err, st)
			}
			if calls == 1 { // a writer of the former layout gets there first: a conflict
				if err := rdb.HSet(ctx, key, "_v", "8").Err(); err != nil {
					t.Fatal(err)
				}
			}
			value, err := got.AppendBinary(nil)
			return state.Update{Value: value}, err
		})
		if err != nil || res.Written != 1 || res.Conflicts != 1 || calls != 2 {
			t.Fatalf("Apply: %+v %v after %d computations, want one conflict, then the write", res, err, calls)
		}
		if typ, _ := rdb.Type(ctx, key).Result(); typ != "string" {
			t.Fatalf("after the write the customer is a Redis %s, want the compact string", typ)
		}
		cur, err := s.Current(ctx, "old")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := cur.State(); err != nil || !reflect.DeepEqual(got, st) {
			t.Fatalf("compact state %+v %v, want %+v", got, err, st)
		}
		// The version went on from the hash's: a writer that read version 8 conflicts no more,
		// one that read the hash's 7 would.
		res, err = s.Apply(ctx, []string{"old"}, func(string, state.Current) (state.Update, error) {
			return state.Update{Value: cur.Value}, nil
		})
		if err != nil || res.Written != 1 || res.Conflicts != 0 {
			t.Fatalf("second write: %+v %v", res, err)
		}
	}},
	{"MigrateHashes converts the former layout in place and leaves tombstones and compact values alone", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		k := s.Keys()
		var want []scoring.State
		for i := range 30 {
			ms := int64(1_700_000_000_000 + i)
			st := scoring.State{CustomerID: fmt.Sprintf("m-%02d", i), ClockMs: ms, TierClockMs: ms, EvalDay: 19_700, TierDay: 19_700,
				PurchaseDays: 1, FirstDay: 19_690, LastDay: 19_690, Window: []scoring.DayNet{{Day: 19_690, Net: int64(100 * i), Purchase: true}}}
			fields := st.MarshalFields()
			fields["_v"] = "3"
			if err := rdb.HSet(ctx, k.Customer(st.CustomerID), fields).Err(); err != nil {
				t.Fatal(err)
			}
			want = append(want, st)
		}
		if err := rdb.HSet(ctx, k.Customer("tomb"), state.QuarantinedField, "why", "_v", "1").Err(); err != nil {
			t.Fatal(err)
		}
		m, err := state.MigrateHashes(ctx, rdb, k)
		if err != nil || m.Migrated != 30 || m.Tombstones != 1 || m.Compact != 0 {
			t.Fatalf("first migration: %+v %v", m, err)
		}
		for _, st := range want {
			cur, err := s.Current(ctx, st.CustomerID)
			if err != nil || cur.Value == nil {
				t.Fatalf("%s: %+v %v, want a compact value", st.CustomerID, cur, err)
			}
			if got, err := cur.State(); err != nil || !reflect.DeepEqual(got, st) {
				t.Fatalf("%s migrated to %+v %v, want %+v", st.CustomerID, got, err, st)
			}
		}
		if typ, _ := rdb.Type(ctx, k.Customer("tomb")).Result(); typ != "hash" {
			t.Fatalf("the tombstone became a %s", typ)
		}
		m, err = state.MigrateHashes(ctx, rdb, k)
		if err != nil || m.Migrated != 0 || m.Compact != 30 || m.Tombstones != 1 {
			t.Fatalf("second migration: %+v %v, want nothing left to do", m, err)
		}
	}},
	{"a refused write's increments are taken off the call's totals; the others' are applied once", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		k := s.Keys()
		ids := []string{"inc-a", "inc-b", "inc-c", "inc-d", "inc-e", "inc-f"}
		if err := rdb.HSet(ctx, k.Customer("inc-a"), "_v", "1", "n", "0").Err(); err != nil {
			t.Fatal(err)
		}
		calls := map[string]int{}
		var mu sync.Mutex
		res, err := s.Apply(ctx, ids, func(id string, _ state.Current) (state.Update, error) {
			mu.Lock()
			calls[id]++
			first := calls[id] == 1
			mu.Unlock()
			if id == "inc-a" && first { // another writer moves inc-a's version: refused once
				if err := rdb.HSet(ctx, k.Customer("inc-a"), "_v", "2").Err(); err != nil {
					t.Fatal(err)
				}
			}
			return state.Update{Value: []byte(id), KPI: map[string]int64{"orders": 1, "rev:" + id: 100},
				Histogram: map[string]int64{"m:1": 2}, Deadline: at}, nil
		})
		if err != nil || res.Written != len(ids) || res.Conflicts != 1 {
			t.Fatalf("Apply: %+v %v, want %d written after one conflict", res, err, len(ids))
		}
		// Each customer's increments count once, wherever its shard's were summed.
		kpis, hists := sumCounters(t, s.ReadKPI), sumCounters(t, s.ReadHistograms)
		orders, hist := kpis["orders"], hists["m:1"]
		if orders != int64(len(ids)) || hist != int64(2*len(ids)) {
			t.Fatalf("orders %d, histogram m:1 %d: want %d and %d", orders, hist, len(ids), 2*len(ids))
		}
		for _, id := range ids {
			if v := kpis["rev:"+id]; v != 100 {
				t.Errorf("%s's own counter is %d, want 100", id, v)
			}
			if _, ok, _ := s.Deadline(ctx, id); !ok {
				t.Errorf("%s has no deadline", id)
			}
		}
	}},
	{"one write checks the version of every kind of key it finds, and writes only the unchanged", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		k := s.Keys()
		value := func(id string) state.ComputeFunc {
			return func(string, state.Current) (state.Update, error) { return state.Update{Value: []byte("v1 " + id)}, nil }
		}
		compact := []string{"v-compact", "v-junk", "v-empty", "v-compact-moved"}
		for _, id := range compact {
			if _, err := s.Apply(ctx, []string{id}, value(id)); err != nil {
				t.Fatal(err)
			}
		}
		old := scoring.State{CustomerID: "x", ClockMs: 1_700_000_000_000, EvalDay: 19_700, TierDay: 19_700}
		for _, id := range []string{"v-hash", "v-hash-moved"} {
			fields := old.MarshalFields()
			fields["_v"] = "3"
			if err := rdb.HSet(ctx, k.Customer(id), fields).Err(); err != nil {
				t.Fatal(err)
			}
		}
		// Between the store's read and its write, other writers change five of the customers:
		// a key appears as a list, a compact value is overwritten with text and with nothing,
		// a hash's version and a compact value's version move on.
		changed := map[string]func() error{
			"v-list":       func() error { return rdb.RPush(ctx, k.Customer("v-list"), "x").Err() },
			"v-junk":       func() error { return rdb.Set(ctx, k.Customer("v-junk"), "garbage", 0).Err() },
			"v-empty":      func() error { return rdb.Set(ctx, k.Customer("v-empty"), "", 0).Err() },
			"v-hash-moved": func() error { return rdb.HSet(ctx, k.Customer("v-hash-moved"), "_v", "4").Err() },
			"v-compact-moved": func() error {
				_, err := s.Apply(ctx, []string{"v-compact-moved"}, value("other"))
				return err
			},
		}
		ids := []string{"v-new", "v-compact", "v-hash", "v-list", "v-junk", "v-empty", "v-hash-moved", "v-compact-moved"}
		res, left, err := s.ApplyOnce(ctx, ids, func(id string, _ state.Current) (state.Update, error) {
			if change, ok := changed[id]; ok {
				if err := change(); err != nil {
					t.Fatal(err)
				}
			}
			return state.Update{Value: []byte("v2 " + id)}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(left)
		want := slices.Sorted(maps.Keys(changed))
		if res.Written != 3 || !slices.Equal(left, want) {
			t.Fatalf("ApplyOnce: %+v, left %v; want 3 written and %v left", res, left, want)
		}
		for _, id := range []string{"v-new", "v-compact", "v-hash"} {
			cur, err := s.Current(ctx, id)
			if err != nil || string(cur.Value) != "v2 "+id {
				t.Errorf("%s: %q %v, want the write's value", id, cur.Value, err)
			}
		}
		for id, want := range map[string]string{"v-list": "list", "v-junk": "string", "v-empty": "string", "v-hash-moved": "hash"} {
			if typ, _ := rdb.Type(ctx, k.Customer(id)).Result(); typ != want {
				t.Errorf("%s is a Redis %s after a refused write, want the other writer's %s", id, typ, want)
			}
		}
		if got, _ := rdb.Get(ctx, k.Customer("v-junk")).Result(); got != "garbage" {
			t.Errorf("v-junk holds %q after a refused write", got)
		}
		if cur, err := s.Current(ctx, "v-compact-moved"); err != nil || string(cur.Value) != "v1 other" {
			t.Errorf("v-compact-moved: %q %v, want the other writer's value", cur.Value, err)
		}
	}},
	{"a string that is not a compact state is handed over as unreadable", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		if err := rdb.Set(ctx, s.Keys().Customer("junk"), "garbage", 0).Err(); err != nil {
			t.Fatal(err)
		}
		cur, err := s.Current(ctx, "junk")
		if err != nil || cur.Unreadable == "" || cur.Value != nil {
			t.Fatalf("read %+v %v, want unreadable", cur, err)
		}
		if _, err := cur.State(); !errors.Is(err, scoring.ErrCorruptState) {
			t.Fatalf("State: %v, want ErrCorruptState", err)
		}
	}},
	{"one read of many shards tells every kind of key apart", func(t *testing.T, rdb redis.UniversalClient, s *state.Store) {
		ctx := context.Background()
		k := s.Keys()
		// Compact values of several shards, written through the store.
		var compact []string
		for i := range 24 {
			compact = append(compact, fmt.Sprintf("r-%d", i))
		}
		if _, err := s.Apply(ctx, compact, func(id string, _ state.Current) (state.Update, error) {
			return state.Update{Value: []byte("value of " + id)}, nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := rdb.Set(ctx, k.Customer("r-junk"), "garbage", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.HSet(ctx, k.Customer("r-hash"), "_v", "3", "tier", "GOLD").Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.RPush(ctx, k.Customer("r-list"), "x").Err(); err != nil {
			t.Fatal(err)
		}
		ids := append([]string{"r-missing", "r-junk", "r-hash", "r-list"}, compact...)
		seen := map[string]state.Current{}
		if _, err := s.Apply(ctx, ids, func(id string, cur state.Current) (state.Update, error) {
			seen[id] = cur
			return state.Update{}, nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, id := range compact {
			if cur := seen[id]; string(cur.Value) != "value of "+id || cur.Fields != nil || cur.Unreadable != "" {
				t.Errorf("%s read as %+v", id, cur)
			}
		}
		if cur := seen["r-missing"]; !cur.Empty() {
			t.Errorf("a customer never written read as %+v", cur)
		}
		if cur := seen["r-junk"]; cur.Unreadable == "" || cur.Value != nil {
			t.Errorf("a string that is no compact state read as %+v", cur)
		}
		if cur := seen["r-hash"]; cur.Fields["tier"] != "GOLD" || cur.Value != nil || cur.Unreadable != "" {
			t.Errorf("a hash of the former layout read as %+v", cur)
		}
		if cur := seen["r-list"]; cur.Unreadable == "" || cur.Fields != nil {
			t.Errorf("a list read as %+v", cur)
		}
	}},
}

// sumCounters sums every shard's counters as a reader sees them (hash and journal).
func sumCounters(t *testing.T, read func(context.Context) ([]state.ShardHistogram, error)) map[string]int64 {
	t.Helper()
	shards, err := read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sum := map[string]int64{}
	for _, sh := range shards {
		for f, n := range sh.Counters {
			sum[f] += n
		}
	}
	return sum
}
