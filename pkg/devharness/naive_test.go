package devharness

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// TestTheNaiveBaselineScoresTheInputAsTheCoreDoes: the baseline reads the three input topics
// from the start, and what it leaves in Redis for each customer is the core's state after the
// customer's events in order; it stops at the event count it was given.
func TestTheNaiveBaselineScoresTheInputAsTheCoreDoes(t *testing.T) {
	ctx := context.Background()
	brokers := testinfra.Kafka(t)
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	reg, err := codec.NewEmbeddedRegistry()
	if err != nil {
		t.Fatal(err)
	}
	c, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := stream.NewAdmin(brokers, stream.Security{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	suffix := testinfra.TopicSuffix(t, "naive")
	var specs []stream.TopicSpec
	for _, st := range event.Streams() {
		specs = append(specs, stream.TopicSpec{Name: st.Topic + suffix, Partitions: 1, ReplicationFactor: 1})
	}
	out := "loyalty.naive-derived" + suffix
	specs = append(specs, stream.TopicSpec{Name: out, Partitions: 1, ReplicationFactor: 1})
	if err := admin.EnsureTopics(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	// Three customers buying every two weeks for a year, one topic each kind.
	p := scoring.DefaultPolicy()
	start := time.Now().UTC().AddDate(-1, 0, 0)
	var recs []stream.Record
	want := map[string]scoring.State{}
	for ci := range 3 {
		id := fmt.Sprintf("n-%d", ci)
		var st scoring.State
		for i := range 26 {
			at := start.AddDate(0, 0, 14*i+ci)
			in := event.Purchase{EventID: fmt.Sprintf("%s-p%d", id, i), CustomerID: id, OccurredAt: at, OrderID: fmt.Sprintf("o%d", i),
				Kind: event.KindPurchase, AmountMinor: int64(3000 * (ci + 1)), Currency: p.Currency}
			v, err := c.Encode(in)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, stream.Record{Topic: event.TopicPurchases + suffix, Key: []byte(id), Value: v})
			ev := scoring.Event{Kind: scoring.KindPurchase, EventID: in.EventID, CustomerID: id, OccurredAt: at, AmountMinor: in.AmountMinor,
				Currency: p.Currency, OrderID: in.OrderID, Source: scoring.Source{Topic: event.TopicPurchases + suffix, Offset: int64(len(recs) - 1)}}
			if st, _, err = scoring.Apply(st, ev, p); err != nil {
				t.Fatal(err)
			}
		}
		want[id] = st
	}
	prod, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	_ = prod.Close()

	n := &naiveRun{brokers: brokers, rdb: rdb, codec: c, policy: p, suffix: suffix, prefix: "naive-test:" + testinfra.Name("k") + ":",
		outTopic: out, scorer: pipeline.NewScorer(p, c, false)}
	applied, derived, elapsed, err := n.run(ctx, len(recs), 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if applied != int64(len(recs)) || derived == 0 {
		t.Fatalf("applied %d of %d events, %d derived, in %s", applied, len(recs), derived, elapsed)
	}
	for id, st := range want {
		got, err := rdb.HGetAll(ctx, n.prefix+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, st.MarshalFields()) {
			t.Errorf("customer %s: the baseline stored %v, the core's state is %v", id, got, st.MarshalFields())
		}
	}
	t.Logf("naive baseline: %d events, %d derived, in %s (%.0f events/s)", applied, derived, elapsed.Round(time.Millisecond), float64(applied)/elapsed.Seconds())
	n.deleteKeys(context.WithoutCancel(ctx))
	for id := range want {
		if left, err := rdb.Exists(ctx, n.prefix+id).Result(); err != nil || left != 0 {
			t.Fatalf("customer %s of the baseline still stored after deleteKeys (%d, %v)", id, left, err)
		}
	}
}
