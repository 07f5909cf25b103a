// Package loyaltyctl implements the loyaltyctl command-line tool: a table of
// subcommands, each registered from its own file with one call to Register,
// and Main, which services/loyaltyctl calls.
//
// Adding a subcommand:
//
//	func init() { Register(Command{Name: "produce", Summary: "...", Run: runProduce}) }
//
// Run gets the arguments after the subcommand name and returns an error; a
// *UsageError (see Usagef) exits with status 2 and prints the usage, other
// errors exit with status 1.
package loyaltyctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// Command is one subcommand.
type Command struct {
	// Name is the first argument that selects it.
	Name string
	// Summary is a one-line description for the command list.
	Summary string
	// Run executes it with the remaining arguments.
	Run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var (
	mu       sync.Mutex
	commands = map[string]Command{}
)

// Register adds a subcommand. It panics on a duplicate or incomplete
// registration, which is a programming error found at start-up.
func Register(c Command) {
	mu.Lock()
	defer mu.Unlock()
	if c.Name == "" || c.Run == nil {
		panic("loyaltyctl: Register needs a Name and a Run function")
	}
	if _, dup := commands[c.Name]; dup {
		panic("loyaltyctl: subcommand " + c.Name + " registered twice")
	}
	commands[c.Name] = c
}

// UsageError is a mistake in the command line.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a *UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Main runs the command line args (without the program name) and returns
// the process exit status: 0 success, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	mu.Lock()
	c, ok := commands[args[0]]
	mu.Unlock()
	if !ok {
		fmt.Fprintf(stderr, "loyaltyctl: unknown command %q\n\n", args[0])
		printUsage(stderr)
		return 2
	}
	if err := c.Run(ctx, args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "loyaltyctl %s: %v\n", c.Name, err)
		var ue *UsageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

func printUsage(w io.Writer) {
	mu.Lock()
	defer mu.Unlock()
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: loyaltyctl <command> [arguments]\n\ncommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].Summary)
	}
}
