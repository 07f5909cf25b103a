package loyaltyctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// CustomerView is what `loyaltyctl customer` prints.
type CustomerView struct {
	CustomerID       string       `json:"customer_id"`
	Namespace        string       `json:"namespace"`
	LastEventAt      time.Time    `json:"last_event_at"`
	Tier             string       `json:"tier"`
	TierReviewOn     string       `json:"tier_review_on,omitempty"`
	NetSpend365Minor int64        `json:"net_spend_365d_minor"`
	ChurnLevel       string       `json:"churn_level"`
	ChurnScore       float64      `json:"churn_score"`
	ChurnModel       string       `json:"churn_model"`
	ChurnSince       string       `json:"churn_since,omitempty"`
	ChurnReasons     []ReasonView `json:"churn_reasons"`
	// EvaluatedThrough is the last day whose end-of-day evaluation ran: the churn score,
	// reasons, segment and RFM are as of the end of it.
	EvaluatedThrough string             `json:"evaluated_through,omitempty"`
	Segment          string             `json:"segment"`
	ValueLayer       string             `json:"value_layer"`
	RFM              scoring.RFM        `json:"rfm"`
	RFMValues        *scoring.RFMValues `json:"rfm_values,omitempty"`
	OpenComplaints   int                `json:"open_complaints"`
	NextDeadline     *time.Time         `json:"next_deadline,omitempty"`
	AppliedOffsets   map[string]int64   `json:"applied_offsets"`
	StateFields      map[string]string  `json:"state_fields"`
	StateBytes       int                `json:"state_bytes"`
}

// ReasonView is one reason behind a score, as support reads it.
type ReasonView struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Value   float64 `json:"value"`
}

func customerCommand(out *cmdline.Output) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "customer ID",
		Short: "print a customer's state, scores, tier, churn level and next deadline",
		Args:  cmdline.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCustomer(cmd.Context(), args[0], ns, out, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&ns, "namespace", "", "key namespace (default LOYALTY_NAMESPACE or live)")
	return cmd
}

func runCustomer(ctx context.Context, id, ns string, out *cmdline.Output, stdout io.Writer) error {
	return withNamespaceKeys(ctx, ns, func(env *environment, rdb redisconn.Client, keys keyspace.Keyspace) error {
		return printCustomer(ctx, env, rdb, keys, id, out, stdout)
	})
}

func printCustomer(ctx context.Context, env *environment, rdb redisconn.Client, keys keyspace.Keyspace, id string, out *cmdline.Output, stdout io.Writer) error {
	store, err := state.New(ctx, rdb, keys, nil)
	if err != nil {
		return err
	}
	fields, err := store.Get(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("customer %q has no state in namespace %s", id, keys.Namespace())
	}
	if err != nil {
		return err
	}
	policy := scoring.DefaultPolicy()
	if env.cfg.PolicyFile != "" {
		if policy, err = scoring.LoadPolicy(env.cfg.PolicyFile); err != nil {
			return err
		}
	}
	view, err := BuildCustomerView(fields, policy)
	if err != nil {
		return err
	}
	view.Namespace = keys.Namespace()
	if d, ok, err := store.Deadline(ctx, id); err != nil {
		return err
	} else if ok {
		view.NextDeadline = &d
	}
	if out.JSON() {
		return cmdline.WriteJSON(stdout, view)
	}
	return view.WriteText(stdout)
}

// WriteText writes the view for a reader: one field a line, the reasons indented below the
// churn level.
func (v CustomerView) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", name, fmt.Sprintf(format, args...))
	}
	line("customer", "%s", v.CustomerID)
	line("namespace", "%s", v.Namespace)
	line("last event at", "%s", v.LastEventAt.Format(time.RFC3339))
	line("tier", "%s%s", v.Tier, optional(" (review on %s)", v.TierReviewOn))
	line("net spend 365d", "%d (minor units)", v.NetSpend365Minor)
	line("churn", "%s, score %.3f, model %s%s%s", v.ChurnLevel, v.ChurnScore, v.ChurnModel, optional(", since %s", v.ChurnSince),
		optional(", evaluated through %s", v.EvaluatedThrough))
	for _, r := range v.ChurnReasons {
		line("  reason", "%s: %s (%g)", r.Code, r.Message, r.Value)
	}
	line("segment", "%s, value layer %s", v.Segment, v.ValueLayer)
	line("rfm", "R%d F%d M%d", v.RFM.R, v.RFM.F, v.RFM.M)
	line("open complaints", "%d", v.OpenComplaints)
	if v.NextDeadline != nil {
		line("next deadline", "%s", v.NextDeadline.UTC().Format(time.RFC3339))
	} else {
		line("next deadline", "none")
	}
	line("state", "%d fields, %d bytes", len(v.StateFields), v.StateBytes)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the customer: %w", err)
	}
	return nil
}

// optional formats v into format, or is empty when v is.
func optional(format, v string) string {
	if v == "" {
		return ""
	}
	return fmt.Sprintf(format, v)
}

// BuildCustomerView decodes stored state fields into the inspection view.
func BuildCustomerView(fields map[string]string, p *scoring.Policy) (CustomerView, error) {
	st, err := scoring.UnmarshalFields(fields)
	if err != nil {
		return CustomerView{}, err
	}
	v := CustomerView{
		CustomerID: st.CustomerID, LastEventAt: time.UnixMilli(st.ClockMs).UTC(),
		Tier: p.TierName(int(st.Tier)), ChurnLevel: st.Churn.String(), ChurnScore: float64(st.ChurnScore) / 1000,
		Segment: st.Segment.String(), ValueLayer: st.ValueLayer.String(), RFM: st.LastRFM,
		AppliedOffsets: st.Offsets, StateFields: fields, StateBytes: scoring.FieldsSize(fields),
		ChurnModel: p.Churn.RulesVersion,
	}
	if st.ChurnModel {
		v.ChurnModel = p.Churn.ModelVersion
	}
	if st.BaseReview != 0 {
		v.TierReviewOn = st.BaseReview.Start().Format(time.DateOnly)
	}
	if st.ChurnSince != 0 {
		v.ChurnSince = st.ChurnSince.Start().Format(time.DateOnly)
	}
	v.ChurnReasons = []ReasonView{}
	if st.EvalDay > 0 {
		v.EvaluatedThrough = st.EvalDay.Start().Format(time.DateOnly)
		_, reasons := scoring.ChurnAt(st, st.EvalDay, p)
		for _, r := range reasons {
			v.ChurnReasons = append(v.ChurnReasons, ReasonView{Code: r.Code, Message: r.Message, Value: r.Value})
		}
	}
	day := scoring.DayOf(v.LastEventAt)
	v.NetSpend365Minor = st.NetSpend(day, p)
	v.OpenComplaints = st.OpenComplaints(day)
	if rv, ok := st.RFMValuesAt(day, p); ok {
		v.RFMValues = &rv
	}
	return v, nil
}
