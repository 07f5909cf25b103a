package config

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Usage writes a service's usage text: it takes no arguments and is configured by the
// environment variables vars.
func Usage(w io.Writer, service, summary string, vars []Var) error {
	if _, err := fmt.Fprintf(w, "Usage: %s [-h|--help]\n\n%s\n\nEnvironment variables:\n\n", service, summary); err != nil {
		return fmt.Errorf("writing the usage text: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tDEFAULT\tMEANING")
	for _, v := range vars {
		def := v.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, def, v.Meaning)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the usage text: %w", err)
	}
	return nil
}

// Exit codes of CheckArgs.
const (
	// ExitHelp is the exit code after -h/--help printed the usage text.
	ExitHelp = 0
	// ExitUsage is the exit code of a command line a service does not accept.
	ExitUsage = 2
)

// CheckArgs handles a service's command line (without the program name). Services take no
// arguments: -h, -help or --help prints the usage text to stdout and returns (ExitHelp,
// true); anything else is reported on stderr and returns (ExitUsage, true). With no
// arguments it returns (0, false): the service should start.
func CheckArgs(args []string, service, summary string, vars []Var, stdout, stderr io.Writer) (code int, exit bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "-h", "-help", "--help":
		if len(args) == 1 {
			if err := Usage(stdout, service, summary, vars); err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", service, err)
				return ExitUsage, true
			}
			return ExitHelp, true
		}
	}
	fmt.Fprintf(stderr, "%s: unexpected argument %q: the service is configured by environment variables (see %s --help)\n", service, args[0], service)
	return ExitUsage, true
}
