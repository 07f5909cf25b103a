package btyd_test

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/testinfra"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
	"github.com/loyalty-scoring/loyalty/pkg/txnsummary"
)

// cdnowPath is the CDNOW sample committed in testdata/cdnow.
func cdnowPath(tb testing.TB) string {
	tb.Helper()
	return testinfra.DataFile(tb, "cdnow/CDNOW_sample.txt")
}

func cdnowCustomers(tb testing.TB) []txnsummary.Customer {
	tb.Helper()
	f, err := os.Open(cdnowPath(tb))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	txns, err := txnsummary.ReadCDNOW(f)
	if err != nil {
		tb.Fatal(err)
	}
	end := txnsummary.DayOf(mustDate(tb, "1997-09-30"))
	cs, err := txnsummary.Summarize(txns, end, txnsummary.UnitWeek)
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

// sig3 reports whether got and want agree to 3 significant digits.
func sig3(got, want float64) bool {
	e := math.Pow(10, math.Floor(math.Log10(math.Abs(want)))-2)
	return math.Round(got/e) == math.Round(want/e)
}

func TestFitReproducesPublishedCDNOWParameters(t *testing.T) {
	cs := cdnowCustomers(t)
	ss := txnsummary.Summaries(cs)
	var repeaters, repeatTxns float64
	for _, s := range ss {
		if s.X > 0 {
			repeaters++
		}
		repeatTxns += s.X
	}
	if len(ss) != 2357 || repeaters != 946 || repeatTxns != 2457 {
		t.Fatalf("calibration summary: %d customers, %v repeaters, %v repeat purchases; want 2357, 946, 2457",
			len(ss), repeaters, repeatTxns)
	}

	bg, err := btyd.FitBGNBD(ss)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"r", bg.Params.R, 0.2426}, {"alpha", bg.Params.Alpha, 4.4137},
		{"a", bg.Params.A, 0.7930}, {"b", bg.Params.B, 2.4262}, {"loglik", bg.LogLik, -9582.43},
	} {
		if !sig3(c.got, c.want) {
			t.Errorf("BG/NBD %s = %.6f, want %v to 3 significant digits", c.name, c.got, c.want)
		}
	}
	// Tighter than the requirement: the BTYD package's values to 4 digits.
	if math.Abs(bg.Params.R-0.2426) > 0.00005 || math.Abs(bg.LogLik+9582.43) > 0.01 {
		t.Errorf("BG/NBD fit r=%.6f ll=%.4f not within 4-digit rounding of r=0.2426 ll=-9582.43", bg.Params.R, bg.LogLik)
	}

	gg, err := btyd.FitGammaGamma(ss)
	if err != nil {
		t.Fatal(err)
	}
	if gg.Customers != 946 {
		t.Errorf("Gamma-Gamma fitted on %d customers, want 946", gg.Customers)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p", gg.Params.P, 6.25}, {"q", gg.Params.Q, 3.74}, {"gamma", gg.Params.Gamma, 15.44}, {"loglik", gg.LogLik, -4055.92},
	} {
		if !sig3(c.got, c.want) {
			t.Errorf("Gamma-Gamma %s = %.6f, want %v to 3 significant digits", c.name, c.got, c.want)
		}
	}
}

func TestFitOnRoundedSummaryMatchesLifetimes(t *testing.T) {
	// The rounded summary file shipped with the dataset fits to the values
	// documented by the lifetimes package.
	p := filepath.Join(filepath.Dir(cdnowPath(t)), "cdnow_customers_summary_with_transactions.csv")
	f, err := os.Open(p)
	if err != nil {
		t.Fatalf("rounded CDNOW summary missing: %v", err)
	}
	defer f.Close()
	ss := readRoundedSummary(t, f)
	bg, err := btyd.FitBGNBD(ss)
	if err != nil {
		t.Fatal(err)
	}
	want := btyd.BGNBD{R: 0.242593, Alpha: 4.413532, A: 0.792886, B: 2.425752}
	for _, c := range [][2]float64{{bg.Params.R, want.R}, {bg.Params.Alpha, want.Alpha}, {bg.Params.A, want.A}, {bg.Params.B, want.B}} {
		if math.Abs(c[0]-c[1]) > 2e-4*c[1] {
			t.Errorf("fit on rounded summary = %+v, want %+v (0.02%%)", bg.Params, want)
			break
		}
	}
}

func BenchmarkFitCDNOW(b *testing.B) {
	ss := txnsummary.Summaries(cdnowCustomers(b))
	b.Run("bgnbd", func(b *testing.B) {
		for b.Loop() {
			if _, err := btyd.FitBGNBD(ss); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gammagamma", func(b *testing.B) {
		for b.Loop() {
			if _, err := btyd.FitGammaGamma(ss); err != nil {
				b.Fatal(err)
			}
		}
	})
}
