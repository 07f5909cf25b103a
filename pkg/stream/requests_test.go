package stream_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// gathered returns the value of every metric of reg by name.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if c := m.GetCounter(); c != nil {
				out[f.GetName()] += c.GetValue()
			}
		}
	}
	return out
}

func TestTheRequestsToTheBrokerAreCountedAndKeptAcrossScrapes(t *testing.T) {
	const n = 40
	brokers, topic, p := setup(t, n) // two partitions
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Requests())
	produced := gathered(t, reg)
	if got := produced["loyalty_kafka_produced_records_total"]; got != n {
		t.Errorf("produced records = %v, want %d", got, n)
	}
	// One broker leads both partitions: one request carries a batch for each.
	if got := produced["loyalty_kafka_produce_requests_total"]; got != 1 {
		t.Errorf("produce requests = %v, want 1 (one per leader)", got)
	}
	if produced["loyalty_kafka_produced_bytes_total"] <= 0 {
		t.Error("no produced bytes counted")
	}

	metrics := stream.NewMetrics(reg)
	var consumed atomic.Int64
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, GroupID: testinfra.Name("g"), Topics: []string{topic},
		BatchSize: 10, Linger: 10 * time.Millisecond}, stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error {
		consumed.Add(int64(len(b.Messages)))
		return nil
	}), metrics, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	// A scrape while consuming takes kafka-go's counts (which reset on every read): the
	// counters must keep them.
	mid := gathered(t, reg)
	deadline := time.Now().Add(60 * time.Second)
	for consumed.Load() < n {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("consumed %d of %d records", consumed.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	end := gathered(t, reg)
	if got := end["loyalty_kafka_fetched_records_total"]; got < n {
		t.Errorf("fetched records = %v, want at least %d", got, n)
	}
	if got := end["loyalty_kafka_fetch_requests_total"]; got < 1 {
		t.Errorf("fetch requests = %v, want the fetches counted", got)
	}
	if end["loyalty_kafka_fetched_bytes_total"] <= 0 || end["loyalty_kafka_consumer_dials_total"] < 1 {
		t.Errorf("fetched bytes %v, dials %v: want both counted", end["loyalty_kafka_fetched_bytes_total"], end["loyalty_kafka_consumer_dials_total"])
	}
	for name, v := range mid {
		if end[name] < v {
			t.Errorf("%s fell from %v to %v between scrapes", name, v, end[name])
		}
	}
	if end["loyalty_kafka_produced_records_total"] != n {
		t.Errorf("produced records changed to %v without a produce", end["loyalty_kafka_produced_records_total"])
	}
}
