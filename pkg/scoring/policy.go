package scoring

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
)

// Policy is every rule, weight and threshold the scoring uses. Build it with
// ParsePolicy, LoadPolicy or DefaultPolicy (which validate it); a Policy
// must not be modified after validation. Cut points change more often than
// the rest and are swapped with WithCutpoints.
type Policy struct {
	// Version is stamped on every tier change (policy_version).
	Version string `yaml:"version"`
	// Currency is the ISO 4217 code all amounts are in.
	Currency string `yaml:"currency"`
	// AllowedLateness is how far behind the newest event time an event
	// may arrive and still be scored exactly as if it had arrived in order.
	AllowedLateness time.Duration `yaml:"allowed_lateness"`
	// MaxDeadlineDays bounds how far ahead NextDeadline looks; a customer
	// with no change in that horizon is re-checked at its end. At most
	// MaxRecheckDays: a customer's evaluation may lag the watermark by this
	// much, which the open days of its state must cover.
	MaxDeadlineDays int `yaml:"max_deadline_days"`

	Tiers     TierPolicy    `yaml:"tiers"`
	Churn     ChurnPolicy   `yaml:"churn"`
	Segments  SegmentPolicy `yaml:"segments"`
	Cutpoints Cutpoints     `yaml:"cutpoints"`
	Dedupe    DedupePolicy  `yaml:"dedupe"`

	// Sealed, when set, puts the policy under the pipeline's population cut points: Cutpoints
	// are the set derived at the last boundary day whose cut points are final (*Sealed), or
	// the policy's own while the population has been too small, and only days up to the next
	// boundary may close (see CloseBound). NotSealed means no boundary is final yet, so no day
	// closes. Nil: the cut points are fixed and days close by the watermark alone.
	Sealed *Day `yaml:"-"`
	// Fitted is the churn model fitted at the last refit boundary sealed, under
	// churn.refit (see RefitPolicy); nil before the first.
	Fitted *FittedModel `yaml:"-"`
}

// TierPolicy is the loyalty ladder.
type TierPolicy struct {
	// WindowDays is the rolling qualification window (365).
	WindowDays int `yaml:"window_days"`
	// ReviewAfterDays is how long after reaching a tier it is reviewed (365).
	ReviewAfterDays int `yaml:"review_after_days"`
	// WarningDays is how many days before a review a customer on pace to
	// miss it is warned (30).
	WarningDays int `yaml:"warning_days"`
	// ReturnsWindowDays is how long after a purchase its refund still
	// reverses its qualifying spend (30).
	ReturnsWindowDays int `yaml:"returns_window_days"`
	// Levels lists the tiers from lowest to highest; the first must have
	// MinSpendMinor 0.
	Levels []TierLevel `yaml:"levels"`
}

// TierLevel is one rung of the ladder.
type TierLevel struct {
	Name          string `yaml:"name"`
	MinSpendMinor int64  `yaml:"min_spend_minor"`
}

// ChurnPolicy configures the churn-risk score and levels.
type ChurnPolicy struct {
	ModelVersion string `yaml:"model_version"`
	RulesVersion string `yaml:"rules_version"`
	// TimeUnitDays is the time unit the BG/NBD parameters were fitted in
	// (7 for weeks).
	TimeUnitDays float64    `yaml:"time_unit_days"`
	BGNBD        btyd.BGNBD `yaml:"bgnbd"`
	// The model is used once a customer has MinRepeatPurchases repeat
	// purchase days and MinTenureDays since the first purchase; before
	// that the rules fallback scores them.
	MinRepeatPurchases int `yaml:"min_repeat_purchases"`
	MinTenureDays      int `yaml:"min_tenure_days"`
	// FallbackGapDays is the "usual gap" assumed by the rules fallback.
	FallbackGapDays float64 `yaml:"fallback_gap_days"`
	// GapRatioFullRisk is the gap/usual-gap ratio at which the gap risk
	// reaches 1 (it is 0 at a ratio of 1).
	GapRatioFullRisk float64 `yaml:"gap_ratio_full_risk"`
	// Login trend: active days in the recent window against the long one.
	LoginRecentDays int `yaml:"login_recent_days"`
	LoginLongDays   int `yaml:"login_long_days"`
	// Feedback signals count for this many days.
	NPSWindowDays  int          `yaml:"nps_window_days"`
	CSATWindowDays int          `yaml:"csat_window_days"`
	Weights        ChurnWeights `yaml:"weights"`
	Feedback       FeedbackRisk `yaml:"feedback"`
	Medium         Hysteresis   `yaml:"medium"`
	High           Hysteresis   `yaml:"high"`
	// MinDwellDays is the least time a customer stays at a level.
	MinDwellDays int `yaml:"min_dwell_days"`
	// Refit, when enabled, replaces BGNBD by models the pipeline fits on its own population
	// at boundary days (see RefitPolicy); BGNBD then only serves `loyaltyctl model` defaults.
	Refit RefitPolicy `yaml:"refit"`
	// QualityEveryDays is the distance between the days the churn predictions are recorded
	// for their outcome (see ObserveQuality); 0 turns model quality off. A multiple of
	// segments.cutpoints_every_days.
	QualityEveryDays int `yaml:"quality_every_days"`
}

// QualityAt reports whether day b is a model-quality observation day.
func (c ChurnPolicy) QualityAt(b Day) bool {
	n := int64(c.QualityEveryDays)
	return n > 0 && floorDiv(int64(b), n)*n == int64(b)
}

// RefitPolicy makes the pipeline learn its churn model from its own history: at the end of
// every boundary day that is a multiple of EveryDays (days since the Unix epoch), every
// customer with a purchase adds its BG/NBD summary to the population's histograms, and once the
// boundary is sealed the BG/NBD and Gamma-Gamma models are fitted on them by maximum
// likelihood. The fit scores every day after that boundary, labelled with its version
// (FittedModel.Version), until the next fit. A fit needs MinCustomers customers, of whom
// MinRepeatCustomers bought again; until a boundary had that much data the churn score uses the
// labelled rules fallback (no P(alive)), and a later boundary with too little data, or whose
// fit does not converge, keeps the fit in force.
type RefitPolicy struct {
	// EveryDays is the distance between refits; 0 disables refitting. It is a multiple of
	// segments.cutpoints_every_days (a refit rides on the boundary's sealing).
	EveryDays          int `yaml:"every_days"`
	MinCustomers       int `yaml:"min_customers"`
	MinRepeatCustomers int `yaml:"min_repeat_customers"`
	// Penalizer is the BG/NBD fit's L2 penalty on the log-parameters (btyd.FitBGNBDPenalized):
	// a history of a year or less cannot show customers dropping out, and without it the fit
	// runs off to the bounds and is not used.
	Penalizer float64 `yaml:"penalizer"`
}

// Enabled reports whether the pipeline fits its own churn model.
func (r RefitPolicy) Enabled() bool { return r.EveryDays > 0 }

// At reports whether day b is a refit boundary.
func (r RefitPolicy) At(b Day) bool {
	return r.EveryDays > 0 && floorDiv(int64(b), int64(r.EveryDays))*int64(r.EveryDays) == int64(b)
}

// FittedModel is a churn model the pipeline fitted on its own population at a boundary day.
// Time is in the policy's time unit (churn.time_unit_days), money in minor units.
type FittedModel struct {
	// Version names the fit: the policy's model_version and the boundary's date, e.g.
	// "bgnbd-v1@2026-11-05". Every churn change scored with it carries it.
	Version    string           `json:"version"`
	Boundary   Day              `json:"boundary"`
	BGNBD      btyd.BGNBD       `json:"bgnbd"`
	GammaGamma *btyd.GammaGamma `json:"gamma_gamma,omitempty"`
	// Customers is the population fitted; RepeatCustomers those who bought again (the
	// Gamma-Gamma sample).
	Customers       int64   `json:"customers"`
	RepeatCustomers int64   `json:"repeat_customers"`
	LogLik          float64 `json:"loglik"`
	Penalizer       float64 `json:"penalizer,omitempty"`
}

// Validate checks the fit's parameters.
func (m FittedModel) Validate() error {
	if m.Version == "" {
		return errors.New("fitted model: no version")
	}
	if err := m.BGNBD.Validate(); err != nil {
		return fmt.Errorf("fitted model %s: %w", m.Version, err)
	}
	if m.GammaGamma != nil {
		if err := m.GammaGamma.Validate(); err != nil {
			return fmt.Errorf("fitted model %s: %w", m.Version, err)
		}
	}
	return nil
}

// ChurnWeights weighs the score's components; components that do not apply
// to a customer are left out and the rest renormalised.
type ChurnWeights struct {
	PAlive   float64 `yaml:"p_alive"`
	Gap      float64 `yaml:"gap"`
	Login    float64 `yaml:"login"`
	Feedback float64 `yaml:"feedback"`
}

// FeedbackRisk is the feedback component's value (0–1) for each signal; the
// component is the largest active one.
type FeedbackRisk struct {
	NPSDetractor  float64 `yaml:"nps_detractor"`
	CSATLow       float64 `yaml:"csat_low"`
	OpenComplaint float64 `yaml:"open_complaint"`
}

// Hysteresis thresholds for one level: a customer enters it when the score
// reaches Enter and leaves it when the score falls below Leave.
type Hysteresis struct {
	Enter float64 `yaml:"enter"`
	Leave float64 `yaml:"leave"`
}

// DedupePolicy configures how long a customer's event ids are remembered to skip a producer's
// duplicates (the same event id again, at a new offset; a redelivered record is recognised by
// its offset whatever this says). Ids are remembered per input topic (purchases and refunds,
// logins, feedback), in that topic's event time: the horizon and the cap are functions of the
// customer's history, never of the wall clock, so a replay skips exactly what the live run
// skipped. Omitted: DefaultDedupe.
type DedupePolicy struct {
	// HorizonDays: an event id is remembered until its topic's clock (the newest event day
	// of that topic applied for the customer) is more than this many days past the day it
	// was applied on. A repeat within it is skipped; a later one is applied again.
	HorizonDays int `yaml:"horizon_days"`
	// MaxIDsPerTopic caps the ids remembered per customer and topic (the oldest go first),
	// which bounds the state of a customer with bursts of events; at most MaxDedupeIDs.
	MaxIDsPerTopic int `yaml:"max_ids_per_topic"`
}

// DefaultDedupe is the dedupe policy of a policy file without a dedupe section: a week of
// each topic's event time, at most 64 ids per topic.
var DefaultDedupe = DedupePolicy{HorizonDays: 7, MaxIDsPerTopic: 64}

// SegmentPolicy configures RFM.
type SegmentPolicy struct {
	// WindowDays is the window frequency and monetary value are counted in.
	WindowDays int `yaml:"window_days"`
	// CutpointsEveryDays is the distance between cut-point boundary days: the days whose
	// end the population's RFM measures are sampled at (the days divisible by it since the
	// Unix epoch; with 7, every Thursday UTC). Omitted: 7.
	CutpointsEveryDays int `yaml:"cutpoints_every_days"`
}

// Cutpoints are population quantile boundaries (20/40/60/80%) for the RFM
// scores, versioned so every segment change names the cut points it used.
// Recency is in days since the last purchase (lower is better), Frequency
// in purchase days and Monetary in minor units over the segment window.
type Cutpoints struct {
	Version   string     `yaml:"version" json:"version"`
	Recency   [4]float64 `yaml:"recency_days" json:"recency_days"`
	Frequency [4]float64 `yaml:"frequency" json:"frequency"`
	Monetary  [4]float64 `yaml:"monetary_minor" json:"monetary_minor"`
}

// ErrInvalidPolicy is returned (wrapped) for a policy that fails validation.
var ErrInvalidPolicy = errors.New("invalid policy")

var tierName = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,31}$`)

// Validate checks every field and returns all problems, each naming its
// field (for example "tiers.levels[2].min_spend_minor: must be greater than
// tiers.levels[1] (200000)").
func (p *Policy) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if p.Version == "" || len(p.Version) > 40 {
		add("version", "must be 1–40 characters")
	}
	if !regexp.MustCompile(`^[A-Z]{3}$`).MatchString(p.Currency) {
		add("currency", "must be a three-letter ISO 4217 code, got %q", p.Currency)
	}
	if p.AllowedLateness < 0 || p.AllowedLateness >= 24*time.Hour {
		add("allowed_lateness", "must be at least 0 and less than 24h, got %s", p.AllowedLateness)
	}
	if p.MaxDeadlineDays < 1 || p.MaxDeadlineDays > MaxRecheckDays {
		add("max_deadline_days", "must be between 1 and %d: a customer's evaluation may lag the watermark by this many days, which its state keeps exact within %d open days", MaxRecheckDays, MaxOpenDays)
	}
	t := p.Tiers
	posDays := func(field string, v, limit int) {
		if v < 1 || v > limit {
			add(field, "must be between 1 and %d, got %d", limit, v)
		}
	}
	posDays("tiers.window_days", t.WindowDays, 730)
	posDays("tiers.review_after_days", t.ReviewAfterDays, 3650)
	posDays("tiers.returns_window_days", t.ReturnsWindowDays, 365)
	if t.WarningDays < 0 || t.WarningDays >= t.ReviewAfterDays {
		add("tiers.warning_days", "must be between 0 and review_after_days-1, got %d", t.WarningDays)
	}
	if len(t.Levels) < 1 || len(t.Levels) > maxTierLevels {
		add("tiers.levels", "must list 1 to 9 tiers, got %d", len(t.Levels))
	}
	seen := map[string]bool{}
	for i, l := range t.Levels {
		f := fmt.Sprintf("tiers.levels[%d]", i)
		if !tierName.MatchString(l.Name) {
			add(f+".name", "must be an upper-case code like GOLD, got %q", l.Name)
		} else if seen[l.Name] {
			add(f+".name", "duplicate tier %q", l.Name)
		}
		seen[l.Name] = true
		switch {
		case i == 0 && l.MinSpendMinor != 0:
			add(f+".min_spend_minor", "the lowest tier must start at 0, got %d", l.MinSpendMinor)
		case i > 0 && l.MinSpendMinor <= t.Levels[i-1].MinSpendMinor:
			add(f+".min_spend_minor", "must be greater than tiers.levels[%d] (%d), got %d", i-1, t.Levels[i-1].MinSpendMinor, l.MinSpendMinor)
		}
	}
	c := p.Churn
	if c.ModelVersion == "" || c.RulesVersion == "" || c.ModelVersion == c.RulesVersion {
		add("churn.model_version", "model_version and rules_version must be set and differ")
	}
	if !(c.TimeUnitDays > 0) {
		add("churn.time_unit_days", "must be > 0")
	}
	for _, b := range []struct {
		f string
		v float64
	}{{"r", c.BGNBD.R}, {"alpha", c.BGNBD.Alpha}, {"a", c.BGNBD.A}, {"b", c.BGNBD.B}} {
		if !(b.v > 0) || math.IsInf(b.v, 0) {
			add("churn.bgnbd."+b.f, "must be a finite number > 0, got %v", b.v)
		}
	}
	if c.MinRepeatPurchases < 1 {
		add("churn.min_repeat_purchases", "must be >= 1")
	}
	if q, every := c.QualityEveryDays, p.Segments.CutpointsEveryDays; q < 0 || (q > 0 && (q < 14 || every > 0 && q%every != 0)) {
		add("churn.quality_every_days", "must be 0 (off), or at least 14 and a multiple of segments.cutpoints_every_days (%d), got %d", every, q)
	}
	if r := c.Refit; r.EveryDays != 0 {
		every := p.Segments.CutpointsEveryDays
		if r.EveryDays < 0 || (every > 0 && r.EveryDays%every != 0) {
			add("churn.refit.every_days", "must be 0 (off) or a positive multiple of segments.cutpoints_every_days (%d), got %d", every, r.EveryDays)
		}
		if r.MinCustomers < 100 {
			add("churn.refit.min_customers", "must be at least 100, got %d", r.MinCustomers)
		}
		if !(r.Penalizer >= 0 && r.Penalizer <= 1) {
			add("churn.refit.penalizer", "must be between 0 and 1, got %v", r.Penalizer)
		}
		if r.MinRepeatCustomers < 20 || r.MinRepeatCustomers > r.MinCustomers {
			add("churn.refit.min_repeat_customers", "must be at least 20 and at most min_customers, got %d", r.MinRepeatCustomers)
		}
	}
	if c.MinTenureDays < 0 {
		add("churn.min_tenure_days", "must be >= 0")
	}
	if !(c.FallbackGapDays >= 1) {
		add("churn.fallback_gap_days", "must be >= 1")
	}
	if !(c.GapRatioFullRisk > 1) {
		add("churn.gap_ratio_full_risk", "must be > 1")
	}
	posDays("churn.login_recent_days", c.LoginRecentDays, 127)
	posDays("churn.login_long_days", c.LoginLongDays, loginBits-MaxOpenDays-2) // room for the open days in the login bits
	if c.LoginRecentDays >= c.LoginLongDays {
		add("churn.login_recent_days", "must be less than login_long_days")
	}
	posDays("churn.nps_window_days", c.NPSWindowDays, 3650)
	posDays("churn.csat_window_days", c.CSATWindowDays, 3650)
	for _, w := range []struct {
		f string
		v float64
	}{
		{"churn.weights.p_alive", c.Weights.PAlive}, {"churn.weights.gap", c.Weights.Gap},
		{"churn.weights.login", c.Weights.Login}, {"churn.weights.feedback", c.Weights.Feedback},
		{"churn.feedback.nps_detractor", c.Feedback.NPSDetractor}, {"churn.feedback.csat_low", c.Feedback.CSATLow},
		{"churn.feedback.open_complaint", c.Feedback.OpenComplaint},
	} {
		if !(w.v >= 0 && w.v <= 1) {
			add(w.f, "must be between 0 and 1, got %v", w.v)
		}
	}
	if c.Weights.Gap+c.Weights.Login+c.Weights.Feedback == 0 {
		add("churn.weights", "gap, login and feedback weights must not all be 0")
	}
	for _, h := range []struct {
		f string
		v Hysteresis
	}{{"churn.medium", c.Medium}, {"churn.high", c.High}} {
		if !(h.v.Leave > 0 && h.v.Leave <= h.v.Enter && h.v.Enter <= 1) {
			add(h.f, "want 0 < leave <= enter <= 1, got leave %v enter %v", h.v.Leave, h.v.Enter)
		}
	}
	if !(c.High.Enter > c.Medium.Enter && c.High.Leave > c.Medium.Leave) {
		add("churn.high", "enter and leave must be above churn.medium's")
	}
	if c.MinDwellDays < 0 || c.MinDwellDays > 365 {
		add("churn.min_dwell_days", "must be between 0 and 365")
	}
	posDays("segments.window_days", p.Segments.WindowDays, t.WindowDays)
	posDays("segments.cutpoints_every_days", p.Segments.CutpointsEveryDays, MaxCutpointsEveryDays)
	if err := p.Cutpoints.Validate(); err != nil {
		errs = append(errs, err)
	}
	posDays("dedupe.horizon_days", p.Dedupe.HorizonDays, MaxDedupeHorizonDays)
	if n := p.Dedupe.MaxIDsPerTopic; n < 1 || n > MaxDedupeIDs {
		add("dedupe.max_ids_per_topic", "must be between 1 and %d, got %d", MaxDedupeIDs, n)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidPolicy, errors.Join(errs...))
	}
	return nil
}

// Validate checks that the cut points are versioned, finite and
// non-decreasing.
func (c Cutpoints) Validate() error {
	var errs []error
	if c.Version == "" || len(c.Version) > 40 {
		errs = append(errs, errors.New("cutpoints.version: must be 1–40 characters"))
	}
	for _, s := range []struct {
		f string
		v [4]float64
	}{{"cutpoints.recency_days", c.Recency}, {"cutpoints.frequency", c.Frequency}, {"cutpoints.monetary_minor", c.Monetary}} {
		for i, v := range s.v {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				errs = append(errs, fmt.Errorf("%s[%d]: must be a finite number >= 0, got %v", s.f, i, v))
			} else if i > 0 && v < s.v[i-1] {
				errs = append(errs, fmt.Errorf("%s[%d]: must not be less than %s[%d]", s.f, i, s.f, i-1))
			}
		}
	}
	return errors.Join(errs...)
}

// WithCutpoints returns a copy of the policy that uses c.
func (p *Policy) WithCutpoints(c Cutpoints) (*Policy, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	q := *p
	q.Tiers.Levels = append([]TierLevel(nil), p.Tiers.Levels...)
	q.Cutpoints = c
	return &q, nil
}

// WithFittedModel returns a copy of the policy that scores churn with m (nil: no fit yet). It
// is an error for a policy that does not refit.
func (p *Policy) WithFittedModel(m *FittedModel) (*Policy, error) {
	if m != nil {
		if !p.Churn.Refit.Enabled() {
			return nil, fmt.Errorf("%w: a fitted model %s under a policy without churn.refit", ErrInvalidPolicy, m.Version)
		}
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
		}
	}
	q := *p
	q.Fitted = m
	return &q, nil
}

// ChurnModel is the BG/NBD model the policy scores churn with and its version; ok is false
// when the rules fallback must score every customer (refitting, and nothing fitted yet).
func (p *Policy) ChurnModel() (m btyd.BGNBD, version string, ok bool) {
	if !p.Churn.Refit.Enabled() {
		return p.Churn.BGNBD, p.Churn.ModelVersion, true
	}
	if p.Fitted == nil {
		return btyd.BGNBD{}, "", false
	}
	return p.Fitted.BGNBD, p.Fitted.Version, true
}

// WithSealedCutpoints returns a copy of the policy under population cut points sealed
// through boundary day sealed (NotSealed: none yet), scoring with c, or with the policy's own
// cut points when c is nil (the population was too small at every sealed boundary).
func (p *Policy) WithSealedCutpoints(sealed Day, c *Cutpoints) (*Policy, error) {
	q := *p
	if c != nil {
		r, err := p.WithCutpoints(*c)
		if err != nil {
			return nil, err
		}
		q = *r
	}
	q.Sealed = &sealed
	return &q, nil
}

// TierName is the name of tier index i.
func (p *Policy) TierName(i int) string { return p.Tiers.Levels[i].Name }
