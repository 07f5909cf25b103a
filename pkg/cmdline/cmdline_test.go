package cmdline

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// testRoot is a root with one command that prints its output format, or fails with err.
func testRoot(err error) *cobra.Command {
	out := &Output{}
	cmd := &cobra.Command{
		Use:  "show ID",
		Args: Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err != nil {
				return err
			}
			_, werr := cmd.OutOrStdout().Write([]byte(args[0] + " " + out.String() + "\n"))
			return werr
		},
	}
	out.AddJSONAlias(cmd)
	root := NewRoot("tool", "a test tool", "A test tool.", cmd)
	out.AddFlag(root)
	return root
}

func TestExecuteMapsOutcomesToExitStatuses(t *testing.T) {
	for _, c := range []struct {
		args   []string
		err    error
		code   int
		stdout string
	}{
		{[]string{"show", "x"}, nil, ExitOK, "x text\n"},
		{[]string{"show", "x", "-o", "json"}, nil, ExitOK, "x json\n"},
		{[]string{"--output", "json", "show", "x"}, nil, ExitOK, "x json\n"},
		{[]string{"show", "--json", "x"}, nil, ExitOK, "x json\n"},
		{[]string{"show", "x", "-h"}, nil, ExitOK, "Usage:"},
		{[]string{"show", "x"}, errors.New("redis down"), ExitFailure, ""},
		{[]string{"show", "x"}, Usagef("bad value"), ExitUsage, ""},
		{[]string{"show", "x", "-o", "yaml"}, nil, ExitUsage, ""},
		{[]string{"show"}, nil, ExitUsage, ""},
		{[]string{"show", "x", "--nope"}, nil, ExitUsage, ""},
		{[]string{"nope"}, nil, ExitUsage, ""},
		{[]string{}, nil, ExitUsage, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := Execute(context.Background(), testRoot(c.err), c.args, &stdout, &stderr)
		if code != c.code || !strings.Contains(stdout.String(), c.stdout) {
			t.Errorf("tool %q: exit %d stdout %q, want %d with %q (stderr %s)", c.args, code, stdout.String(), c.code, c.stdout, stderr.String())
		}
		if code != ExitOK && !regexp.MustCompile(`(?m)^tool( show)?: `).MatchString(stderr.String()) {
			t.Errorf("tool %q: stderr %q does not name the command", c.args, stderr.String())
		}
	}
}

func TestTheRootHelpDocumentsTheExitStatuses(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Execute(context.Background(), testRoot(nil), []string{"--help"}, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout.String(), ExitCodesHelp) {
		t.Errorf("root help lacks the exit statuses:\n%s", stdout.String())
	}
}
