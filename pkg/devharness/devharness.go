// Package devharness is the developer's harness of the pipeline, kept out of the operator's
// tool: `loyalty-dev demo` runs every service in one process on an in-process Kafka
// (kfake) and Redis (redis-server or miniredis) with generated customers, and
// `loyalty-dev bench-e2e` benchmarks the prebuilt service binaries end to end against real
// Kafka and Redis. services/loyalty-dev calls Main.
package devharness

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
)

// NewRoot builds the loyalty-dev command tree from its explicit list of commands.
func NewRoot() *cobra.Command {
	return cmdline.NewRoot("loyalty-dev", "developer harness of the loyalty pipeline: demo and end-to-end benchmark",
		`loyalty-dev runs the pipeline for developers: an in-process demo that needs no Kafka or Redis,
and an end-to-end benchmark of the service binaries against real infrastructure.`,
		demoCommand(),
		benchE2ECommand(),
	)
}

// Main runs the command line args (without the program name) and returns the process exit
// status: 0 success, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdline.Execute(ctx, NewRoot(), args, stdout, stderr)
}
