package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/loyaltyctl"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// checkRetailRefit checks the churn model the pipeline fitted on its own population: the live
// namespace refitted at its refit boundaries, the replay fitted exactly the same models, the
// last fit equals `loyaltyctl model fit --from-topic` run offline on the same purchases up to
// its boundary (to 4 significant digits), and the churn changes after it carry its version.
func checkRetailRefit(t *testing.T, e *env, live, replayed *wiring.Runtime, derived []event.Event) {
	t.Helper()
	ctx := context.Background()
	liveSeals, err := namespace.CutpointHistory(ctx, live.Redis, live.Keys)
	if err != nil {
		t.Fatal(err)
	}
	replaySeals, err := namespace.CutpointHistory(ctx, replayed.Redis, replayed.Keys)
	if err != nil {
		t.Fatal(err)
	}
	var fits []*scoring.FittedModel
	byBoundary := map[scoring.Day]namespace.SealedCutpoints{}
	for _, s := range replaySeals {
		byBoundary[s.Boundary] = s
	}
	tooSmall := 0
	for _, s := range liveSeals {
		if s.ModelFitted {
			fits = append(fits, s.Model)
		} else if s.ModelNote != "" {
			tooSmall++
		}
		r, ok := byBoundary[s.Boundary]
		if !ok {
			continue // the replay may have sealed fewer boundaries than live
		}
		lj, _ := json.Marshal(s.Model)
		rj, _ := json.Marshal(r.Model)
		if !bytes.Equal(lj, rj) || r.ModelFitted != s.ModelFitted {
			t.Errorf("boundary %s: live's churn model %s, the replay's %s", s.Date, lj, rj)
		}
	}
	if len(fits) == 0 {
		t.Fatalf("no refit over %d sealed boundaries (%d with too little data)", len(liveSeals), tooSmall)
	}
	last := fits[len(fits)-1]
	t.Logf("%d refits (%d refit boundaries had too little data); the last, %s: %d customers (%d repeat), r=%.4f alpha=%.4f a=%.4f b=%.4f, Gamma-Gamma %+v",
		len(fits), tooSmall, last.Version, last.Customers, last.RepeatCustomers, last.BGNBD.R, last.BGNBD.Alpha, last.BGNBD.A, last.BGNBD.B, *last.GammaGamma)

	// Offline: the CLI on the purchases topic up to the boundary.
	t.Setenv("KAFKA_BROKERS", e.brokers[0])
	t.Setenv("LOYALTY_TOPIC_SUFFIX", e.suffix)
	t.Setenv("POLICY_FILE", e.policy)
	t.Setenv("LOYALTY_NAMESPACE", live.Keys.Namespace())
	var stdout, stderr bytes.Buffer
	date := last.Boundary.Start().Format("2006-01-02")
	if code := loyaltyctl.Main(ctx, []string{"model", "fit", "--from-topic", "--calibration-end", date, "-o", "json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("loyaltyctl model fit --from-topic: exit %d: %s", code, stderr.String())
	}
	var offline loyaltyctl.FitResult
	if err := json.Unmarshal(stdout.Bytes(), &offline); err != nil {
		t.Fatalf("model fit output %q: %v", stdout.String(), err)
	}
	t.Logf("offline: %s%s", stderr.String(), stdout.String())
	if int64(offline.Customers) != last.Customers || int64(offline.GammaGamma.Customers) > last.RepeatCustomers {
		t.Errorf("offline fit on %d customers (%d with repeat spend), the pipeline's on %d (%d repeat)", offline.Customers,
			offline.GammaGamma.Customers, last.Customers, last.RepeatCustomers)
	}
	for _, p := range []struct {
		name          string
		live, offline float64
	}{{"r", last.BGNBD.R, offline.BGNBD.R}, {"alpha", last.BGNBD.Alpha, offline.BGNBD.Alpha}, {"a", last.BGNBD.A, offline.BGNBD.A},
		{"b", last.BGNBD.B, offline.BGNBD.B}, {"p", last.GammaGamma.P, offline.GammaGamma.P}, {"q", last.GammaGamma.Q, offline.GammaGamma.Q},
		{"gamma", last.GammaGamma.Gamma, offline.GammaGamma.Gamma}} {
		if !sameSignificant(p.live, p.offline, 4) {
			t.Errorf("%s: the pipeline fitted %.6g, the offline fit %.6g: not equal to 4 significant digits", p.name, p.live, p.offline)
		}
	}

	// Every churn change scored by the model after the first fit carries the version in force.
	labelled := 0
	for _, ev := range derived {
		c, ok := ev.(event.ChurnRiskChanged)
		if !ok {
			continue
		}
		d := scoring.DayOf(c.OccurredAt) - 1 // an end-of-day change is stamped at the next midnight
		var want string
		for _, f := range fits {
			if f.Boundary < d {
				want = f.Version
			}
		}
		switch {
		case c.ModelVersion == live.Policy.Churn.RulesVersion:
		case want == "" || c.ModelVersion != want:
			t.Errorf("churn change of %s on %s carries model %q; the fit in force was %q", c.CustomerID, d.Start().Format("2006-01-02"), c.ModelVersion, want)
			return
		default:
			labelled++
		}
	}
	if labelled == 0 {
		t.Error("no churn change was scored by a fitted model")
	}
	t.Logf("%d churn changes scored by a fitted model, each labelled with its version", labelled)
}

// sameSignificant reports whether a and b agree to n significant digits: they differ by at
// most half a unit in the n-th digit of the larger.
func sameSignificant(a, b float64, n int) bool {
	if a == b {
		return true
	}
	unit := math.Pow(10, math.Floor(math.Log10(math.Max(math.Abs(a), math.Abs(b))))-float64(n-1))
	return math.Abs(a-b) <= unit/2
}
