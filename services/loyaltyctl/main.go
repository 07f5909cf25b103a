// Command loyaltyctl is the operator's tool for the loyalty pipeline: model
// fitting and scoring today, producing, consuming and inspecting customers
// as later subcommands register themselves in pkg/loyaltyctl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/loyalty-scoring/loyalty/pkg/loyaltyctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := loyaltyctl.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
