package notifier

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

//go:embed default_rules.yaml
var defaultRulesYAML []byte

// DefaultRulesYAML returns the embedded default rules file, a starting point for a
// deployment's own.
func DefaultRulesYAML() []byte { return bytes.Clone(defaultRulesYAML) }

// Trigger names: which derived-event topic a rule listens to.
const (
	OnChurnRisk  = "churn_risk"  // loyalty.churn-risk.v1
	OnTierChange = "tier_change" // loyalty.tier-changes.v1
)

// Rules is a parsed and validated rules file. It must not be modified after validation.
type Rules struct {
	Version string `yaml:"version"`
	// Cooldown is the least event time between two actions for one customer, across kinds.
	Cooldown time.Duration `yaml:"cooldown"`
	// HoldoutPercent of customers (by hash of HoldoutSalt and customer id) get nothing.
	HoldoutPercent float64   `yaml:"holdout_percent"`
	HoldoutSalt    string    `yaml:"holdout_salt"`
	CLV            CLVConfig `yaml:"clv"`
	Rules          []Rule    `yaml:"rules"`
}

// CLVConfig says how "CLV in the top X%" is decided.
type CLVConfig struct {
	// TopFraction is the share of the population that counts as top (0.2 for top 20%).
	TopFraction float64 `yaml:"top_fraction"`
	// HorizonDays and AnnualDiscount define the CLV: expected purchases over the horizon
	// (BG/NBD) × expected spend (Gamma-Gamma), discounted. Under a policy with churn.refit the
	// pipeline's latest fit supplies both once it has one; until then, and otherwise, the
	// policy's BG/NBD parameters and GammaGamma here.
	HorizonDays    float64         `yaml:"horizon_days"`
	AnnualDiscount float64         `yaml:"annual_discount"`
	GammaGamma     btyd.GammaGamma `yaml:"gamma_gamma"`
	// ThresholdMinor > 0 fixes the top threshold; 0 derives it from the population.
	ThresholdMinor float64 `yaml:"threshold_minor"`
	// Refresh is how often the population threshold is recomputed.
	Refresh time.Duration `yaml:"refresh"`
	// SampleSize bounds the customers read per recomputation; MinSample is the least
	// population for a threshold to be trusted (below it, no customer counts as top).
	SampleSize int `yaml:"sample_size"`
	MinSample  int `yaml:"min_sample"`
}

// Rule maps a trigger to an action kind when its conditions hold.
type Rule struct {
	Name string           `yaml:"name"`
	Kind event.ActionKind `yaml:"kind"`
	On   string           `yaml:"on"`
	When Condition        `yaml:"when"`
}

// Condition is a conjunction of tests; AnyOf adds a disjunction of nested conditions. An empty
// condition always holds.
type Condition struct {
	// ToLevel: the churn-risk trigger's new level is one of these.
	ToLevel []string `yaml:"to_level"`
	// Rises: the churn-risk level went up (true) or not (false).
	Rises *bool `yaml:"rises"`
	// Direction: the tier trigger's direction is one of these (UP, DOWN, WARNING).
	Direction []string `yaml:"direction"`
	// ToTier: the tier trigger's new tier is one of these.
	ToTier []string `yaml:"to_tier"`
	// Tier: the customer's current tier (from stored state) is one of these.
	Tier []string `yaml:"tier"`
	// CLVTop: the customer's CLV is (true) or is not (false) in the top fraction.
	CLVTop *bool `yaml:"clv_top"`
	// OpenComplaint: the customer has (true) or has not (false) an open complaint at the
	// trigger's time.
	OpenComplaint *bool       `yaml:"open_complaint"`
	AnyOf         []Condition `yaml:"any_of"`
}

// DefaultRules returns the embedded default rules, validated against the default policy.
func DefaultRules() *Rules {
	r, err := ParseRules(defaultRulesYAML, scoring.DefaultPolicy())
	if err != nil {
		panic("notifier: embedded default rules are invalid: " + err.Error())
	}
	return r
}

// ParseRules parses and validates a rules file. Tier names are checked against policy's
// ladder. Unknown fields are errors, so a misspelt condition never silently matches everyone.
func ParseRules(data []byte, policy *scoring.Policy) (*Rules, error) {
	var r Rules
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("parsing rules: %w", err)
	}
	if err := r.Validate(policy); err != nil {
		return nil, fmt.Errorf("validating rules %q: %w", r.Version, err)
	}
	return &r, nil
}

// LoadRules reads, parses and validates a rules file.
func LoadRules(path string, policy *scoring.Policy) (*Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading rules: %w", err)
	}
	r, err := ParseRules(data, policy)
	if err != nil {
		return nil, fmt.Errorf("loading rules %s: %w", path, err)
	}
	return r, nil
}

// ErrInvalidRules is wrapped by every validation error.
var ErrInvalidRules = errors.New("invalid rules")

var (
	actionKinds = []string{string(event.ActionCare), string(event.ActionWinBack), string(event.ActionVIPWelcome), string(event.ActionDowngradeWarning)}
	churnLevels = []string{string(event.ChurnLow), string(event.ChurnMedium), string(event.ChurnHigh)}
	directions  = []string{string(event.DirectionUp), string(event.DirectionDown), string(event.DirectionWarning)}
)

// Validate checks every field and returns all problems, each naming its field (for example
// `rules[2].when.to_level[0]: "HIGHH" is not one of LOW, MEDIUM, HIGH`).
func (r *Rules) Validate(policy *scoring.Policy) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalidRules, field, fmt.Sprintf(format, args...)))
	}
	if r.Version == "" {
		bad("version", "required")
	}
	if r.Cooldown < 0 || r.Cooldown > 366*24*time.Hour {
		bad("cooldown", "%s is not in 0..8784h", r.Cooldown)
	}
	if !(r.HoldoutPercent >= 0 && r.HoldoutPercent <= 100) {
		bad("holdout_percent", "%v is not in 0..100", r.HoldoutPercent)
	}
	c := r.CLV
	if !(c.TopFraction > 0 && c.TopFraction < 1) {
		bad("clv.top_fraction", "%v is not in (0, 1)", c.TopFraction)
	}
	if !(c.HorizonDays > 0 && c.HorizonDays <= 3650) {
		bad("clv.horizon_days", "%v is not in (0, 3650]", c.HorizonDays)
	}
	if !(c.AnnualDiscount >= 0 && c.AnnualDiscount < 1) {
		bad("clv.annual_discount", "%v is not in [0, 1)", c.AnnualDiscount)
	}
	if err := c.GammaGamma.Validate(); err != nil {
		bad("clv.gamma_gamma", "%s", strings.Replace(err.Error(), "gammagamma.", "", 1))
	} else if c.GammaGamma.Q <= 1 {
		bad("clv.gamma_gamma.q", "must be greater than 1 (the population mean spend is infinite otherwise)")
	}
	if !(c.ThresholdMinor >= 0) || math.IsInf(c.ThresholdMinor, 0) {
		bad("clv.threshold_minor", "%v must be a finite number >= 0", c.ThresholdMinor)
	}
	if c.ThresholdMinor == 0 {
		if c.Refresh < time.Second {
			bad("clv.refresh", "%s is below 1s (needed when threshold_minor is 0)", c.Refresh)
		}
		if c.SampleSize < 1 || c.SampleSize > 10_000_000 {
			bad("clv.sample_size", "%d is not in 1..10000000", c.SampleSize)
		}
		if c.MinSample < 1 || c.MinSample > c.SampleSize {
			bad("clv.min_sample", "%d is not in 1..sample_size", c.MinSample)
		}
	}
	if len(r.Rules) == 0 {
		bad("rules", "at least one rule is required")
	}
	var tiers []string
	if policy != nil {
		for _, l := range policy.Tiers.Levels {
			tiers = append(tiers, l.Name)
		}
	}
	names := map[string]bool{}
	for i, rule := range r.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		switch {
		case rule.Name == "":
			bad(f+".name", "required")
		case names[rule.Name]:
			bad(f+".name", "%q is used by an earlier rule", rule.Name)
		}
		names[rule.Name] = true
		if !slices.Contains(actionKinds, string(rule.Kind)) {
			bad(f+".kind", "%q is not one of %s", rule.Kind, strings.Join(actionKinds, ", "))
		}
		if rule.On != OnChurnRisk && rule.On != OnTierChange {
			bad(f+".on", "%q is not one of %s, %s", rule.On, OnChurnRisk, OnTierChange)
		}
		rule.When.validate(f+".when", rule.On, tiers, bad)
	}
	return errors.Join(errs...)
}

func (c *Condition) validate(f, on string, tiers []string, bad func(field, format string, args ...any)) {
	oneOf := func(field string, got, allowed []string) {
		for i, v := range got {
			if !slices.Contains(allowed, v) {
				bad(fmt.Sprintf("%s.%s[%d]", f, field, i), "%q is not one of %s", v, strings.Join(allowed, ", "))
			}
		}
	}
	only := func(field string, set bool, want string) {
		if set && on != want {
			bad(f+"."+field, "only applies to rules on %s", want)
		}
	}
	only("to_level", len(c.ToLevel) > 0, OnChurnRisk)
	only("rises", c.Rises != nil, OnChurnRisk)
	only("direction", len(c.Direction) > 0, OnTierChange)
	only("to_tier", len(c.ToTier) > 0, OnTierChange)
	oneOf("to_level", c.ToLevel, churnLevels)
	oneOf("direction", c.Direction, directions)
	if tiers != nil {
		oneOf("to_tier", c.ToTier, tiers)
		oneOf("tier", c.Tier, tiers)
	}
	for i := range c.AnyOf {
		c.AnyOf[i].validate(fmt.Sprintf("%s.any_of[%d]", f, i), on, tiers, bad)
	}
}

// Trigger is a decoded derived event the notifier may act on: exactly one of Churn and Tier
// is set.
type Trigger struct {
	Churn *event.ChurnRiskChanged
	Tier  *event.TierChanged
	// Position is where the trigger was read (topic, partition, offset), for the records.
	Position event.Source
}

// EventID is the trigger's event id.
func (t Trigger) EventID() string {
	if t.Churn != nil {
		return t.Churn.EventID
	}
	return t.Tier.EventID
}

// CustomerID is the customer the trigger is about.
func (t Trigger) CustomerID() string {
	if t.Churn != nil {
		return t.Churn.CustomerID
	}
	return t.Tier.CustomerID
}

// OccurredAt is the trigger's event time.
func (t Trigger) OccurredAt() time.Time {
	if t.Churn != nil {
		return t.Churn.OccurredAt
	}
	return t.Tier.OccurredAt
}

// Replay reports whether the trigger came from a replay or backfill.
func (t Trigger) Replay() bool {
	if t.Churn != nil {
		return t.Churn.Replay
	}
	return t.Tier.Replay
}

// On is the rule trigger name of t.
func (t Trigger) On() string {
	if t.Churn != nil {
		return OnChurnRisk
	}
	return OnTierChange
}

// Facts are what the notifier knows about the customer at the trigger's time, from stored
// state.
type Facts struct {
	Known          bool   // the customer has stored state
	Tier           string // current tier name
	OpenComplaints int
	CLVMinor       float64
	CLVTop         bool
}

// Match returns the first rule whose conditions hold for the trigger and facts.
func (r *Rules) Match(t Trigger, f Facts) (*Rule, bool) {
	for i := range r.Rules {
		rule := &r.Rules[i]
		if rule.On == t.On() && rule.When.holds(t, f) {
			return rule, true
		}
	}
	return nil, false
}

func levelRank(l event.ChurnLevel) int { return slices.Index(churnLevels, string(l)) }

func (c *Condition) holds(t Trigger, f Facts) bool {
	in := func(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }
	if t.Churn != nil {
		if !in(c.ToLevel, string(t.Churn.ToLevel)) {
			return false
		}
		if c.Rises != nil && *c.Rises != (levelRank(t.Churn.ToLevel) > levelRank(t.Churn.FromLevel)) {
			return false
		}
	}
	if t.Tier != nil && (!in(c.Direction, string(t.Tier.Direction)) || !in(c.ToTier, string(t.Tier.ToTier))) {
		return false
	}
	if len(c.Tier) > 0 && !slices.Contains(c.Tier, f.Tier) {
		return false
	}
	if c.CLVTop != nil && *c.CLVTop != f.CLVTop {
		return false
	}
	if c.OpenComplaint != nil && *c.OpenComplaint != (f.OpenComplaints > 0) {
		return false
	}
	if len(c.AnyOf) == 0 {
		return true
	}
	for i := range c.AnyOf {
		if c.AnyOf[i].holds(t, f) {
			return true
		}
	}
	return false
}
