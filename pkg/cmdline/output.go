package cmdline

import (
	"encoding/json"
	"fmt"
	"io"

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

// AddOutputFlag adds the persistent --output (-o) flag to root and returns its value.
func AddOutputFlag(root *cobra.Command) *Output {
	o := &Output{}
	root.PersistentFlags().VarP(o, "output", "o", "output format: text or json")
	return o
}
