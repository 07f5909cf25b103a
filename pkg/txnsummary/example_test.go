package txnsummary_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/txnsummary"
)

func ExampleSummarize() {
	in := "customer_id,occurred_at,amount\n" +
		"c1,2024-01-01,40.00\n" +
		"c1,2024-01-01T18:30:00Z,10.00\n" + // same day: merged
		"c1,2024-01-15,30.00\n" +
		"c1,2024-01-29,20.00\n"
	txns, err := txnsummary.ReadCSV(strings.NewReader(in))
	if err != nil {
		panic(err)
	}
	end := txnsummary.DayOf(time.Date(2024, 2, 5, 0, 0, 0, 0, time.UTC))
	cs, _ := txnsummary.Summarize(txns, end, txnsummary.UnitWeek)
	c := cs[0]
	fmt.Printf("%s x=%v t_x=%v T=%v monetary=%v\n", c.ID, c.X, c.TX, c.T, c.Monetary)
	// Output:
	// c1 x=2 t_x=4 T=5 monetary=25
}
