package stream

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// The broker's cost is mostly per request, not per record (docs/design.md, "Cost per event"),
// so the requests a service makes of it are metrics of their own. kafka-go counts them in its
// Reader and Writer statistics, which reset on every read: a collector reads them when it is
// scraped and adds them to running Prometheus counters.

// readerRequests is the collector of the consumers' kafka-go readers.
type readerRequests struct {
	mu      sync.Mutex
	readers []*kafka.Reader
	fetches, bytes, records, dials, rebalances prometheus.Counter
}

func newReaderRequests() *readerRequests {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &readerRequests{
		fetches: counter("loyalty_kafka_fetch_requests_total",
			"Fetch requests the consumer sent to the broker (one per partition and fetch)."),
		bytes:      counter("loyalty_kafka_fetched_bytes_total", "Bytes of the records the consumer fetched (keys and values)."),
		records:    counter("loyalty_kafka_fetched_records_total", "Records the consumer fetched."),
		dials:      counter("loyalty_kafka_consumer_dials_total", "Connections the consumer opened to brokers."),
		rebalances: counter("loyalty_kafka_rebalances_total", "Consumer group rebalances the consumer took part in."),
	}
}

func (r *readerRequests) add(reader *kafka.Reader) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.readers = append(r.readers, reader)
}

func (r *readerRequests) counters() []prometheus.Counter {
	return []prometheus.Counter{r.fetches, r.bytes, r.records, r.dials, r.rebalances}
}

// Describe implements prometheus.Collector.
func (r *readerRequests) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range r.counters() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector: it takes what the readers counted since the last
// scrape.
func (r *readerRequests) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	for _, reader := range r.readers {
		s := reader.Stats()
		r.fetches.Add(float64(s.Fetches))
		r.bytes.Add(float64(s.Bytes))
		r.records.Add(float64(s.Messages))
		r.dials.Add(float64(s.Dials))
		r.rebalances.Add(float64(s.Rebalances))
	}
	r.mu.Unlock()
	for _, c := range r.counters() {
		c.Collect(ch)
	}
}

// writerRequests is the collector of a producer's kafka-go writer.
type writerRequests struct {
	mu                                        sync.Mutex
	writer                                    *kafka.Writer
	requests, records, bytes, retries, errors prometheus.Counter
}

func newWriterRequests(w *kafka.Writer) *writerRequests {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &writerRequests{writer: w,
		requests: counter("loyalty_kafka_produce_requests_total",
			"Produce requests the producer sent to the broker (one per partition batch and attempt)."),
		records: counter("loyalty_kafka_produced_records_total", "Records the producer sent (again on each retry)."),
		bytes:   counter("loyalty_kafka_produced_bytes_total", "Bytes of the records the producer sent (keys and values, again on each retry)."),
		retries: counter("loyalty_kafka_produce_retries_total", "Produce attempts that followed a failed one."),
		errors:  counter("loyalty_kafka_produce_errors_total", "Produce attempts that failed."),
	}
}

func (w *writerRequests) counters() []prometheus.Counter {
	return []prometheus.Counter{w.requests, w.records, w.bytes, w.retries, w.errors}
}

// Describe implements prometheus.Collector.
func (w *writerRequests) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range w.counters() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector: it takes what the writer counted since the last
// scrape.
func (w *writerRequests) Collect(ch chan<- prometheus.Metric) {
	w.mu.Lock()
	s := w.writer.Stats()
	w.requests.Add(float64(s.Writes))
	w.records.Add(float64(s.Messages))
	w.bytes.Add(float64(s.Bytes))
	w.retries.Add(float64(s.Retries))
	w.errors.Add(float64(s.Errors))
	w.mu.Unlock()
	for _, c := range w.counters() {
		c.Collect(ch)
	}
}
