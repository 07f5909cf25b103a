package stream

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// The broker's cost is mostly per request, not per record (docs/design.md, "Cost per event"),
// so the requests a service makes of it are metrics of their own. The Producer counts its own;
// the consumers' fetchers count theirs in kafka-go's Reader statistics, which reset on every
// read: a collector reads them when it is scraped and adds them to running Prometheus counters.

// readerStats is what readerRequests reads: a consumer's fetcher (or a kafka-go Reader).
type readerStats interface{ Stats() kafka.ReaderStats }

// readerRequests is the collector of the consumers' fetchers.
type readerRequests struct {
	mu                                         sync.Mutex
	readers                                    []readerStats
	fetches, bytes, records, dials, rebalances prometheus.Counter
}

func newReaderRequests() *readerRequests {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &readerRequests{
		fetches: counter("loyalty_kafka_fetch_requests_total",
			"Fetch requests the consumer sent to the broker (one per partition leader and fetch, for all the partitions it leads)."),
		bytes:      counter("loyalty_kafka_fetched_bytes_total", "Bytes of the records the consumer fetched (keys and values)."),
		records:    counter("loyalty_kafka_fetched_records_total", "Records the consumer fetched."),
		dials:      counter("loyalty_kafka_consumer_dials_total", "Connections the consumer opened to brokers."),
		rebalances: counter("loyalty_kafka_rebalances_total", "Consumer group rebalances the consumer took part in."),
	}
}

func (r *readerRequests) add(reader readerStats) {
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

// producerRequests counts a Producer's requests as it sends them.
type producerRequests struct {
	requests, records, bytes, errors prometheus.Counter
}

func newProducerRequests() *producerRequests {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &producerRequests{
		requests: counter("loyalty_kafka_produce_requests_total",
			"Produce requests the producer sent to the broker (one per partition leader, with a batch for each partition; retries included)."),
		records: counter("loyalty_kafka_produced_records_total", "Records the producer sent (again on each retry)."),
		bytes:   counter("loyalty_kafka_produced_bytes_total", "Bytes of the records the producer sent (keys and values, again on each retry)."),
		errors: counter("loyalty_kafka_produce_errors_total",
			"Produce requests that failed, and partitions whose batch the broker refused (each retried while the error is transient)."),
	}
}

func (r *producerRequests) sent(records, bytes int) {
	r.requests.Inc()
	r.records.Add(float64(records))
	r.bytes.Add(float64(bytes))
}

func (r *producerRequests) failed() { r.errors.Inc() }

func (r *producerRequests) counters() []prometheus.Counter {
	return []prometheus.Counter{r.requests, r.records, r.bytes, r.errors}
}

// Describe implements prometheus.Collector.
func (r *producerRequests) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range r.counters() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (r *producerRequests) Collect(ch chan<- prometheus.Metric) {
	for _, c := range r.counters() {
		c.Collect(ch)
	}
}
