// Command loyaltyctl is the operator's tool for the loyalty pipeline: the pipeline's status,
// customers, producing and consuming, model fitting and scoring, replays and erasure. Its
// commands are in pkg/loyaltyctl; the developer's demo and benchmark are in loyalty-dev.
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
