package btyd_test

import (
	"encoding/csv"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
)

func mustDate(tb testing.TB, s string) time.Time {
	tb.Helper()
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func readRoundedSummary(tb testing.TB, r io.Reader) []btyd.Summary {
	tb.Helper()
	recs, err := csv.NewReader(r).ReadAll()
	if err != nil {
		tb.Fatal(err)
	}
	var out []btyd.Summary
	for i, rec := range recs[1:] {
		var v [4]float64
		for j := range v {
			if v[j], err = strconv.ParseFloat(rec[j+1], 64); err != nil {
				tb.Fatalf("summary line %d: %v", i+2, err)
			}
		}
		out = append(out, btyd.Summary{X: v[0], TX: v[1], T: v[2], Monetary: v[3]})
	}
	return out
}
