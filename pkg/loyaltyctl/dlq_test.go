package loyaltyctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/relay"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// TestDLQRepublishPublishesTheRefusedDerivedEventsAgain: the dead-letter topic holds three
// envelopes written as the relay and a consumer write them: a derived event Kafka refused, one
// refused whose value was cut to fit the dead-letter topic, and a malformed input record.
// --dry-run publishes nothing; republish publishes the first on its topic, with its key, value
// and event id header, reports the cut one as not publishable (exit 1), and leaves the
// malformed record alone.
func TestDLQRepublishPublishesTheRefusedDerivedEventsAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers := testinfra.Kafka(t)
	suffix := testinfra.TopicSuffix(t, "dlq")
	t.Setenv("KAFKA_BROKERS", strings.Join(brokers, ","))
	t.Setenv("LOYALTY_TOPIC_SUFFIX", suffix)
	env, err := loadEnvironment()
	if err != nil {
		t.Fatal(err)
	}
	c, err := env.codec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := env.admin()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	dlq, tiers := event.TopicDeadLetter+suffix, event.TopicTierChanges+suffix
	if err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: dlq, Partitions: 2, ReplicationFactor: 1},
		stream.TopicSpec{Name: tiers, Partitions: 3, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	producer, err := env.producer()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = producer.Close() }()
	tierChange := func(id string, reasonBytes int) []byte {
		v, err := c.Encode(event.TierChanged{EventID: id, CustomerID: "c-" + id, OccurredAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			FromTier: event.TierSilver, ToTier: event.TierGold, Direction: event.DirectionUp,
			Reasons:       []event.Reason{{Code: "NET_SPEND_365D", Message: strings.Repeat("x", reasonBytes), Value: 1}},
			PolicyVersion: "tiers-test", Source: event.Source{Topic: event.TopicPurchases}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	refused, cut := tierChange("d-ok", 3000), tierChange("d-cut", 40_000)
	since := time.Now().Add(-time.Second)
	w := &stream.DeadLetterWriter{Producer: producer, Encoder: c, Topic: dlq, Service: "relay", MaxRecordBytes: 20_000}
	refusal := errors.New("tier-changes partition 1: [10] Message Size Too Large")
	if err := w.DeadLetter(ctx, []stream.Rejection{
		{Code: relay.CodeRefusedEvent, Err: refusal, Message: stream.Message{Topic: tiers, Key: []byte("c-d-ok"), Value: refused}},
		{Code: relay.CodeRefusedEvent, Err: refusal, Message: stream.Message{Topic: tiers, Key: []byte("c-d-cut"), Value: cut}},
		{Code: "malformed", Err: errors.New("not Avro"), Message: stream.Message{Topic: event.TopicPurchases + suffix, Key: []byte("c-9"), Value: []byte("junk")}},
	}); err != nil {
		t.Fatal(err)
	}
	tierCount := func() int64 {
		ends, err := admin.EndOffsets(ctx, tiers)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, e := range ends {
			n += e
		}
		return n
	}

	code, out, errs := run(t, "dlq", "republish", "--since", since.UTC().Format(time.RFC3339), "--dry-run")
	if code != 1 || !strings.Contains(out, "would publish") || !strings.Contains(out, "NOT PUBLISHED: value cut") {
		t.Fatalf("dry run: exit %d, out %q, err %q; want exit 1 (a cut value), d-ok to be published and d-cut not", code, out, errs)
	}
	if n := tierCount(); n != 0 {
		t.Fatalf("the dry run published %d records", n)
	}

	code, out, errs = run(t, "dlq", "republish", "--since", since.UTC().Format(time.RFC3339), "-o", "json")
	if code != 1 {
		t.Fatalf("republish: exit %d (%s), want 1 for the cut value", code, errs)
	}
	var results []republished
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if len(results) != 2 || !results[0].Published && !results[1].Published {
		t.Fatalf("results %+v, want the two refused events, one published", results)
	}
	for _, r := range results {
		if want := r.EventID == "d-ok"; r.Published != want || r.Topic != tiers || (r.Key == "c-d-cut") == (r.Problem == "") {
			t.Errorf("result %+v: want d-ok published on %s, d-cut not, with the reason", r, tiers)
		}
	}
	if n := tierCount(); n != 1 {
		t.Fatalf("%s holds %d records, want the one republished", tiers, n)
	}
	ends, err := admin.EndOffsets(ctx, tiers)
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range ends {
		if end == 0 {
			continue
		}
		msgs := make(chan stream.Message, end)
		if err := admin.ReadRange(ctx, tiers, p, 0, end, msgs); err != nil {
			t.Fatal(err)
		}
		close(msgs)
		m := <-msgs
		if string(m.Key) != "c-d-ok" || !bytes.Equal(m.Value, refused) || len(m.Headers) != 1 ||
			m.Headers[0].Key != relay.HeaderEventID || string(m.Headers[0].Value) != "d-ok" {
			t.Errorf("republished record key %q, %d bytes, headers %+v; want c-d-ok, the refused value, event_id d-ok", m.Key, len(m.Value), m.Headers)
		}
		if stream.PartitionOf(m.Key, len(ends)) != p {
			t.Errorf("republished on partition %d, want the key's", p)
		}
	}
}

func TestDLQRepublishNeedsSince(t *testing.T) {
	if code, _, errs := run(t, "dlq", "republish"); code != 2 || !strings.Contains(errs, "--since") {
		t.Fatalf("exit %d (%s), want a usage error naming --since", code, errs)
	}
	if code, _, errs := run(t, "dlq", "republish", "--since", "yesterday"); code != 2 || !strings.Contains(errs, "RFC 3339") {
		t.Fatalf("exit %d (%s), want a usage error asking for an RFC 3339 time", code, errs)
	}
}
