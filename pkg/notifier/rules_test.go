package notifier_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

func TestRulesFileErrorsNameTheField(t *testing.T) {
	base := string(notifier.DefaultRulesYAML())
	cases := []struct {
		name      string
		edit      func(string) string
		wantField string
	}{
		{"a misspelt churn level is reported with its rule and index",
			func(s string) string {
				return strings.Replace(s, "to_level: [HIGH]\n      rises: true\n      any_of", "to_level: [HIGHH]\n      rises: true\n      any_of", 1)
			},
			`rules[0].when.to_level[0]: "HIGHH" is not one of LOW, MEDIUM, HIGH`},
		{"an unknown action kind is refused",
			func(s string) string { return strings.Replace(s, "kind: VIP_WELCOME", "kind: VIP", 1) }, `rules[3].kind: "VIP"`},
		{"a tier the scoring policy does not know is refused",
			func(s string) string {
				return strings.Replace(s, "to_tier: [GOLD, PLATINUM]", "to_tier: [GOLD, DIAMOND]", 1)
			},
			`rules[3].when.to_tier[1]: "DIAMOND" is not one of BRONZE, SILVER, GOLD, PLATINUM`},
		{"a tier condition on a churn rule is refused",
			func(s string) string { return strings.Replace(s, "direction: [WARNING]", "to_level: [HIGH]", 1) },
			"rules[4].when.to_level: only applies to rules on churn_risk"},
		{"a hold-out above 100% is refused",
			func(s string) string { return strings.Replace(s, "holdout_percent: 5", "holdout_percent: 120", 1) }, "holdout_percent: 120 is not in 0..100"},
		{"a negative cooldown is refused",
			func(s string) string { return strings.Replace(s, "cooldown: 168h", "cooldown: -1h", 1) }, "cooldown: -1h0m0s"},
		{"a top fraction of 1 is refused",
			func(s string) string { return strings.Replace(s, "top_fraction: 0.2", "top_fraction: 1", 1) }, "clv.top_fraction"},
		{"Gamma-Gamma parameters that give no finite mean spend are refused",
			func(s string) string { return strings.Replace(s, "q: 3.74", "q: 0.9", 1) }, "clv.gamma_gamma.q"},
		{"two rules with one name are refused",
			func(s string) string { return strings.Replace(s, "name: downgrade-warning", "name: vip-welcome", 1) }, `rules[4].name: "vip-welcome" is used`},
		{"an unknown field is refused rather than ignored",
			func(s string) string {
				return strings.Replace(s, "rises: true\n      open_complaint", "rise: true\n      open_complaint", 1)
			}, "field rise not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			edited := c.edit(base)
			if edited == base {
				t.Fatal("the edit did not apply")
			}
			_, err := notifier.ParseRules([]byte(edited), scoring.DefaultPolicy())
			if err == nil || !strings.Contains(err.Error(), c.wantField) {
				t.Fatalf("error %v, want one containing %q", err, c.wantField)
			}
		})
	}
}

func TestDefaultRulesImplementTheIssueDefaults(t *testing.T) {
	r := notifier.DefaultRules()
	if r.Cooldown != 7*24*time.Hour || r.HoldoutPercent != 5 || r.CLV.TopFraction != 0.2 {
		t.Fatalf("cooldown %s, hold-out %v%%, top fraction %v; want 168h, 5%%, 0.2", r.Cooldown, r.HoldoutPercent, r.CLV.TopFraction)
	}
	high, medium := event.ChurnHigh, event.ChurnMedium
	ch := func(from, to event.ChurnLevel) notifier.Trigger {
		return notifier.Trigger{Churn: &event.ChurnRiskChanged{EventID: "e", CustomerID: "c", FromLevel: from, ToLevel: to}}
	}
	tr := func(from, to event.Tier, d event.TierDirection) notifier.Trigger {
		return notifier.Trigger{Tier: &event.TierChanged{EventID: "e", CustomerID: "c", FromTier: from, ToTier: to, Direction: d}}
	}
	cases := []struct {
		name    string
		trigger notifier.Trigger
		facts   notifier.Facts
		want    event.ActionKind
	}{
		{"a PLATINUM customer rising to HIGH gets care", ch(medium, high), notifier.Facts{Tier: "PLATINUM"}, event.ActionCare},
		{"a top-CLV BRONZE customer rising to HIGH gets care", ch(event.ChurnLow, high), notifier.Facts{Tier: "BRONZE", CLVTop: true}, event.ActionCare},
		{"a complaining customer rising to MEDIUM gets care", ch(event.ChurnLow, medium), notifier.Facts{Tier: "BRONZE", OpenComplaints: 1}, event.ActionCare},
		{"a complaining customer whose risk falls gets nothing", ch(high, medium), notifier.Facts{OpenComplaints: 1}, ""},
		{"an ordinary customer reaching HIGH gets a win-back", ch(medium, high), notifier.Facts{Tier: "SILVER"}, event.ActionWinBack},
		{"an ordinary customer rising to MEDIUM gets nothing", ch(event.ChurnLow, medium), notifier.Facts{Tier: "SILVER"}, ""},
		{"an upgrade to PLATINUM gets a VIP welcome", tr(event.TierGold, event.TierPlatinum, event.DirectionUp), notifier.Facts{}, event.ActionVIPWelcome},
		{"a review warning gets a downgrade warning", tr(event.TierSilver, event.TierSilver, event.DirectionWarning), notifier.Facts{}, event.ActionDowngradeWarning},
		{"a downgrade gets nothing", tr(event.TierPlatinum, event.TierGold, event.DirectionDown), notifier.Facts{}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rule, ok := r.Match(c.trigger, c.facts)
			var got event.ActionKind
			if ok {
				got = rule.Kind
			}
			if got != c.want {
				t.Fatalf("kind %q, want %q", got, c.want)
			}
		})
	}
}

func TestTheHoldOutGroupIsDeterministicAndTheConfiguredShare(t *testing.T) {
	n, in := 200_000, 0
	for i := range n {
		id := fmt.Sprintf("cust-%d", i)
		h := notifier.HeldOut("salt", id, 5)
		if h != notifier.HeldOut("salt", id, 5) {
			t.Fatalf("%s: hold-out membership changed between calls", id)
		}
		if h {
			in++
		}
	}
	if share := float64(in) / float64(n); share < 0.047 || share > 0.053 {
		t.Fatalf("%.2f%% held out, want about 5%%", 100*share)
	}
	if notifier.HeldOut("salt", "x", 0) {
		t.Fatal("0% holds someone out")
	}
}

func TestActionIDsAreStablePerTriggerAndKind(t *testing.T) {
	a := notifier.ActionID("ev-1", event.ActionCare)
	if a != notifier.ActionID("ev-1", event.ActionCare) || len(a) != 32 {
		t.Fatalf("action id %q is not a stable 32-digit hex id", a)
	}
	if a == notifier.ActionID("ev-1", event.ActionWinBack) || a == notifier.ActionID("ev-2", event.ActionCare) {
		t.Fatal("different triggers or kinds share an action id")
	}
}

func TestConfigurationErrorsNameTheVariable(t *testing.T) {
	policy := scoring.DefaultPolicy()
	full := map[string]string{
		"NOTIFIER_CHANNEL_CARE": "https://support.example.com/hooks/care", "NOTIFIER_CHANNEL_WIN_BACK": "https://crm.example.com/win-back",
		"NOTIFIER_CHANNEL_VIP_WELCOME": "log", "NOTIFIER_CHANNEL_DOWNGRADE_WARNING": "log", "NOTIFIER_WEBHOOK_SECRET": "0123456789abcdef0123",
	}
	with := func(k, v string) func(string) string {
		return func(name string) string {
			if name == k {
				return v
			}
			return full[name]
		}
	}
	cases := []struct {
		name string
		env  func(string) string
		want string // "" for valid
	}{
		{"a complete environment is valid", with("", ""), ""},
		{"a kind without a channel is reported by its variable", with("NOTIFIER_CHANNEL_CARE", ""), "NOTIFIER_CHANNEL_CARE: required by rules[0]"},
		{"a relative URL is reported by its variable", with("NOTIFIER_CHANNEL_WIN_BACK", "/hooks"), "NOTIFIER_CHANNEL_WIN_BACK:"},
		{"webhooks without a secret are refused", with("NOTIFIER_WEBHOOK_SECRET", "short"), "NOTIFIER_WEBHOOK_SECRET: at least 16 bytes"},
		{"a bad duration is reported by its variable", with("NOTIFIER_WEBHOOK_TIMEOUT", "soon"), "NOTIFIER_WEBHOOK_TIMEOUT=\"soon\""},
		{"a missing rules file is reported by its variable", with("NOTIFIER_RULES_FILE", "/nonexistent/rules.yaml"), "NOTIFIER_RULES_FILE:"},
		{"an unknown start position is refused", with("NOTIFIER_START_FROM", "middle"), "NOTIFIER_START_FROM=\"middle\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := notifier.ConfigFromEnv(c.env, policy)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestPopulationThresholdIsTheTopFractionOfStoredCLVs(t *testing.T) {
	rdb := testinfra.RedisClient(t)
	ctx := context.Background()
	keys, err := keyspace.New(testinfra.Namespace(t, "ns"), 8)
	if err != nil {
		t.Fatal(err)
	}
	p := scoring.DefaultPolicy()
	c := notifier.DefaultRules().CLV
	var clvs []float64
	for i := range 150 {
		id := fmt.Sprintf("pop-%d", i)
		var st scoring.State
		for j := range 1 + i%12 {
			st, _, err = scoring.Apply(st, scoring.Event{Kind: scoring.KindPurchase, EventID: fmt.Sprintf("%s-%d", id, j), CustomerID: id,
				OccurredAt: t0.AddDate(0, 0, -10*(12-j)), AmountMinor: int64(1000 + 150*i), Currency: p.Currency, OrderID: fmt.Sprint(j),
				Source: scoring.Source{Topic: "t", Offset: int64(j + 1)}}, p)
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := rdb.HSet(ctx, keys.Customer(id), st.MarshalFields()).Err(); err != nil {
			t.Fatal(err)
		}
		clvs = append(clvs, notifier.CLVMinor(st, scoring.DayOf(time.UnixMilli(st.ClockMs)), p, c))
	}
	th, ok, err := notifier.ComputeThreshold(ctx, rdb, keys, p, c, t0)
	if err != nil || !ok {
		t.Fatalf("ComputeThreshold: ok %v, err %v", ok, err)
	}
	above := 0
	for _, v := range clvs {
		if v >= th.Minor {
			above++
		}
	}
	if th.Sample != 150 || above != 30 {
		t.Fatalf("threshold %.0f over %d customers puts %d at or above it, want 30 of 150", th.Minor, th.Sample, above)
	}
	if err := notifier.StoreThreshold(ctx, rdb, keys, th); err != nil {
		t.Fatal(err)
	}
	got, ok, err := notifier.LoadThreshold(ctx, rdb, keys)
	if err != nil || !ok || got.Minor != th.Minor {
		t.Fatalf("LoadThreshold = %+v %v %v, want %+v", got, ok, err, th)
	}
	c.MinSample = 151
	if _, ok, _ := notifier.ComputeThreshold(ctx, rdb, keys, p, c, t0); ok {
		t.Fatal("a population below min_sample produced a threshold")
	}
	if !slices.IsSorted([]float64{0, th.Minor}) {
		t.Fatal("negative threshold")
	}
}
