package loyaltyctl

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// KPIView is what `loyaltyctl kpi` prints.
type KPIView struct {
	Namespace string `json:"namespace"`
	// CompleteThrough is the last day whose KPIs are final (empty: none yet).
	CompleteThrough string     `json:"complete_through,omitempty"`
	Watermark       *time.Time `json:"watermark,omitempty"`
	Day             string     `json:"day"`
	// Final is false when Day is after CompleteThrough: its figures may still change.
	Final bool `json:"final"`
	// Reports are the KPIs of the windows ending on Day (1, 7, 30, 90 and 365 days), or with
	// --days, of one window ending on each of those days.
	Reports []kpi.Report `json:"reports"`
	// Quality is, with --quality, the churn model's quality on each observation day: the
	// share of each churn level and P(alive) decile who bought within 30 and 90 days, the
	// calibration table and the Brier score (docs/metrics.md, "Model quality").
	Quality []kpi.QualityReport `json:"quality,omitempty"`
	// Uplift is, with --quality, the care and win-back uplift against the hold-out group.
	Uplift *kpi.UpliftReport `json:"uplift,omitempty"`
}

func kpiCommand(out *cmdline.Output) *cobra.Command {
	var (
		ns, day      string
		days, window int
		quality      bool
	)
	cmd := &cobra.Command{
		Use:   "kpi",
		Short: "print the population KPIs in event time: revenue, orders, retention, NPS, tier and segment mix",
		Long: `The loyalty KPIs of a namespace, computed in event time from the counters the services keep
with every customer write (docs/metrics.md gives each formula). A day's figures are final once
the watermark has closed it and every customer's evaluation of it has run; by default the
report is for the last final day, over windows of 1, 7, 30, 90 and 365 days ending on it.

  loyaltyctl kpi                          # the last final day, every window
  loyaltyctl kpi --day 2026-11-30         # another day
  loyaltyctl kpi --days 14 --window 30    # the 30-day KPIs ending on each of the last 14 days
  loyaltyctl kpi --quality                # and the churn model's quality on each observation day
  loyaltyctl kpi --output json            # everything, for scripts`,
		Args: cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 0 || days > 3660 {
				return cmdline.Usagef("--days must be 0 to 3660, got %d", days)
			}
			if window < 1 || window > 3660 {
				return cmdline.Usagef("--window must be 1 to 3660 days, got %d", window)
			}
			var at time.Time
			if day != "" {
				var err error
				if at, err = time.Parse(time.DateOnly, day); err != nil {
					return cmdline.Usagef("--day must be YYYY-MM-DD: %v", err)
				}
			}
			return withNamespaceKeys(cmd.Context(), ns, func(env *environment, rdb redisconn.Client, keys keyspace.Keyspace) error {
				view, err := buildKPIView(cmd.Context(), env, rdb, keys, at, days, window, quality)
				if err != nil {
					return err
				}
				if out.JSON() {
					return cmdline.WriteJSON(cmd.OutOrStdout(), view)
				}
				return view.WriteText(cmd.OutOrStdout())
			})
		},
	}
	cmd.Flags().StringVar(&ns, "namespace", "", "key namespace (default LOYALTY_NAMESPACE or live)")
	cmd.Flags().StringVar(&day, "day", "", "report day, YYYY-MM-DD (default: the last final day)")
	cmd.Flags().IntVar(&days, "days", 0, "print one window's KPIs for each of this many days ending on --day")
	cmd.Flags().IntVar(&window, "window", 30, "with --days, the window in days")
	cmd.Flags().BoolVar(&quality, "quality", false, "also print the churn model's quality on each observation day")
	return cmd
}

func buildKPIView(ctx context.Context, env *environment, rdb redisconn.Client, keys keyspace.Keyspace, at time.Time, days, window int, quality bool) (KPIView, error) {
	policy, err := namespacePolicy(ctx, rdb, keys, env.cfg.PolicyFile)
	if err != nil {
		return KPIView{}, err
	}
	store, err := state.New(ctx, rdb, keys, nil)
	if err != nil {
		return KPIView{}, err
	}
	marks, err := watermark.NewTracker(ctx, rdb, keys.Watermarks(), policy.AllowedLateness)
	if err != nil {
		return KPIView{}, err
	}
	snap, err := pipeline.ReadKPIs(ctx, store, marks, policy)
	if err != nil {
		return KPIView{}, err
	}
	view := KPIView{Namespace: keys.Namespace()}
	if !snap.Watermark.IsZero() {
		view.Watermark = &snap.Watermark
	}
	if snap.HasComplete {
		view.CompleteThrough = snap.Complete.Start().Format(time.DateOnly)
	}
	var d scoring.Day
	switch {
	case !at.IsZero():
		d = scoring.DayOf(at)
	case snap.HasComplete:
		d = snap.Complete
	default:
		_, last, ok := snap.Counters.Days()
		if !ok {
			return KPIView{}, fmt.Errorf("namespace %s has no KPI counters yet: no event has been applied", keys.Namespace())
		}
		d = min(last, scoring.DayOf(time.Now()))
	}
	view.Day = d.Start().Format(time.DateOnly)
	view.Final = snap.HasComplete && d <= snap.Complete
	if days > 0 {
		view.Reports = snap.Counters.Series(d-scoring.Day(days)+1, d, window)
	} else {
		for _, w := range kpi.Windows {
			view.Reports = append(view.Reports, snap.Counters.Report(d, w))
		}
	}
	if quality {
		view.Quality = snap.Quality(policy)
		d, err := keyspace.NewDeployment(env.cfg.Deployment)
		if err != nil {
			return KPIView{}, err
		}
		counts, err := notifier.ReadUplift(ctx, rdb, d, keys)
		if err != nil {
			return KPIView{}, err
		}
		u := kpi.Uplift(counts, notifier.UpliftKinds())
		view.Uplift = &u
	}
	return view, nil
}

// WriteText writes the view as a table: one KPI a row and one window a column, or with
// --days one day a row.
func (v KPIView) WriteText(w io.Writer) error {
	final := "final"
	if !v.Final {
		final = "NOT final: the watermark or the evaluations of the day are still behind"
	}
	fmt.Fprintf(w, "namespace %s, KPIs of %s (%s); final through %s\n", v.Namespace, v.Day, final, orDash(v.CompleteThrough))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	if len(v.Reports) > 0 && v.Reports[0].Day != v.Reports[len(v.Reports)-1].Day {
		fmt.Fprintf(tw, "day\torders\tnet revenue\tAOV\tactive\trepurchase\tretention\tNPS\tcustomers\t\n")
		for _, r := range v.Reports {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t%d\t%s\t%s\t%s\t%d\t\n", r.Day, r.Orders, float64(r.NetRevenueMinor)/100,
				money(r.AvgOrderMinor), r.ActiveCustomers, pct(r.RepurchaseRate), pct(r.RetentionRate), num(r.NPS), r.Customers)
		}
		return tw.Flush()
	}
	fmt.Fprintf(tw, "window\t")
	for _, r := range v.Reports {
		fmt.Fprintf(tw, "%dd\t", r.WindowDays)
	}
	fmt.Fprintln(tw)
	row := func(name string, cell func(kpi.Report) string) {
		fmt.Fprintf(tw, "%s\t", name)
		for _, r := range v.Reports {
			fmt.Fprintf(tw, "%s\t", cell(r))
		}
		fmt.Fprintln(tw)
	}
	count := func(f func(kpi.Report) int64) func(kpi.Report) string {
		return func(r kpi.Report) string { return fmt.Sprint(f(r)) }
	}
	row("orders", count(func(r kpi.Report) int64 { return r.Orders }))
	row("net revenue", func(r kpi.Report) string { return fmt.Sprintf("%.2f", float64(r.NetRevenueMinor)/100) })
	row("average order value", func(r kpi.Report) string { return money(r.AvgOrderMinor) })
	row("refund rate", func(r kpi.Report) string { return pct(r.RefundRate) })
	row("active customers", count(func(r kpi.Report) int64 { return r.ActiveCustomers }))
	row("repurchase rate", func(r kpi.Report) string { return pct(r.RepurchaseRate) })
	row("retention rate", func(r kpi.Report) string { return pct(r.RetentionRate) })
	row("churn rate", func(r kpi.Report) string { return pct(r.ChurnRate) })
	row("new customers", count(func(r kpi.Report) int64 { return r.NewCustomers }))
	row("lapsed customers", count(func(r kpi.Report) int64 { return r.Lapsed }))
	row("entered HIGH risk", count(func(r kpi.Report) int64 { return r.EnteredHighRisk }))
	row("NPS", func(r kpi.Report) string { return num(r.NPS) })
	row("average CSAT", func(r kpi.Report) string { return num(r.AvgCSAT) })
	row("complaints / 1,000 active", func(r kpi.Report) string { return num(r.ComplaintsPer1k) })
	row("layer transition rate", func(r kpi.Report) string { return pct(r.LayerTransitionRate) })
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the KPIs: %w", err)
	}
	if len(v.Reports) == 0 {
		return nil
	}
	r := v.Reports[0]
	fmt.Fprintf(w, "customers at the end of %s: %d\n", v.Day, r.Customers)
	for _, m := range []struct {
		name string
		mix  map[string]int64
	}{{"tiers", r.Tiers}, {"churn levels", r.Churn}, {"segments", r.Segments}, {"value layers", r.Layers}} {
		fmt.Fprintf(w, "  %-13s %s\n", m.name+":", mixLine(m.mix))
	}
	return v.writeQuality(w)
}

// writeQuality writes the model quality of each observation day: the 30/90-day repurchase rate
// of each churn level, and the Brier score against its baseline.
func (v KPIView) writeQuality(w io.Writer) error {
	if len(v.Quality) == 0 {
		return nil
	}
	fmt.Fprintln(w, "churn model quality (bought within 30 / 90 days of the observation day; - = not final yet):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "observed\tLOW\tMEDIUM\tHIGH\tmodel-scored\tBrier 30d (base)\tBrier 90d (base)\t\n")
	for _, q := range v.Quality {
		fmt.Fprintf(tw, "%s\t", q.Day)
		for _, g := range q.Levels {
			fmt.Fprintf(tw, "%d: %s / %s\t", g.Customers, pct(g.Rate30), pct(g.Rate90))
		}
		fmt.Fprintf(tw, "%d\t", q.Horizons[0].Customers)
		for _, h := range q.Horizons {
			if h.Brier == nil {
				fmt.Fprintf(tw, "-\t")
				continue
			}
			fmt.Fprintf(tw, "%.4f (%.4f)\t", *h.Brier, *h.BrierBase)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the model quality: %w", err)
	}
	if v.Uplift == nil {
		return nil
	}
	fmt.Fprintf(w, "uplift: bought within the horizon of the trigger, treated vs the hold-out group (95%% intervals); %d exposures pending\n", v.Uplift.Pending)
	for _, u := range v.Uplift.Total {
		fmt.Fprintf(w, "  %-9s %2dd  treated %s  hold-out %s  uplift %s\n", u.Kind, u.Days, armText(u.Treated), armText(u.Holdout), intervalText(u.Uplift, u.Low, u.High))
	}
	return nil
}

func armText(a kpi.ArmRate) string {
	return fmt.Sprintf("%d/%d %s", a.Bought, a.Customers, intervalText(a.Rate, a.Low, a.High))
}

func intervalText(v, lo, hi *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%% [%.1f, %.1f]", 100**v, 100**lo, 100**hi)
}

func mixLine(m map[string]int64) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, 0, len(names))
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func pct(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100**r)
}

func num(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *r)
}

func money(minor *float64) string {
	if minor == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *minor/100)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
