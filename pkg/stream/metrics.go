package stream

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the consumer-side Prometheus metrics of one service.
type Metrics struct {
	recordsIn    *prometheus.CounterVec
	batches      *prometheus.CounterVec
	batchLatency prometheus.Histogram
	batchSize    prometheus.Histogram
	rejected     *prometheus.CounterVec
	lag          *prometheus.GaugeVec
	commitErrors prometheus.Counter
	fetchErrors  prometheus.Counter
	held         prometheus.Gauge
	paused       prometheus.Gauge
	requests     *readerRequests
}

// NewMetrics creates the metrics and registers them with reg (nil means do not register,
// handy in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		recordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loyalty_records_in_total", Help: "Records consumed, by topic.",
		}, []string{"topic"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loyalty_batches_total", Help: "Micro-batches handled, by result (ok or error).",
		}, []string{"result"}),
		batchLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "loyalty_batch_duration_seconds", Help: "Time to handle one micro-batch, dead-lettering included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "loyalty_batch_records", Help: "Records per micro-batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loyalty_dead_lettered_total", Help: "Records sent to the dead-letter topic, by source topic and reason code.",
		}, []string{"topic", "code"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "loyalty_consumer_lag_records", Help: "Records behind the partition's high-water mark at the last fetch.",
		}, []string{"topic", "partition"}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loyalty_commit_errors_total", Help: "Offset commits that failed (the batch is redelivered and skipped as already applied).",
		}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loyalty_fetch_errors_total", Help: "Fetches that failed with a transient Kafka error (leader moving, broker busy) and were retried.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loyalty_consumer_held_records", Help: "Records fetched but held back because they are more than the alignment lead ahead of the pipeline watermark.",
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loyalty_consumer_paused", Help: "1 while the consumer holds all the records it may and waits for another service to catch up in event time.",
		}),
		requests: newReaderRequests(),
	}
	if reg != nil {
		reg.MustRegister(m.recordsIn, m.batches, m.batchLatency, m.batchSize, m.rejected, m.lag, m.commitErrors, m.fetchErrors, m.held, m.paused, m.requests)
	}
	return m
}

func (m *Metrics) observeBatch(b *Batch, d time.Duration, err error) {
	if err != nil {
		m.batches.WithLabelValues("error").Inc()
		return
	}
	m.batches.WithLabelValues("ok").Inc()
	m.batchLatency.Observe(d.Seconds())
	m.batchSize.Observe(float64(len(b.Messages)))
	for _, msg := range b.Messages {
		m.recordsIn.WithLabelValues(msg.Topic).Inc()
	}
	for _, r := range b.Rejections() {
		m.rejected.WithLabelValues(r.Message.Topic, r.Code).Inc()
	}
}

func (m *Metrics) observeLag(msg Message) {
	if msg.HighWaterMark <= 0 {
		return
	}
	m.lag.WithLabelValues(msg.Topic, strconv.Itoa(msg.Partition)).Set(float64(msg.HighWaterMark - msg.Offset - 1))
}

func (m *Metrics) setHeld(n int) { m.held.Set(float64(n)) }

func (m *Metrics) setPaused(p bool) {
	if p {
		m.paused.Set(1)
	} else {
		m.paused.Set(0)
	}
}
