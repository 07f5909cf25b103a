package notifier

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the notifier's Prometheus metrics.
type Metrics struct {
	decisions    *prometheus.CounterVec
	unmatched    *prometheus.CounterVec
	skipped      *prometheus.CounterVec
	attempts     *prometheus.HistogramVec
	toDeliver    *prometheus.HistogramVec
	retries      *prometheus.CounterVec
	pending      prometheus.Gauge
	settleErrors prometheus.Counter
}

// NewMetrics creates and registers (when reg is not nil) the notifier metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_notifier_decisions_total",
			Help: "Final action decisions by kind and outcome (SENT, SUPPRESSED, HELD_OUT, FAILED, DEAD_LETTERED) and reason."},
			[]string{"kind", "outcome", "reason"}),
		unmatched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_notifier_unmatched_total",
			Help: "Triggers no rule matched (no action, no record), by trigger type."}, []string{"on"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_notifier_skipped_total",
			Help: "Triggers not arbitrated at all, by reason (erased: the customer is on the erasure list)."}, []string{"reason"}),
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "loyalty_notifier_delivery_attempt_seconds",
			Help:    "Duration of one delivery attempt, by kind, channel and result (delivered, transient, permanent, aborted).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}, []string{"kind", "channel", "result"}),
		toDeliver: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "loyalty_notifier_delivery_latency_seconds",
			Help:    "Time from the decision to the successful delivery of an action, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.002, 3, 14)}, []string{"kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_notifier_delivery_retries_total",
			Help: "Delivery attempts that failed transiently and were scheduled again, by kind."}, []string{"kind"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "loyalty_notifier_pending_actions",
			Help: "Actions decided and waiting for delivery (including retries in backoff)."}),
		settleErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_notifier_settle_errors_total",
			Help: "Delivery outcomes that could not be recorded in Redis (the action is delivered again with the same key)."}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.unmatched, m.skipped, m.attempts, m.toDeliver, m.retries, m.pending, m.settleErrors)
	}
	return m
}

var resultNames = map[attemptResult]string{delivered: "delivered", transient: "transient", permanent: "permanent", aborted: "aborted"}
