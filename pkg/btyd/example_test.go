package btyd_test

import (
	"fmt"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
)

func ExampleBGNBD_PAlive() {
	m := btyd.BGNBD{R: 0.2426, Alpha: 4.4137, A: 0.7930, B: 2.4262} // CDNOW, weeks
	// Two repeat purchases, the last 30.43 weeks after the first, observed for 38.86 weeks.
	s := btyd.Summary{X: 2, TX: 30.43, T: 38.86}
	fmt.Printf("P(alive) = %.3f\n", m.PAlive(s))
	fmt.Printf("expected purchases in the next 39 weeks = %.3f\n", m.ExpectedPurchases(s, 39))
	// Output:
	// P(alive) = 0.727
	// expected purchases in the next 39 weeks = 1.226
}

func ExampleCLV() {
	bg := btyd.BGNBD{R: 0.2426, Alpha: 4.4137, A: 0.7930, B: 2.4262}
	gg := btyd.GammaGamma{P: 6.25, Q: 3.74, Gamma: 15.44}
	s := btyd.Summary{X: 2, TX: 30.43, T: 38.86, Monetary: 22.35}
	weekly := btyd.PerUnitRate(0.10, 52.1775) // 10% a year
	fmt.Printf("52-week CLV: $%.2f\n", btyd.CLV(bg, gg, s, 52, weekly))
	// Output:
	// 52-week CLV: $36.76
}
