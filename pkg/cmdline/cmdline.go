// Package cmdline is the plumbing shared by the project's command-line tools (loyaltyctl and
// loyalty-dev), built on cobra: a root command with --version (pkg/buildinfo) and shell
// completion, the persistent --output text|json flag, usage errors, and Execute, which maps
// the outcome of a command line to the exit status: 0 success, 1 failure, 2 usage error.
package cmdline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/buildinfo"
)

// Exit statuses of the tools.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// ExitCodesHelp documents the exit statuses; the roots' long help ends with it.
const ExitCodesHelp = `Exit status: 0 success, 1 failure (including an unreachable Kafka or Redis),
2 usage error (unknown command or flag, bad flag value, wrong number of arguments).`

// UsageError is a mistake in the command line; Execute exits with ExitUsage on it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Args turns an argument validator's error (cobra.ExactArgs and friends) into a usage error.
func Args(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return &UsageError{Err: fmt.Errorf("%w; usage: %s", err, cmd.UseLine())}
		}
		return nil
	}
}

// NoSubcommand is the Args of a command whose children do the work: an argument that names
// none of them is a usage error.
func NoSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

// MissingSubcommand is the RunE of a command whose children do the work: running it alone
// is a usage error, after its help.
func MissingSubcommand(cmd *cobra.Command, _ []string) error {
	cmd.SetOut(cmd.ErrOrStderr())
	_ = cmd.Help()
	return Usagef("%s needs a subcommand", cmd.CommandPath())
}

// NewRoot returns a root command named use with the given help, the subcommands, --version
// and cobra's completion command. Flag mistakes anywhere in the tree are usage errors.
func NewRoot(use, short, long string, subcommands ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:           use,
		Short:         short,
		Long:          strings.TrimSpace(long) + "\n\n" + ExitCodesHelp,
		Version:       buildinfo.Get().String(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          NoSubcommand,
		RunE:          MissingSubcommand,
	}
	root.SetVersionTemplate(use + " {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	root.AddCommand(subcommands...)
	return root
}

// Execute runs root on args (without the program name) and returns the exit status. Errors
// are printed on stderr, prefixed by the command's path.
func Execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	if args == nil {
		args = []string{} // cobra reads os.Args when the arguments are nil
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
	var ue *UsageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return ExitUsage
	}
	return ExitFailure
}

// isCobraUsageError recognizes the command-line errors cobra returns itself, before any of
// our validators run: an unknown subcommand of a command without Args, and missing required
// flags or flag-group violations.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, prefix := range []string{"unknown command ", "required flag(s) ", "if any flags in the group ", "none of the flags in the group ", "at least one of the flags in the group "} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}
