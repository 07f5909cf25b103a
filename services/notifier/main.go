// Command notifier decides care, win-back, VIP-welcome and downgrade-warning actions from the
// tier and churn-risk topics, delivers them as signed webhooks (or to the log), and records
// every decision on loyalty.actions.v1. Configuration: the common environment (pkg/config)
// plus the NOTIFIER_* variables of notifier.ConfigFromEnv; see docs/webhooks.md.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

func main() {
	os.Exit(wiring.Main(wiring.Binary{Name: notifier.Service, HTTPDefault: "127.0.0.1:9106",
		Summary: "Decides care, win-back, VIP-welcome and downgrade-warning actions and delivers them as signed webhooks.\nThe NOTIFIER_* variables (rules, channels, secret, delivery) are described in docs/webhooks.md.",
		Run: func(ctx context.Context, rt *wiring.Runtime) error {
			cfg, err := notifier.ConfigFromEnv(os.Getenv, rt.Policy)
			if err != nil {
				return fmt.Errorf("configuration: %w", err)
			}
			return wiring.RunNotifier(ctx, rt, cfg)
		}}))
}
