package scoring

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultPolicyMatchesTheIssue(t *testing.T) {
	p := DefaultPolicy()
	want := []TierLevel{{"BRONZE", 0}, {"SILVER", 50000}, {"GOLD", 200000}, {"PLATINUM", 500000}}
	for i, l := range want {
		if p.Tiers.Levels[i] != l {
			t.Fatalf("tier %d = %+v, want %+v", i, p.Tiers.Levels[i], l)
		}
	}
	if p.Tiers.WindowDays != 365 || p.Tiers.ReviewAfterDays != 365 || p.Tiers.WarningDays != 30 ||
		p.Tiers.ReturnsWindowDays != 30 || p.Version == "" || p.Currency != "USD" {
		t.Fatalf("default tier policy %+v", p.Tiers)
	}
}

func TestPolicyValidationNamesTheField(t *testing.T) {
	base := string(DefaultPolicyYAML())
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"tier thresholds must increase", "min_spend_minor: 200000}", "min_spend_minor: 40000}", "tiers.levels[2].min_spend_minor: must be greater than tiers.levels[1]"},
		{"the lowest tier starts at zero", "{name: BRONZE, min_spend_minor: 0}", "{name: BRONZE, min_spend_minor: 1}", "tiers.levels[0].min_spend_minor"},
		{"tier names are upper-case codes", "name: GOLD,", "name: gold,", "tiers.levels[2].name"},
		{"hysteresis must leave below where it enters", "medium: {enter: 0.45, leave: 0.35}", "medium: {enter: 0.45, leave: 0.55}", "churn.medium"},
		{"weights are between 0 and 1", "p_alive: 0.35,", "p_alive: 1.35,", "churn.weights.p_alive"},
		{"BG/NBD parameters are positive", "alpha: 4.4137", "alpha: -1", "churn.bgnbd.alpha"},
		{"the currency is an ISO code", "currency: USD", "currency: dollars", "currency"},
		{"the lateness is under a day", "allowed_lateness: 1h", "allowed_lateness: 48h", "allowed_lateness"},
		{"cut points must not decrease", "recency_days: [14, 45, 90, 180]", "recency_days: [14, 45, 9, 180]", "cutpoints.recency_days[2]"},
		{"misspelt fields are rejected", "min_dwell_days: 7", "min_dwel_days: 7", "min_dwel_days"},
		{"the dedupe horizon is at least a day", "horizon_days: 7", "horizon_days: 0", "dedupe.horizon_days: must be between 1 and 365, got 0"},
		{"the dedupe horizon is at most a year", "horizon_days: 7", "horizon_days: 366", "dedupe.horizon_days"},
		{"the dedupe cap fits the stored encoding", "max_ids_per_topic: 64", "max_ids_per_topic: 65", "dedupe.max_ids_per_topic: must be between 1 and 64, got 65"},
		{"the dedupe cap is at least one id", "max_ids_per_topic: 64", "max_ids_per_topic: 0", "dedupe.max_ids_per_topic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.from) {
				t.Fatalf("default policy lacks %q", tc.from)
			}
			_, err := ParsePolicy([]byte(strings.Replace(base, tc.from, tc.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestLoadPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, DefaultPolicyYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPolicy(path)
	if err != nil || p.Version != DefaultPolicy().Version {
		t.Fatalf("LoadPolicy: %v %+v", err, p)
	}
	if _, err := LoadPolicy(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v, want a wrapped os.ErrNotExist", err)
	}
	if err := os.WriteFile(path, []byte("version: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPolicy(path); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), path) {
		t.Fatalf("incomplete policy: got %v, want ErrInvalidPolicy naming the file", err)
	}
}

func TestInvalidEventsAreRejectedWithoutChangingState(t *testing.T) {
	p := DefaultPolicy()
	var g evGen
	s, _ := mustApply(t, State{}, g.purchase(day(0), 100, "a"), p)
	other := g.purchase(day(1), 100, "b")
	other.CustomerID = "someone-else"
	wrongCurrency := g.purchase(day(1), 100, "c")
	wrongCurrency.Currency = "EUR"
	badNPS := g.feedback(day(1), FeedbackNPS, 11)
	for name, e := range map[string]Event{"another customer": other, "another currency": wrongCurrency, "an NPS of 11": badNPS} {
		s2, ch, err := Apply(s, e, p)
		if !errors.Is(err, ErrInvalidEvent) || len(ch) != 0 || s2.ClockMs != s.ClockMs {
			t.Errorf("%s: got err %v, %d changes; want ErrInvalidEvent and no effect", name, err, len(ch))
		}
	}
}
