package cmdline

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
)

// Output formats of the --output flag.
const (
	Text = "text"
	JSON = "json"
)

// Output is the value of the persistent --output (-o) flag: text (the default) or json. Any
// other value is a flag error, hence a usage error.
type Output struct{ format string }

// String returns the format.
func (o *Output) String() string {
	if o.format == "" {
		return Text
	}
	return o.format
}

// Set validates and sets the format.
func (o *Output) Set(v string) error {
	if v != Text && v != JSON {
		return fmt.Errorf("%q is not text or json", v)
	}
	o.format = v
	return nil
}

// Type names the flag's values in the help.
func (o *Output) Type() string { return "text|json" }

// JSON tells whether JSON was asked for.
func (o *Output) JSON() bool { return o.format == JSON }

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

// AddFlag adds o as the persistent --output (-o) flag of root, offered to shell completion
// with its two values.
func (o *Output) AddFlag(root *cobra.Command) {
	root.PersistentFlags().VarP(o, "output", "o", "output format: text or json")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{Text, JSON}, cobra.ShellCompDirectiveNoFileComp))
}

// AddJSONAlias adds the hidden --json flag of cmd, the deprecated spelling of --output json
// that earlier versions of a command had.
func (o *Output) AddJSONAlias(cmd *cobra.Command) {
	f := cmd.Flags().VarPF(jsonAlias{o}, "json", "", "deprecated: use --output json")
	f.NoOptDefVal = "true"
	f.Hidden = true
}

// jsonAlias is the boolean --json flag that sets its Output to json.
type jsonAlias struct{ o *Output }

func (a jsonAlias) String() string { return strconv.FormatBool(a.o.JSON()) }

func (a jsonAlias) Set(v string) error {
	on, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	if on {
		a.o.format = JSON
	} else {
		a.o.format = Text
	}
	return nil
}

func (a jsonAlias) Type() string { return "bool" }
