package pipeline

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// KPIExporter serves the KPIs of the last final day (docs/metrics.md) as Prometheus gauges:
// one series per KPI and window (window="1d" … "365d"), and the customers per tier, churn
// level, segment and value layer. Run re-reads the counters every Every; a scrape reports the
// last reading, and nothing before the first one. A ratio without a denominator is left out.
type KPIExporter struct {
	Store      *state.Store
	Watermarks *watermark.Tracker
	Policy     *scoring.Policy
	// Every is the time between readings (default 30s).
	Every time.Duration
	Log   *zap.Logger

	mu       sync.Mutex
	reports  []kpi.Report
	final    time.Time
	quality  []horizonQuality // per horizon, the latest observation day it is final for
	failures prometheus.Counter
}

// horizonQuality is a horizon's quality report of the latest observation day it is final for.
type horizonQuality struct {
	day    scoring.Day
	report kpi.QualityReport
	index  int // into report.Horizons and scoring.QualityHorizons
}

// KPIReadInterval is the default time between the exporter's readings.
const KPIReadInterval = 30 * time.Second

var (
	kpiWindow    = []string{"window"}
	kpiFinalDay  = prometheus.NewDesc("loyalty_kpi_final_day_timestamp_seconds", "Start (UTC midnight) of the last day whose KPIs are final.", nil, nil)
	kpiCustomers = prometheus.NewDesc("loyalty_kpi_customers", "Customers as of the end of the last final day, by dimension (tier, churn_level, segment, value_layer) and value.",
		[]string{"dimension", "value"}, nil)
	kpiPopulation = prometheus.NewDesc("loyalty_kpi_population", "Every customer seen by the end of the last final day.", nil, nil)

	// Model quality (docs/metrics.md, "Model quality"), per horizon ("30d", "90d"), of the
	// latest observation day whose outcomes over the horizon are final.
	modelQualityDay = prometheus.NewDesc("loyalty_model_quality_observation_day_timestamp_seconds",
		"Start of the latest churn-prediction observation day whose outcomes over the horizon are final.", []string{"horizon"}, nil)
	modelRepurchase = prometheus.NewDesc("loyalty_model_repurchase_rate",
		"Share of the customers observed on that day who bought within the horizon, by churn level (by=churn_level) and P(alive) decile (by=palive_decile, group 0-9 or rules).",
		[]string{"horizon", "by", "group"}, nil)
	modelObserved = prometheus.NewDesc("loyalty_model_observed_customers",
		"Customers observed on that day, by churn level and P(alive) decile.", []string{"horizon", "by", "group"}, nil)
	modelBrier = prometheus.NewDesc("loyalty_model_brier_score",
		"Brier score of the model's predicted chance of a purchase within the horizon (lower is better).", []string{"horizon"}, nil)
	modelBrierBase = prometheus.NewDesc("loyalty_model_brier_baseline",
		"Brier score of predicting the observed rate for everyone: a useful model is below it.", []string{"horizon"}, nil)
	modelCalPredicted = prometheus.NewDesc("loyalty_model_calibration_predicted",
		"Mean predicted chance of a purchase within the horizon, per decile bin of the prediction.", []string{"horizon", "bin"}, nil)
	modelCalObserved = prometheus.NewDesc("loyalty_model_calibration_observed",
		"Share who bought within the horizon, per decile bin of the prediction.", []string{"horizon", "bin"}, nil)
)

// kpiGauge is one windowed KPI gauge and how to read it from a report (ok false: no value).
type kpiGauge struct {
	desc *prometheus.Desc
	read func(kpi.Report) (float64, bool)
}

func count(f func(kpi.Report) int64) func(kpi.Report) (float64, bool) {
	return func(r kpi.Report) (float64, bool) { return float64(f(r)), true }
}

func rate(f func(kpi.Report) *float64) func(kpi.Report) (float64, bool) {
	return func(r kpi.Report) (float64, bool) {
		if v := f(r); v != nil {
			return *v, true
		}
		return 0, false
	}
}

func windowed(name, help string, read func(kpi.Report) (float64, bool)) kpiGauge {
	return kpiGauge{prometheus.NewDesc(name, help+" Over the window of days ending on the last final day.", kpiWindow, nil), read}
}

var kpiGauges = []kpiGauge{
	windowed("loyalty_kpi_orders", "Purchases.", count(func(r kpi.Report) int64 { return r.Orders })),
	windowed("loyalty_kpi_gross_revenue_minor", "Purchase amounts, minor units.", count(func(r kpi.Report) int64 { return r.GrossMinor })),
	windowed("loyalty_kpi_net_revenue_minor", "Purchase amounts less refunds, minor units.", count(func(r kpi.Report) int64 { return r.NetRevenueMinor })),
	windowed("loyalty_kpi_refunds", "Refunds.", count(func(r kpi.Report) int64 { return r.Refunds })),
	windowed("loyalty_kpi_refund_rate", "Refunded amount over gross revenue.", rate(func(r kpi.Report) *float64 { return r.RefundRate })),
	windowed("loyalty_kpi_average_order_value_minor", "Gross revenue over orders, minor units.", rate(func(r kpi.Report) *float64 { return r.AvgOrderMinor })),
	windowed("loyalty_kpi_active_customers", "Customers with a purchase day.", count(func(r kpi.Report) int64 { return r.ActiveCustomers })),
	windowed("loyalty_kpi_repurchase_rate", "Share of active customers with two or more purchase days.", rate(func(r kpi.Report) *float64 { return r.RepurchaseRate })),
	windowed("loyalty_kpi_retention_rate", "Share of the window before's active customers active again.", rate(func(r kpi.Report) *float64 { return r.RetentionRate })),
	windowed("loyalty_kpi_churn_rate", "1 - retention rate.", rate(func(r kpi.Report) *float64 { return r.ChurnRate })),
	windowed("loyalty_kpi_new_customers", "Customers whose first event fell in the window.", count(func(r kpi.Report) int64 { return r.NewCustomers })),
	windowed("loyalty_kpi_lapsed_customers", "Customers who passed their personal purchase horizon.", count(func(r kpi.Report) int64 { return r.Lapsed })),
	windowed("loyalty_kpi_entered_high_risk", "Churn-risk moves into HIGH.", count(func(r kpi.Report) int64 { return r.EnteredHighRisk })),
	windowed("loyalty_kpi_nps", "Net promoter score, -100 to 100.", rate(func(r kpi.Report) *float64 { return r.NPS })),
	windowed("loyalty_kpi_csat_average", "Average CSAT score.", rate(func(r kpi.Report) *float64 { return r.AvgCSAT })),
	windowed("loyalty_kpi_complaints_per_1000_active", "Complaint cases opened per 1,000 active customers.", rate(func(r kpi.Report) *float64 { return r.ComplaintsPer1k })),
	windowed("loyalty_kpi_layer_transition_rate", "Moves between value layers over the customers with a layer at the window's start.",
		rate(func(r kpi.Report) *float64 { return r.LayerTransitionRate })),
}

// NewKPIExporter registers the exporter's collector and its failure counter on reg.
func NewKPIExporter(e *KPIExporter, reg prometheus.Registerer) *KPIExporter {
	e.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_kpi_read_errors_total",
		Help: "Readings of the KPI counters that failed (the gauges keep the last good reading)."})
	if reg != nil {
		reg.MustRegister(e, e.failures)
	}
	return e
}

// Describe implements prometheus.Collector.
func (e *KPIExporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- kpiFinalDay
	ch <- kpiCustomers
	ch <- kpiPopulation
	for _, g := range kpiGauges {
		ch <- g.desc
	}
	for _, d := range []*prometheus.Desc{modelQualityDay, modelRepurchase, modelObserved, modelBrier, modelBrierBase, modelCalPredicted, modelCalObserved} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (e *KPIExporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	reports, final, quality := e.reports, e.final, e.quality
	e.mu.Unlock()
	collectQuality(ch, quality)
	if len(reports) == 0 {
		return
	}
	ch <- prometheus.MustNewConstMetric(kpiFinalDay, prometheus.GaugeValue, float64(final.Unix()))
	ch <- prometheus.MustNewConstMetric(kpiPopulation, prometheus.GaugeValue, float64(reports[0].Customers))
	for dim, mix := range map[string]map[string]int64{"tier": reports[0].Tiers, "churn_level": reports[0].Churn,
		"segment": reports[0].Segments, "value_layer": reports[0].Layers} {
		for value, n := range mix {
			ch <- prometheus.MustNewConstMetric(kpiCustomers, prometheus.GaugeValue, float64(n), dim, value)
		}
	}
	for _, r := range reports {
		window := strconv.Itoa(r.WindowDays) + "d"
		for _, g := range kpiGauges {
			if v, ok := g.read(r); ok {
				ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, window)
			}
		}
	}
}

// Refresh reads the counters once and, when a day is final, keeps its reports for scrapes.
func (e *KPIExporter) Refresh(ctx context.Context) error {
	snap, err := ReadKPIs(ctx, e.Store, e.Watermarks, e.Policy)
	if err != nil {
		e.failures.Inc()
		return err
	}
	if !snap.HasComplete {
		return nil
	}
	reports := make([]kpi.Report, 0, len(kpi.Windows))
	for _, w := range kpi.Windows {
		reports = append(reports, snap.Counters.Report(snap.Complete, w))
	}
	quality := latestQuality(snap.Counters, snap.Complete, e.Policy)
	e.mu.Lock()
	e.reports, e.final, e.quality = reports, snap.Complete.Start(), quality
	e.mu.Unlock()
	return nil
}

// latestQuality finds, for each horizon, the latest observation day whose outcomes over it are
// final.
func latestQuality(c *kpi.Counters, complete scoring.Day, p *scoring.Policy) []horizonQuality {
	days := c.QualityDays()
	var out []horizonQuality
	for i := range scoring.QualityHorizons {
		for j := len(days) - 1; j >= 0; j-- {
			if r := c.Quality(days[j], complete, p); r.Horizons[i].Final {
				out = append(out, horizonQuality{day: days[j], report: r, index: i})
				break
			}
		}
	}
	return out
}

func collectQuality(ch chan<- prometheus.Metric, quality []horizonQuality) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, q := range quality {
		h := strconv.Itoa(scoring.QualityHorizons[q.index]) + "d"
		gauge(modelQualityDay, float64(q.day.Start().Unix()), h)
		for by, groups := range map[string][]kpi.QualityGroup{"churn_level": q.report.Levels, "palive_decile": q.report.Deciles} {
			for _, g := range groups {
				name := g.Group[2:] // "l.HIGH" → "HIGH", "a.3" → "3"
				gauge(modelObserved, float64(g.Customers), h, by, name)
				rate := g.Rate30
				if q.index == 1 {
					rate = g.Rate90
				}
				if rate != nil {
					gauge(modelRepurchase, *rate, h, by, name)
				}
			}
		}
		hq := q.report.Horizons[q.index]
		if hq.Brier != nil {
			gauge(modelBrier, *hq.Brier, h)
			gauge(modelBrierBase, *hq.BrierBase, h)
		}
		for _, b := range hq.Calibration {
			if b.Predicted != nil && b.Observed != nil {
				gauge(modelCalPredicted, *b.Predicted, h, strconv.Itoa(b.Bin))
				gauge(modelCalObserved, *b.Observed, h, strconv.Itoa(b.Bin))
			}
		}
	}
}

// Run refreshes the gauges every Every until ctx ends. A failed reading is logged and
// counted; the gauges keep the last good one.
func (e *KPIExporter) Run(ctx context.Context) error {
	every := e.Every
	if every <= 0 {
		every = KPIReadInterval
	}
	for {
		if err := e.Refresh(ctx); err != nil && !errors.Is(err, context.Canceled) {
			e.Log.Warn("reading the KPI counters", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}
