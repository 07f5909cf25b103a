// Command sweeper evaluates customers whose inactivity deadline the pipeline's event-time
// watermark has passed (a customer who simply stops buying), and refreshes the population
// RFM cut points from the store's histograms every CUTPOINTS_REFRESH (default 1h; 0 disables).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
)

func main() {
	refresh := time.Hour
	if v := os.Getenv("CUTPOINTS_REFRESH"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			fmt.Fprintf(os.Stderr, "sweeper: CUTPOINTS_REFRESH=%q: want a duration such as 1h, or 0\n", v)
			os.Exit(2)
		}
		refresh = d
	}
	os.Exit(pipeline.Main("sweeper", "127.0.0.1:9105", func(ctx context.Context, rt *pipeline.Runtime) error {
		return pipeline.RunSweeper(ctx, rt, refresh)
	}))
}
