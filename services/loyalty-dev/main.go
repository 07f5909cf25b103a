// Command loyalty-dev is the developer's harness of the loyalty pipeline: the in-process
// demo (make run) and the end-to-end benchmark (make bench-e2e). Its logic is in
// pkg/devharness; the operator's tool is loyaltyctl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/loyalty-scoring/loyalty/pkg/devharness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := devharness.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
