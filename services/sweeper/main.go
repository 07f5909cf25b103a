// Command sweeper evaluates customers whose inactivity deadline the pipeline's event-time
// watermark has passed (a customer who simply stops buying), and refreshes the population
// RFM cut points from the store's histograms every CUTPOINTS_REFRESH (default 1h; 0 disables).
package main

import (
	"context"
	"os"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

func main() {
	var sweeper config.Sweeper
	os.Exit(wiring.Main(wiring.Binary{Name: "sweeper", HTTPDefault: "127.0.0.1:9105",
		Summary: "Evaluates customers whose inactivity deadline the event-time watermark has passed, and refreshes the RFM cut points.",
		Vars:    config.SweeperVars(),
		Configure: func(env config.Env) (err error) {
			sweeper, err = config.LoadSweeper(env)
			return err
		},
		Run: func(ctx context.Context, rt *wiring.Runtime) error {
			return wiring.RunSweeper(ctx, rt, sweeper.CutpointsRefresh)
		}}))
}
