package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/lease"
	"github.com/loyalty-scoring/loyalty/pkg/outbox"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/relay"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// recorder keeps what a fake sink was given, or fails as Kafka would while fail is set.
type recorder[T any] struct {
	mu   sync.Mutex
	got  []T
	fail bool
}

func (r *recorder[T]) add(items []T) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("kafka unavailable")
	}
	r.got = append(r.got, items...)
	return nil
}

type memoryPublisher struct{ recorder[stream.Record] }

func (p *memoryPublisher) Produce(_ context.Context, recs ...stream.Record) error { return p.add(recs) }

func setup(t *testing.T, customers int) (redis.UniversalClient, keyspace.Keyspace) {
	t.Helper()
	rdb, keys, store := newOutbox(t, 8)
	for round := range 3 {
		derive(t, store, customers, round)
	}
	return rdb, keys
}

// newOutbox returns a client, a fresh keyspace of the given shards and its store.
func newOutbox(t *testing.T, shards int) (redis.UniversalClient, keyspace.Keyspace, *state.Store) {
	t.Helper()
	rdb := testinfra.RedisClient(t)
	keys, _ := keyspace.New(testinfra.Namespace(t, "relay"), shards)
	store, err := state.New(context.Background(), rdb, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rdb, keys, store
}

// derive writes one derived event for each of customers c0..c<n-1>, with event id
// "c<i>-<round>", to the outbox.
func derive(t *testing.T, store *state.Store, customers, round int) {
	t.Helper()
	ids := make([]string, customers)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%d", i)
	}
	_, err := store.Apply(context.Background(), ids, func(id string, _ state.Current) (state.Update, error) {
		return state.Update{Fields: map[string]string{"r": fmt.Sprint(round)},
			Outbox: []state.OutboxEntry{{Topic: "loyalty.tier-changes.v1", EventID: fmt.Sprintf("%s-%d", id, round), Value: []byte("v")}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
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
	pub := &memoryPublisher{}
	pub.fail = true
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
		id := eventID(rec)
		if prev, ok := last[string(rec.Key)]; ok && prev >= id {
			t.Fatalf("customer %s: %s published after %s", rec.Key, id, prev)
		}
		last[string(rec.Key)] = id
	}
}

func TestAWritesEventsArePublishedInOrderAndEntriesOfTheFormerLayoutToo(t *testing.T) {
	rdb, keys, store := newOutbox(t, 1)
	ctx := context.Background()
	// An entry of the former layout, one event per entry, still waiting from before an
	// upgrade (the notifier writes its actions so too).
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Outbox(0), Values: []any{
		"t", "loyalty.tier-changes.v1", "k", "c1", "id", "c1-old", "v", "former"}}).Err(); err != nil {
		t.Fatal(err)
	}
	events := []state.OutboxEntry{
		{Topic: "loyalty.segment-changes.v1", EventID: "c1-seg", Value: []byte("segment")},
		{Topic: "loyalty.churn-risk.v1", EventID: "c1-churn", Value: []byte("churn"), SourceTime: time.Now()},
		{Topic: "loyalty.tier-changes.v1", EventID: "c1-tier", Value: []byte("tier")},
	}
	if _, err := store.Apply(ctx, []string{"c1"}, func(string, state.Current) (state.Update, error) {
		return state.Update{Fields: map[string]string{"r": "1"}, Outbox: events}, nil
	}); err != nil {
		t.Fatal(err)
	}
	entries, err := rdb.XRange(ctx, keys.Outbox(0), "-", "+").Result()
	if err != nil || len(entries) != 2 {
		t.Fatalf("outbox holds %d entries (%v), want the former one and one for the write", len(entries), err)
	}
	pub := &memoryPublisher{}
	r, err := relay.New(ctx, relay.Config{}, rdb, keys, pub, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.Pass(ctx)
	if err != nil || n != 4 {
		t.Fatalf("pass published %d records (%v), want 4", n, err)
	}
	want := []struct{ topic, id, value string }{{"loyalty.tier-changes.v1", "c1-old", "former"},
		{"loyalty.segment-changes.v1", "c1-seg", "segment"}, {"loyalty.churn-risk.v1", "c1-churn", "churn"}, {"loyalty.tier-changes.v1", "c1-tier", "tier"}}
	if len(pub.got) != len(want) {
		t.Fatalf("published %d records, want %d", len(pub.got), len(want))
	}
	for i, rec := range pub.got {
		if rec.Topic != want[i].topic || eventID(rec) != want[i].id || string(rec.Value) != want[i].value || string(rec.Key) != "c1" {
			t.Errorf("record %d: %s %s=%s key %s, want %+v", i, rec.Topic, eventID(rec), rec.Value, rec.Key, want[i])
		}
		// Each record names the entry it came from: the former entry, then the write's.
		entry := entries[min(i, 1)]
		if got := header(rec, relay.HeaderOutboxEntry); got != entry.ID {
			t.Errorf("record %d (%s) names outbox entry %q, want %q", i, eventID(rec), got, entry.ID)
		}
		if at, ok := relay.OutboxEntryTime(rec.Headers); !ok || at.UnixMilli() != entryMillis(t, entry.ID) {
			t.Errorf("record %d: outbox entry time %v (%v), want the milliseconds of %s", i, at, ok, entry.ID)
		}
	}
	if _, ok := relay.OutboxEntryTime([]stream.Header{{Key: relay.HeaderEventID, Value: []byte("x")}}); ok {
		t.Error("a record without the outbox entry header has an entry time")
	}
	if n := outboxLen(t, rdb, keys); n != 0 {
		t.Fatalf("%d entries left after the pass", n)
	}
}

// deadLetters is a dead-letter sink that keeps what it gets, or fails.
type deadLetters struct{ recorder[stream.Rejection] }

func (d *deadLetters) DeadLetter(_ context.Context, r []stream.Rejection) error { return d.add(r) }

func TestAnUnreadableEntryGoesToTheDeadLetterTopicAndItsShardGoesOn(t *testing.T) {
	rdb, keys, _ := newOutbox(t, 1)
	ctx := context.Background()
	for _, values := range [][]any{
		{"t", "loyalty.tier-changes.v1", "k", "c1", "id", "c1-1", "v", "first"},
		{"k", "c2", "e", "\x01\x09"}, // truncated: a length past the end
		{"t", "loyalty.tier-changes.v1", "k", "c3", "v", "no event id"},
		{"t", "loyalty.tier-changes.v1", "k", "c1", "id", "c1-2", "v", "second"},
	} {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Outbox(0), Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	pub, dlq := &memoryPublisher{}, &deadLetters{}
	dlq.fail = true
	r, err := relay.New(ctx, relay.Config{DeadLetter: dlq}, rdb, keys, pub, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// While the dead-letter topic refuses them, nothing of the batch is published or deleted.
	if _, err := r.Pass(ctx); err == nil || !strings.Contains(err.Error(), "dead-lettering 2 unreadable entries") {
		t.Fatalf("pass with the dead-letter topic down: %v, want the failure", err)
	}
	if n := outboxLen(t, rdb, keys); n != 4 || len(pub.got) != 0 {
		t.Fatalf("%d entries left and %d events published after a failed dead-lettering, want all 4 left and none published", n, len(pub.got))
	}
	dlq.fail = false
	if n, err := r.Pass(ctx); err != nil || n != 2 {
		t.Fatalf("pass published %d (%v), want the 2 readable events", n, err)
	}
	if len(pub.got) != 2 || eventID(pub.got[0]) != "c1-1" || eventID(pub.got[1]) != "c1-2" {
		t.Fatalf("published %+v, want c1-1 then c1-2", pub.got)
	}
	if len(dlq.got) != 2 {
		t.Fatalf("dead-lettered %d entries, want 2", len(dlq.got))
	}
	for i, want := range []struct{ key, value string }{{"c2", "\x01\x09"}, {"c3", "no event id"}} {
		rej := dlq.got[i]
		if rej.Code != "corrupt_outbox_entry" || !errors.Is(rej.Err, outbox.ErrCorrupt) || string(rej.Message.Key) != want.key ||
			string(rej.Message.Value) != want.value || rej.Message.Topic != keys.Outbox(0) || rej.Message.Offset <= 0 {
			t.Errorf("dead letter %d: %+v (%v), want key %s, value %q from %s", i, rej.Message, rej.Err, want.key, want.value, keys.Outbox(0))
		}
	}
	if n := outboxLen(t, rdb, keys); n != 0 {
		t.Fatalf("%d entries left, want none", n)
	}
}

func TestWithoutADeadLetterSinkAnUnreadableEntryFailsItsShardAndWaits(t *testing.T) {
	rdb, keys, _ := newOutbox(t, 1)
	ctx := context.Background()
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Outbox(0), Values: []any{"k", "c1", "e", "\x01\x09"}}).Err(); err != nil {
		t.Fatal(err)
	}
	pub := &memoryPublisher{}
	r, err := relay.New(ctx, relay.Config{}, rdb, keys, pub, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pass(ctx); !errors.Is(err, outbox.ErrCorrupt) || !strings.Contains(err.Error(), "outbox shard 0 entry") {
		t.Fatalf("pass over a corrupt entry: %v, want outbox.ErrCorrupt naming the entry", err)
	}
	if len(pub.got) != 0 || outboxLen(t, rdb, keys) != 1 {
		t.Fatalf("published %d, %d entries left; want nothing published and the entry kept", len(pub.got), outboxLen(t, rdb, keys))
	}
}

func TestAnEntryOfALaterLayoutWaitsForAnUpgradedRelay(t *testing.T) {
	rdb, keys, _ := newOutbox(t, 1)
	ctx := context.Background()
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Outbox(0), Values: []any{"k", "c1", "e", "\x02later"}}).Err(); err != nil {
		t.Fatal(err)
	}
	pub, dlq := &memoryPublisher{}, &deadLetters{}
	r, err := relay.New(ctx, relay.Config{DeadLetter: dlq}, rdb, keys, pub, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pass(ctx); !errors.Is(err, outbox.ErrUnknownLayout) {
		t.Fatalf("pass over an entry of a later layout: %v, want outbox.ErrUnknownLayout", err)
	}
	if len(pub.got) != 0 || len(dlq.got) != 0 || outboxLen(t, rdb, keys) != 1 {
		t.Fatalf("published %d, dead-lettered %d, %d entries left; want the entry kept for an upgraded relay", len(pub.got), len(dlq.got), outboxLen(t, rdb, keys))
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
		seen[eventID(rec)]++
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

// kafkaLog is the topic as consumers see it: records in the order they landed.
type kafkaLog struct {
	mu   sync.Mutex
	recs []stream.Record
}

func (l *kafkaLog) land(recs []stream.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, recs...)
}

func (l *kafkaLog) records() []stream.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// logPublisher lands every produce at once.
type logPublisher struct{ log *kafkaLog }

func (p logPublisher) Produce(_ context.Context, recs ...stream.Record) error {
	p.log.land(recs)
	return nil
}

// stalledPublisher models a produce that is in flight for long: it reports that it started,
// reports the cause when the relay cancels it, and only when released do its records land and
// the acknowledgement arrive, as a broker that got the request before the cancellation would.
type stalledPublisher struct {
	log       *kafkaLog
	started   chan struct{}
	cancelled chan error
	release   chan struct{}
	calls     atomic.Int32
}

func (p *stalledPublisher) Produce(ctx context.Context, recs ...stream.Record) error {
	if p.calls.Add(1) > 1 {
		return errors.New("produced again after the stalled produce")
	}
	close(p.started)
	<-ctx.Done()
	p.cancelled <- context.Cause(ctx)
	<-p.release
	p.log.land(recs)
	return nil
}

// partition cuts a client off from Redis while cut is set, and runs beforeRead (once, when
// set) ahead of the client's first transaction with an XRANGE: the relay's read of a shard.
type partition struct {
	cut        atomic.Bool
	beforeRead func()
	once       sync.Once
}

func (p *partition) DialHook(next redis.DialHook) redis.DialHook { return next }

func (p *partition) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if p.cut.Load() {
			cmd.SetErr(errors.New("network partition"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}

func (p *partition) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if p.cut.Load() {
			err := errors.New("network partition")
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		if p.beforeRead != nil && slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() == "xrange" }) {
			p.once.Do(p.beforeRead)
		}
		return next(ctx, cmds)
	}
}

func partitionedClient(t *testing.T, p *partition) redis.UniversalClient {
	t.Helper()
	addr, cluster := testinfra.RedisEnv(t) // the server of newOutbox
	rdb, err := redisconn.New(redisconn.Config{Addrs: strings.Split(addr, ","), Cluster: cluster == "true"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(p)
	return rdb
}

// eventID is a record's event id header.
func eventID(rec stream.Record) string { return header(rec, relay.HeaderEventID) }

func header(rec stream.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// entryMillis is the milliseconds part of a stream entry id.
func entryMillis(t *testing.T, id string) int64 {
	t.Helper()
	ms, _, _ := strings.Cut(id, "-")
	var n int64
	if _, err := fmt.Sscan(ms, &n); err != nil {
		t.Fatalf("entry id %q: %v", id, err)
	}
	return n
}

// checkCustomerOrder fails unless, per customer, the records that first carry an event id
// are exactly the customer's derived events in order (rounds 0..rounds-1: no gap, no
// reordering), every other record repeating an id already published. It returns the repeats.
func checkCustomerOrder(t *testing.T, recs []stream.Record, customers, rounds int) int {
	t.Helper()
	seen := map[string]bool{}
	firsts := map[string][]string{}
	repeats := 0
	for _, rec := range recs {
		id := eventID(rec)
		if seen[id] {
			repeats++
			continue
		}
		seen[id] = true
		firsts[string(rec.Key)] = append(firsts[string(rec.Key)], id)
	}
	if len(firsts) != customers {
		t.Fatalf("events of %d customers published, want %d", len(firsts), customers)
	}
	for c := range customers {
		cust := fmt.Sprintf("c%d", c)
		var want []string
		for round := range rounds {
			want = append(want, fmt.Sprintf("%s-%d", cust, round))
		}
		if !slices.Equal(firsts[cust], want) {
			t.Fatalf("customer %s: first publications %v, want %v", cust, firsts[cust], want)
		}
	}
	return repeats
}

// drainAll runs passes of r until the outbox is empty.
func drainAll(t *testing.T, r *relay.Relay, rdb redis.UniversalClient, keys keyspace.Keyspace) {
	t.Helper()
	for outboxLen(t, rdb, keys) > 0 {
		if _, err := r.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestARelayThatLosesItsLeaseMidPassStopsAndCustomerOrderHolds(t *testing.T) {
	const customers = 20
	rdb, keys, store := newOutbox(t, 1)
	for round := range 3 {
		derive(t, store, customers, round)
	}
	log := &kafkaLog{}
	stalled := &stalledPublisher{log: log, started: make(chan struct{}), cancelled: make(chan error, 1), release: make(chan struct{})}
	cut := &partition{}
	ctx := context.Background()
	cfg := relay.Config{LeaseTTL: time.Second}
	cfg.Owner = "stale"
	stale, err := relay.New(ctx, cfg, partitionedClient(t, cut), keys, stalled, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Owner = "successor"
	successor, err := relay.New(ctx, cfg, rdb, keys, logPublisher{log}, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		n   int
		err error
	}
	staleDone := make(chan result, 1)
	go func() {
		n, err := stale.Pass(ctx)
		staleDone <- result{n, err}
	}()
	<-stalled.started
	// The stale relay is cut off from Redis with its produce in flight: it cannot renew, so
	// it must give the shard up before the lease can expire in Redis.
	cut.cut.Store(true)
	if cause := <-stalled.cancelled; !errors.Is(cause, relay.ErrLeaseLapsed) {
		t.Fatalf("in-flight produce cancelled with %v, want the lapsed lease", cause)
	}
	// The lease expires and the successor takes the shard over: it publishes the entries the
	// stale relay has in flight, then events derived after the takeover.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, err := successor.Pass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the successor never took the shard over")
		}
	}
	drainAll(t, successor, rdb, keys)
	derive(t, store, customers, 3)
	drainAll(t, successor, rdb, keys)
	beforeLate := len(log.records())

	// The stale relay's produce lands and is acknowledged now, after the successor's newer
	// events; its delete is refused by the token check.
	cut.cut.Store(false)
	close(stalled.release)
	res := <-staleDone
	if !errors.Is(res.err, lease.ErrFenced) {
		t.Fatalf("stale relay's delete after the takeover: %v, want refused by the fence", res.err)
	}
	if res.n != 3*customers || stalled.calls.Load() != 1 {
		t.Fatalf("stale relay published %d records in %d produces, want its one batch of %d", res.n, stalled.calls.Load(), 3*customers)
	}
	recs := log.records()
	repeats := checkCustomerOrder(t, recs, customers, 4)
	if repeats != 3*customers || len(recs)-beforeLate != 3*customers {
		t.Fatalf("%d repeats, %d late records; want the stale batch of %d, all repeats", repeats, len(recs)-beforeLate, 3*customers)
	}
	if n := outboxLen(t, rdb, keys); n != 0 {
		t.Fatalf("outbox holds %d entries", n)
	}
}

func TestARelayWhoseLeaseMovesOnBeforeItReadsIsRefusedTheRead(t *testing.T) {
	const customers = 10
	rdb, keys, store := newOutbox(t, 1)
	for round := range 3 {
		derive(t, store, customers, round)
	}
	log := &kafkaLog{}
	ctx := context.Background()
	successor, err := relay.New(ctx, relay.Config{Owner: "successor"}, rdb, keys, logPublisher{log}, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// Between the stale relay's acquisition and its read, its lease expires and the successor
	// drains the shard and sees a new event derived.
	hook := &partition{beforeRead: func() {
		if err := rdb.Del(ctx, keys.Lease("relay", 0)).Err(); err != nil {
			t.Error(err)
		}
		// The hook runs on the stale relay's shard goroutine, where t.Fatal is not allowed.
		for outboxLen(t, rdb, keys) > 0 {
			if _, err := successor.Pass(ctx); err != nil {
				t.Error(err)
				return
			}
		}
		ids := make([]string, customers)
		for i := range ids {
			ids[i] = fmt.Sprintf("c%d", i)
		}
		if _, err := store.Apply(ctx, ids, func(id string, _ state.Current) (state.Update, error) {
			return state.Update{Fields: map[string]string{"r": "3"}, Outbox: []state.OutboxEntry{
				{Topic: "loyalty.tier-changes.v1", EventID: id + "-3", Value: []byte("v")}}}, nil
		}); err != nil {
			t.Error(err)
		}
	}}
	stalePub := &memoryPublisher{}
	stale, err := relay.New(ctx, relay.Config{Owner: "stale"}, partitionedClient(t, hook), keys, stalePub, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := stale.Pass(ctx)
	if !errors.Is(err, lease.ErrFenced) || n != 0 {
		t.Fatalf("stale relay's read after the takeover: %d published, %v; want refused by the fence", n, err)
	}
	if len(stalePub.got) != 0 {
		t.Fatalf("stale relay published %d records", len(stalePub.got))
	}
	if got := outboxLen(t, rdb, keys); got != customers {
		t.Fatalf("outbox holds %d entries, want the %d derived after the takeover", got, customers)
	}
	drainAll(t, successor, rdb, keys)
	if repeats := checkCustomerOrder(t, log.records(), customers, 4); repeats != 0 {
		t.Fatalf("%d repeats without an overlap", repeats)
	}
}

func TestFencedReadsAndDeletesWorkOnRedisCluster(t *testing.T) {
	rdb, err := redisconn.New(redisconn.Config{Addrs: testinfra.RedisCluster(t), Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	keys, _ := keyspace.New(testinfra.Namespace(t, "relay"), 8)
	store, err := state.New(ctx, rdb, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		derive(t, store, 30, round)
	}
	log := &kafkaLog{}
	r, err := relay.New(ctx, relay.Config{BatchSize: 5}, rdb, keys, logPublisher{log}, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	drainAll(t, r, rdb, keys)
	if repeats := checkCustomerOrder(t, log.records(), 30, 3); repeats != 0 {
		t.Fatalf("%d repeats from one relay", repeats)
	}
}

// TestTheRelayMeasuresOutboxAgeAndEndToEndLatency: an entry an input record caused carries
// the record's Kafka timestamp; once Kafka acknowledges it the relay observes the end-to-end
// latency from that timestamp, and the wait in the outbox for every entry.
func TestTheRelayMeasuresOutboxAgeAndEndToEndLatency(t *testing.T) {
	rdb, keys, store := newOutbox(t, 2)
	produced := time.Now().Add(-3 * time.Second)
	_, err := store.Apply(context.Background(), []string{"c1", "c2"}, func(id string, _ state.Current) (state.Update, error) {
		e := state.OutboxEntry{Topic: "loyalty.tier-changes.v1", EventID: id + "-1", Value: []byte("v")}
		if id == "c1" {
			e.SourceTime = produced // caused by an input record; c2's is an end-of-day change
		}
		return state.Update{Fields: map[string]string{"r": "1"}, Outbox: []state.OutboxEntry{e}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	reg := prometheus.NewRegistry()
	r, err := relay.New(context.Background(), relay.Config{}, rdb, keys, &memoryPublisher{}, relay.NewMetrics(reg), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Pass(context.Background()); err != nil || n != 2 {
		t.Fatalf("pass: %d published, %v", n, err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.MetricFamily{}
	for _, f := range families {
		got[f.GetName()] = f
	}
	e2e := got["loyalty_e2e_latency_seconds"].GetMetric()
	if len(e2e) != 1 || e2e[0].GetHistogram().GetSampleCount() != 1 || e2e[0].GetHistogram().GetSampleSum() < 3 ||
		e2e[0].GetLabel()[0].GetValue() != "loyalty.tier-changes.v1" {
		t.Errorf("end-to-end latency: %v, want one sample of at least 3 s for loyalty.tier-changes.v1", e2e)
	}
	wait := got["loyalty_outbox_wait_seconds"].GetMetric()
	if len(wait) != 1 || wait[0].GetHistogram().GetSampleCount() != 2 || wait[0].GetHistogram().GetSampleSum() < 0.4 {
		t.Errorf("outbox wait: %v, want two samples of at least 0.2 s", wait)
	}
	// The last pass found entries 0.2 s old or more: the oldest-age gauge says so.
	if age := got["loyalty_outbox_oldest_age_seconds"].GetMetric()[0].GetGauge().GetValue(); age < 0.2 || age > 60 {
		t.Errorf("oldest entry age %v s, want the 0.2 s or more the entries waited", age)
	}
	if _, err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	families, _ = reg.Gather()
	for _, f := range families {
		if f.GetName() == "loyalty_outbox_oldest_age_seconds" && f.GetMetric()[0].GetGauge().GetValue() != 0 {
			t.Errorf("an empty outbox: oldest entry age %v, want 0", f.GetMetric()[0].GetGauge().GetValue())
		}
	}
}

// TestAnIdleRelayWakesOnTheOutboxBell: a relay with nothing to do waits for the outbox bell,
// which every write appending outbox entries rings, and not for its idle poll: with a poll of
// a minute, each write is published in seconds at most.
func TestAnIdleRelayWakesOnTheOutboxBell(t *testing.T) {
	rdb, keys, store := newOutbox(t, 8)
	pub := &memoryPublisher{}
	r, err := relay.New(context.Background(), relay.Config{IdlePoll: time.Minute, LeaseTTL: 5 * time.Minute}, rdb, keys, pub, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer running(t, r)()
	published := func() int {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return len(pub.got)
	}
	for round := range 4 {
		derive(t, store, 5, round)
		deadline := time.Now().Add(10 * time.Second) // far below the minute's poll
		for published() < 5*(round+1) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d of %d events published after 10s: the relay did not wake on the bell", round, published(), 5*(round+1))
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The relay has passed again by now, found nothing and waits.
		time.Sleep(300 * time.Millisecond)
	}
}

func TestAnIdlePollLongerThanAQuarterOfTheLeaseIsRefused(t *testing.T) {
	cfg := relay.Config{IdlePoll: 3 * time.Second, LeaseTTL: 10 * time.Second}.WithDefaults()
	if err := cfg.Validate(); err == nil {
		t.Fatal("an idle relay would let its leases lapse between passes; want a config error")
	}
	cfg.IdlePoll = 2500 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatalf("IdlePoll of a quarter of the lease: %v", err)
	}
}

// TestWithoutPubSubRightsWritesGoOnAndTheRelayPolls: a Redis user that may neither publish
// nor subscribe (ACL channels reset) still writes (the scripts ignore the refused ring), and
// its relay falls back to polling every IdlePoll.
func TestWithoutPubSubRightsWritesGoOnAndTheRelayPolls(t *testing.T) {
	ctx := context.Background()
	addr := testinfra.PrivateRedis(t)
	admin, err := redisconn.New(redisconn.Config{Addrs: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.Do(ctx, "ACL", "SETUSER", "nobell", "reset", "on", ">pw", "~*", "resetchannels", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{addr}, Username: "nobell", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Publish(ctx, "loy:x:outbox-bell", "").Err(); err == nil {
		t.Fatal("the user may publish; the test does not test a refused ring")
	}
	keys, _ := keyspace.New(testinfra.Name("nobell"), 4)
	store, err := state.New(ctx, rdb, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	derive(t, store, 3, 0)
	if n := outboxLen(t, rdb, keys); n != 3 {
		t.Fatalf("outbox holds %d entries, want the 3 written", n)
	}
	pub := &memoryPublisher{}
	r, err := relay.New(ctx, relay.Config{IdlePoll: 50 * time.Millisecond, LeaseTTL: time.Second}, rdb, keys, pub, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer running(t, r)()
	time.Sleep(200 * time.Millisecond) // the relay is idle: it drained the first three
	derive(t, store, 3, 1)
	for deadline := time.Now().Add(10 * time.Second); outboxLen(t, rdb, keys) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries still in the outbox after 10s", outboxLen(t, rdb, keys))
		}
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.got) != 6 {
		t.Fatalf("published %d, want 6", len(pub.got))
	}
}

// running runs r until the returned stop is called, and fails the test if Run failed.
func running(t *testing.T, r *relay.Relay) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestADerivedEventKafkaRefusesGoesToTheDeadLetterTopicAndItsShardGoesOn, against real
// Kafka: an output topic takes records of at most 1,000 bytes, and one customer's event is
// 5,000. The relay publishes the others, in each customer's order, dead-letters that one with
// the broker's refusal, and empties the shard, where it used to retry the batch for ever.
func TestADerivedEventKafkaRefusesGoesToTheDeadLetterTopicAndItsShardGoesOn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := testinfra.Kafka(t)
	topic := testinfra.Name("strict-out")
	admin, err := stream.NewAdmin(brokers, stream.Security{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1,
		Config: map[string]string{"max.message.bytes": "1000"}}); err != nil {
		t.Fatal(err)
	}
	producer, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	rdb, keys, store := newOutbox(t, 1)
	const customers, rounds = 6, 3
	for round := range rounds {
		ids := make([]string, customers)
		for i := range ids {
			ids[i] = fmt.Sprintf("c%d", i)
		}
		if _, err := store.Apply(ctx, ids, func(id string, _ state.Current) (state.Update, error) {
			value := []byte(fmt.Sprintf("%s round %d", id, round))
			if id == "c3" && round == 1 {
				value = bytes.Repeat([]byte{'x'}, 5000)
			}
			return state.Update{Fields: map[string]string{"r": fmt.Sprint(round)},
				Outbox: []state.OutboxEntry{{Topic: "loyalty.tier-changes.v1", EventID: fmt.Sprintf("%s-%d", id, round), Value: value}}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	dlq := &deadLetters{}
	r, err := relay.New(ctx, relay.Config{DeadLetter: dlq, TopicFor: func(string) string { return topic }},
		rdb, keys, producer, relay.NewMetrics(reg), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pass(ctx); err != nil {
		t.Fatalf("a pass over a batch holding a refused event: %v", err)
	}
	if n := outboxLen(t, rdb, keys); n != 0 {
		t.Fatalf("%d entries left in the shard, want none", n)
	}
	if len(dlq.got) != 1 {
		t.Fatalf("dead-lettered %d events, want the one over the topic's limit", len(dlq.got))
	}
	rej := dlq.got[0]
	if rej.Code != relay.CodeRefusedEvent || !stream.RecordRefused(rej.Err) || !strings.Contains(rej.Err.Error(), "Message Size Too Large") || string(rej.Message.Key) != "c3" ||
		len(rej.Message.Value) != 5000 || eventID(stream.Record{Headers: rej.Message.Headers}) != "c3-1" || rej.Message.Topic != topic {
		t.Errorf("dead letter %+v (%v), want c3's event c3-1 of 5,000 bytes for %s refused as too large", rej.Message.Headers, rej.Err, topic)
	}
	// Every other event is on the topic, each customer's first published in the order derived
	// (what the broker accepted before the refusal is there twice, with the same ids).
	var got []stream.Record
	ends, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := range 2 {
		out := make(chan stream.Message, ends[p]+1)
		if err := admin.ReadRange(ctx, topic, p, 0, ends[p], out); err != nil {
			t.Fatal(err)
		}
		close(out)
		for m := range out {
			got = append(got, stream.Record{Key: m.Key, Value: m.Value, Headers: m.Headers})
		}
	}
	last, seen := map[string]int{}, map[string]bool{}
	for _, rec := range got {
		id := eventID(rec)
		var c string
		var round int
		if _, err := fmt.Sscanf(strings.Replace(id, "-", " ", 1), "%s %d", &c, &round); err != nil {
			t.Fatalf("event id %q: %v", id, err)
		}
		if seen[id] {
			continue // a repeat: consumers dedupe by event id
		}
		if prev, ok := last[c]; ok && round < prev {
			t.Errorf("%s: event of round %d first published after round %d", c, round, prev)
		}
		last[c] = round
		seen[id] = true
	}
	if want := customers*rounds - 1; len(seen) != want || seen["c3-1"] {
		t.Errorf("%d distinct events published (c3-1 among them: %t), want %d without it", len(seen), seen["c3-1"], want)
	}
	if n := counterValue(t, reg, "loyalty_relay_refused_total"); n != 1 {
		t.Errorf("loyalty_relay_refused_total %v, want 1", n)
	}
	if n := counterValue(t, reg, "loyalty_relay_published_total"); n != customers*rounds-1 {
		t.Errorf("loyalty_relay_published_total %v, want %d: the refused event is not counted", n, customers*rounds-1)
	}
}

// counterValue reads a counter of reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
