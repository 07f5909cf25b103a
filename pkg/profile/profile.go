// Package profile is what support reads about one customer: the tier and why, the churn-risk
// level with its reasons, RFM, segment and value layer, CLV and P(alive), decoded from the
// stored state under the namespace's policy. loyaltyctl customer prints it; the console's
// customer page and API serve it.
package profile

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// View is one customer's profile.
type View struct {
	CustomerID       string    `json:"customer_id"`
	Namespace        string    `json:"namespace"`
	LastEventAt      time.Time `json:"last_event_at"`
	Tier             string    `json:"tier"`
	TierReviewOn     string    `json:"tier_review_on,omitempty"`
	NetSpend365Minor int64     `json:"net_spend_365d_minor"`
	// TierWhy explains the tier in a sentence; NextTier and NextTierGapMinor say what the next
	// tier up needs (absent at the top).
	TierWhy          string       `json:"tier_why"`
	NextTier         string       `json:"next_tier,omitempty"`
	NextTierGapMinor int64        `json:"next_tier_gap_minor,omitempty"`
	ChurnLevel       string       `json:"churn_level"`
	ChurnScore       float64      `json:"churn_score"`
	ChurnModel       string       `json:"churn_model"`
	ChurnSince       string       `json:"churn_since,omitempty"`
	ChurnReasons     []ReasonView `json:"churn_reasons"`
	// PAlive is the BG/NBD probability the customer is still active (absent under the rules
	// fallback); CLVMinor the expected lifetime value (notifier.CLVMinor).
	PAlive   *float64 `json:"p_alive,omitempty"`
	CLVMinor float64  `json:"clv_minor"`
	// EvaluatedThrough is the last day whose end-of-day evaluation ran: the churn score,
	// reasons, segment and RFM are as of the end of it.
	EvaluatedThrough string             `json:"evaluated_through,omitempty"`
	Segment          string             `json:"segment"`
	SegmentName      string             `json:"segment_name"`
	ValueLayer       string             `json:"value_layer"`
	RFM              scoring.RFM        `json:"rfm"`
	RFMValues        *scoring.RFMValues `json:"rfm_values,omitempty"`
	OpenComplaints   int                `json:"open_complaints"`
	NextDeadline     *time.Time         `json:"next_deadline,omitempty"`
	AppliedOffsets   map[string]int64   `json:"applied_offsets"`
	// StateFields is the stored state in its text view (state.Current.View); StateBytes is
	// what the state takes as stored (the compact value, or a former hash's fields).
	StateFields map[string]string `json:"state_fields"`
	StateBytes  int               `json:"state_bytes"`
}

// ReasonView is one reason behind a score, as support reads it.
type ReasonView struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Value   float64 `json:"value"`
}

// Build decodes a customer's stored value into the profile. clv is the notifier's CLV
// definition (its rules file's clv section).
func Build(cur state.Current, p *scoring.Policy, clv notifier.CLVConfig) (View, error) {
	st, err := cur.State()
	if err != nil {
		return View{}, err
	}
	fields := cur.View()
	size := len(cur.Value)
	if cur.Value == nil {
		size = scoring.FieldsSize(fields)
	}
	v := View{
		CustomerID: st.CustomerID, LastEventAt: time.UnixMilli(st.ClockMs).UTC(),
		Tier: p.TierName(int(st.Tier)), ChurnLevel: st.Churn.String(), ChurnScore: float64(st.ChurnScore) / 1000,
		Segment: st.Segment.String(), SegmentName: st.Segment.Name(), ValueLayer: st.ValueLayer.String(), RFM: st.LastRFM,
		AppliedOffsets: st.Offsets, StateFields: fields, StateBytes: size,
		ChurnModel: p.Churn.RulesVersion,
	}
	if _, version, ok := p.ChurnModel(); st.ChurnModel && ok {
		v.ChurnModel = version
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
		if pa, ok := scoring.PAliveAt(st, st.EvalDay, p); ok {
			v.PAlive = &pa
		}
		v.CLVMinor = notifier.CLVMinor(st, st.EvalDay, p, clv)
	}
	day := scoring.DayOf(v.LastEventAt)
	v.NetSpend365Minor = st.NetSpend(day, p)
	v.OpenComplaints = st.OpenComplaints(day)
	if rv, ok := st.RFMValuesAt(day, p); ok {
		v.RFMValues = &rv
	}
	v.TierWhy, v.NextTier, v.NextTierGapMinor = tierWhy(st, v.NetSpend365Minor, p)
	return v, nil
}

// tierWhy explains the tier: the spend over the tier window against the tier's threshold and
// the next one's, and the review that can lower it.
func tierWhy(st scoring.State, spend int64, p *scoring.Policy) (why, next string, gap int64) {
	levels := p.Tiers.Levels
	cur := levels[st.Tier]
	money := func(minor int64) string { return fmt.Sprintf("%.2f %s", float64(minor)/100, p.Currency) }
	why = fmt.Sprintf("%s needs %s of net spend over %d days; this customer's is %s", cur.Name, money(cur.MinSpendMinor),
		p.Tiers.WindowDays, money(spend))
	if st.BaseReview != 0 {
		why += fmt.Sprintf("; the tier is reviewed on %s", st.BaseReview.Start().Format(time.DateOnly))
	}
	if int(st.Tier)+1 < len(levels) {
		n := levels[st.Tier+1]
		next, gap = n.Name, max(n.MinSpendMinor-spend, 0)
		why += fmt.Sprintf("; %s more reaches %s", money(gap), n.Name)
	}
	return why, next, gap
}

// WriteText writes the view for a reader: one field a line, the reasons indented below the
// churn level.
func (v View) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", name, fmt.Sprintf(format, args...))
	}
	line("customer", "%s", v.CustomerID)
	line("namespace", "%s", v.Namespace)
	line("last event at", "%s", v.LastEventAt.Format(time.RFC3339))
	line("tier", "%s%s", v.Tier, optional(" (review on %s)", v.TierReviewOn))
	line("  why", "%s", v.TierWhy)
	line("net spend 365d", "%d (minor units)", v.NetSpend365Minor)
	line("churn", "%s, score %.3f, model %s%s%s", v.ChurnLevel, v.ChurnScore, v.ChurnModel, optional(", since %s", v.ChurnSince),
		optional(", evaluated through %s", v.EvaluatedThrough))
	for _, r := range v.ChurnReasons {
		line("  reason", "%s: %s (%g)", r.Code, r.Message, r.Value)
	}
	if v.PAlive != nil {
		line("P(alive)", "%.3f", *v.PAlive)
	} else {
		line("P(alive)", "- (rules fallback: too few repeat purchases)")
	}
	line("CLV", "%.2f (minor units)", v.CLVMinor)
	line("segment", "%s, value layer %s", v.Segment, v.ValueLayer)
	line("rfm", "R%d F%d M%d", v.RFM.R, v.RFM.F, v.RFM.M)
	line("open complaints", "%d", v.OpenComplaints)
	if v.NextDeadline != nil {
		line("next deadline", "%s", v.NextDeadline.UTC().Format(time.RFC3339))
	} else {
		line("next deadline", "none")
	}
	line("state", "%d bytes stored (%d fields in the text view)", v.StateBytes, len(v.StateFields))
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
