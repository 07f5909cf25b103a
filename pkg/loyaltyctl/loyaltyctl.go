// Package loyaltyctl implements loyaltyctl, the operator's command-line tool of the loyalty
// pipeline, on cobra (through pkg/cmdline): NewRoot builds the command tree from the explicit
// list in commands, and Main, which services/loyaltyctl calls, runs it.
//
// Adding a subcommand: write a function returning its *cobra.Command (flags bound to local
// variables, Args through cmdline.Args, errors from RunE; cmdline.Usagef for command-line
// mistakes) and add it to commands. Commands that print results honour the persistent
// --output text|json flag they are given.
package loyaltyctl

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
)

const rootHelp = `loyaltyctl is the operator's tool of the loyalty pipeline: inspect customers and the pipeline's
state, produce and consume events, fit and score the models, replay history into a namespace
and promote it, erase customers, and move consumer groups.

It reads the same environment variables as the services (KAFKA_BROKERS, REDIS_ADDR,
LOYALTY_NAMESPACE, ...). Flags may come before or after the positional arguments.
--output json (-o json) prints results as JSON.`

// commands is the table of loyaltyctl's subcommands; out is the value of --output.
func commands(out *cmdline.Output) []*cobra.Command {
	return []*cobra.Command{
		statusCommand(out),
		customerCommand(out),
		actionsCommand(out),
		eraseCommand(out),
		quarantineCommand(out),
		migrateStateCommand(out),
		kpiCommand(out),
		produceCommand(out),
		consumeCommand(),
		dlqCommand(out),
		modelCommand(out),
		replayCommand(out),
		diffCommand(out),
		promoteCommand(out),
		dropCommand(out),
		resetOffsetsCommand(out),
	}
}

// NewRoot builds the loyaltyctl command tree.
func NewRoot() *cobra.Command {
	out := &cmdline.Output{}
	root := cmdline.NewRoot("loyaltyctl", "operator's tool of the loyalty scoring pipeline", rootHelp, commands(out)...)
	out.AddFlag(root)
	return root
}

// Main runs the command line args (without the program name) and returns the process exit
// status: 0 success, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdline.Execute(ctx, NewRoot(), args, stdout, stderr)
}

// Usagef returns a usage error (exit status 2).
func Usagef(format string, args ...any) error { return cmdline.Usagef(format, args...) }
