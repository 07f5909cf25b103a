package loyaltyctl

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// TestModelOutputFormats: model fit prints its parameters as text by default and as the
// --params JSON with -o json; model score prints one JSON object per customer with -o json.
func TestModelOutputFormats(t *testing.T) {
	args := []string{"--input", cdnow(t), "--format", "cdnow", "--calibration-end", "1997-09-30"}
	code, text, errs := run(t, append([]string{"model", "fit"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, s := range []string{"customers:    2357", "BG/NBD:       r=0.24", "Gamma-Gamma:  p=6.2", "946 repeat customers"} {
		if !strings.Contains(text, s) {
			t.Errorf("model fit text lacks %q:\n%s", s, text)
		}
	}
	code, out, errs := run(t, append([]string{"model", "score", "--horizon", "39", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2357 {
		t.Fatalf("%d JSON lines, want one per customer (2357)", len(lines))
	}
	var first ScoreRow
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("first line is not a score row: %v\n%s", err, lines[0])
	}
	// FHL 2005: customer 0001 (x=2) expects 1.226 purchases in 39 weeks.
	if first.CustomerID != "0001" || first.X != 2 || first.ExpectedPurchases < 1.22 || first.ExpectedPurchases >= 1.23 {
		t.Errorf("first row %+v, want customer 0001 with x=2 and ~1.226 expected purchases", first)
	}
}

// TestCustomerPrintsTextByDefault: without -o json, customer prints a field a line.
func TestCustomerPrintsTextByDefault(t *testing.T) {
	keys, rdb := commandRedis(t)
	p := scoring.DefaultPolicy()
	st, _, err := scoring.Apply(scoring.State{}, scoring.Event{Kind: scoring.KindPurchase, EventID: "p1", CustomerID: "c-8",
		OccurredAt: time.Date(2026, 2, 3, 10, 0, 0, 0, time.UTC), AmountMinor: 12345, Currency: "USD", OrderID: "o1"}, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(context.Background(), keys.Customer("c-8"), st.MarshalFields()).Err(); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "customer", "c-8")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, s := range []string{"customer:", "c-8", "namespace:", keys.Namespace(), "last event at:", "2026-02-03T10:00:00Z",
		"tier:", p.TierName(0), "net spend 365d:", "12345", "churn:", "next deadline:"} {
		if !strings.Contains(out, s) {
			t.Errorf("customer text lacks %q:\n%s", s, out)
		}
	}
	if strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Errorf("customer printed JSON without -o json:\n%s", out)
	}
}
