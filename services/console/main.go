// Command console serves the loyalty console: the overview and customer pages for marketing
// and support, and the versioned JSON API behind them (docs/console.md), from the active
// namespace's KPI counters, customer states and output topics. It needs credentials
// (CONSOLE_USER/CONSOLE_PASSWORD for browsers, CONSOLE_BEARER_TOKEN for API clients) and
// listens on loopback unless CONSOLE_ADDR says otherwise.
package main

import (
	"context"
	"os"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

func main() {
	var cfg wiring.ConsoleConfig
	os.Exit(wiring.Main(wiring.Binary{Name: "console", HTTPDefault: "127.0.0.1:9107",
		Summary: "Serves the loyalty console: KPIs, population mix, recent churn alerts and actions, and customer pages,\nwith a JSON API (docs/console.md). Requires CONSOLE_USER/CONSOLE_PASSWORD or CONSOLE_BEARER_TOKEN.",
		Vars:    wiring.ConsoleVars,
		Configure: func(env config.Env) (err error) {
			cfg, err = wiring.ConsoleConfigFromEnv(env)
			return err
		},
		Run: func(ctx context.Context, rt *wiring.Runtime) error {
			return wiring.RunConsole(ctx, rt, cfg, nil)
		}}))
}
