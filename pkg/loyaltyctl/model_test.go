package loyaltyctl

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

func cdnow(t *testing.T) string {
	t.Helper()
	return testinfra.DataFile(t, "cdnow/CDNOW_sample.txt")
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func sig3(got, want float64) bool {
	e := math.Pow(10, math.Floor(math.Log10(math.Abs(want)))-2)
	return math.Round(got/e) == math.Round(want/e)
}

func TestModelFitPrintsThePublishedCDNOWParameters(t *testing.T) {
	code, out, errs := run(t, "model", "fit", "--input", cdnow(t), "--format", "cdnow", "--calibration-end", "1997-09-30", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res FitResult
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("output %q is not the fit JSON: %v", out, err)
	}
	var raw struct {
		BGNBD      map[string]float64 `json:"bgnbd"`
		GammaGamma map[string]float64 `json:"gammagamma"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"r", "alpha", "a", "b", "loglik"} {
		if _, ok := raw.BGNBD[k]; !ok {
			t.Errorf("bgnbd.%s missing from %s", k, out)
		}
	}
	for _, k := range []string{"p", "q", "gamma", "loglik", "customers"} {
		if _, ok := raw.GammaGamma[k]; !ok {
			t.Errorf("gammagamma.%s missing from %s", k, out)
		}
	}
	if res.Customers != 2357 || res.GammaGamma.Customers != 946 {
		t.Fatalf("customers %d / %d, want 2357 / 946", res.Customers, res.GammaGamma.Customers)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"r", res.BGNBD.R, 0.2426}, {"alpha", res.BGNBD.Alpha, 4.4137}, {"a", res.BGNBD.A, 0.7930},
		{"b", res.BGNBD.B, 2.4262}, {"loglik", res.BGNBD.LogLik, -9582.43},
		{"p", res.GammaGamma.P, 6.25}, {"q", res.GammaGamma.Q, 3.74}, {"gamma", res.GammaGamma.Gamma, 15.44},
	} {
		if !sig3(c.got, c.want) {
			t.Errorf("%s = %v, want %v to 3 significant digits", c.name, c.got, c.want)
		}
	}
}

func TestModelScoreWritesOneRowPerCustomer(t *testing.T) {
	dir := t.TempDir()
	code, fitOut, errs := run(t, "model", "fit", "--input", cdnow(t), "--format", "cdnow", "--calibration-end", "1997-09-30", "-o", "json")
	if code != 0 {
		t.Fatal(errs)
	}
	params := filepath.Join(dir, "params.json")
	if err := os.WriteFile(params, []byte(fitOut), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"model", "score", "--input", cdnow(t), "--format", "cdnow", "--calibration-end", "1997-09-30", "--horizon", "39"}
	code, withParams, errs := run(t, append(args, "--params", params)...)
	if code != 0 {
		t.Fatal(errs)
	}
	code, fitted, errs := run(t, args...)
	if code != 0 {
		t.Fatal(errs)
	}
	if withParams != fitted {
		t.Fatal("scores with --params differ from scores with the fit done in place")
	}
	rows, err := csv.NewReader(strings.NewReader(fitted)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rows[0], ","); got != "customer_id,x,t_x,T,monetary,p_alive,expected_purchases,expected_spend,clv" {
		t.Fatalf("header %q", got)
	}
	if len(rows) != 2358 {
		t.Fatalf("%d rows, want a header and 2357 customers", len(rows))
	}
	// FHL 2005: customer 0001 (x=2, t_x=30.43, T=38.86) expects 1.226 purchases in 39 weeks.
	if r := rows[1]; r[0] != "0001" || r[1] != "2.000000" || !strings.HasPrefix(r[6], "1.22") {
		t.Fatalf("first row %v, want customer 0001 with x=2 and ~1.226 expected purchases", r)
	}
}

func TestModelCommandsFailOnBadInputWithLineNumbers(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, []byte("customer_id,occurred_at,amount\nc1,2024-01-01,10\nc1,yesterday,3\nc2,2024-01-02,ten\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "model", "fit", "--input", bad, "--format", "csv", "--calibration-end", "2024-02-01")
	if code != 1 || out != "" || !strings.Contains(errs, "line 3: occurred_at") || !strings.Contains(errs, "line 4: amount") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 naming lines 3 and 4", code, out, errs)
	}
}

func TestCommandLineMistakesAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nope"}, {"model"}, {"model", "guess"}, {"model", "fit"},
		{"model", "fit", "--input", "x", "--format", "xml", "--calibration-end", "2024-01-01"},
		{"model", "score", "--input", "x", "--format", "csv", "--calibration-end", "2024-01-01"},
		{"model", "fit", "--input", "x", "--format", "csv", "--calibration-end", "01/02/2024"},
	} {
		if code, _, _ := run(t, args...); code != 2 {
			t.Errorf("loyaltyctl %q exited %d, want 2", args, code)
		}
	}
}

func TestMissingInputFileFails(t *testing.T) {
	code, _, errs := run(t, "model", "fit", "--input", filepath.Join(t.TempDir(), "none.txt"), "--format", "cdnow", "--calibration-end", "1997-09-30")
	if code != 1 || !strings.Contains(errs, "no such file") {
		t.Fatalf("exit %d %q", code, errs)
	}
}
