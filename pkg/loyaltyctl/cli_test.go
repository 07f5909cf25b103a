package loyaltyctl

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/buildinfo"
)

// readmeCommandLines returns the loyaltyctl command lines of README.md's code blocks (those
// beginning with "loyaltyctl " or "go run ./services/loyaltyctl "), as arguments without the
// program, the trailing shell comment removed.
func readmeCommandLines(t *testing.T) [][]string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]string
	inBlock := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		if !inBlock {
			continue
		}
		var rest string
		var ok bool
		for _, prefix := range []string{"loyaltyctl ", "go run ./services/loyaltyctl "} {
			if rest, ok = strings.CutPrefix(line, prefix); ok {
				break
			}
		}
		if !ok {
			continue
		}
		if i := strings.Index(rest, " #"); i >= 0 {
			rest = rest[:i]
		}
		lines = append(lines, strings.Fields(rest))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// parses resolves args to a command of the tree and parses its flags and arguments the way
// Execute does, without running it.
func parses(args []string) error {
	root := NewRoot()
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return err
	}
	if cmd.HasSubCommands() {
		return Usagef("%s needs a subcommand", cmd.CommandPath())
	}
	return cmd.ValidateArgs(cmd.Flags().Args())
}

// TestEveryREADMECommandLineParses keeps the README's examples working: a command line shown
// there that no longer parses (renamed flag, removed command, wrong arity) fails here.
func TestEveryREADMECommandLineParses(t *testing.T) {
	lines := readmeCommandLines(t)
	if len(lines) < 10 {
		t.Fatalf("found %d loyaltyctl command lines in README.md's code blocks, want at least 10: the extraction is broken", len(lines))
	}
	for _, args := range lines {
		if err := parses(args); err != nil {
			t.Errorf("README: loyaltyctl %s: %v", strings.Join(args, " "), err)
		}
	}
	// The check itself rejects what the CLI rejects.
	for _, bad := range [][]string{{"customer"}, {"customer", "C-1", "--nope"}, {"model"}, {"nope"}, {"status", "-o", "yaml"}} {
		if parses(bad) == nil {
			t.Errorf("loyaltyctl %s parses, want an error", strings.Join(bad, " "))
		}
	}
}

// commandPaths lists every command of the tree below root (help and completion included) as
// the arguments that select it.
func commandPaths() [][]string {
	root := NewRoot()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			if !sub.Hidden {
				walk(sub, append(append([]string{}, path...), sub.Name()))
			}
		}
	}
	walk(root, nil)
	return paths
}

func TestHelpExitsZeroOnEveryCommand(t *testing.T) {
	paths := commandPaths()
	if len(paths) < 15 { // the root, 12 commands, model's 2, help, completion and its 4 shells
		t.Fatalf("only %d commands in the tree: %v", len(paths), paths)
	}
	for _, path := range paths {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string{}, path...), h)
			code, out, errs := run(t, args...)
			if code != 0 || !strings.Contains(out, "Usage:") {
				t.Errorf("loyaltyctl %s: exit %d, want 0 with the usage on stdout\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
			}
		}
	}
}

func TestVersionPrintsTheBuildInfo(t *testing.T) {
	code, out, errs := run(t, "--version")
	if want := "loyaltyctl " + buildinfo.Get().String() + "\n"; code != 0 || out != want {
		t.Errorf("--version: exit %d, stdout %q, want %q (stderr %s)", code, out, want, errs)
	}
}

func TestCompletionScriptsCompleteTheCommands(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errs := run(t, "completion", shell)
		if code != 0 || len(out) < 1000 || !strings.Contains(out, "loyaltyctl") {
			t.Errorf("completion %s: exit %d, %d bytes (stderr %s)", shell, code, len(out), errs)
		}
	}
	// The scripts ask the binary (its hidden __complete command) for the candidates.
	code, out, _ := run(t, "__complete", "")
	for _, sub := range []string{"status", "customer", "model", "completion"} {
		if code != 0 || !strings.Contains(out, "\n"+sub+"\t") {
			t.Errorf("completing a command does not offer %s (exit %d):\n%s", sub, code, out)
		}
	}
	if code, out, _ := run(t, "__complete", "status", "--output", ""); code != 0 || !strings.Contains(out, "json\n") || !strings.Contains(out, "text\n") {
		t.Errorf("completing --output does not offer text and json (exit %d):\n%s", code, out)
	}
}

// TestConnectionFailuresExitOneAndMistakesTwo: a command line that parses but cannot reach
// Redis is a failure (1), not a usage error (2); flag and argument mistakes are 2.
func TestConnectionFailuresExitOneAndMistakesTwo(t *testing.T) {
	t.Setenv("REDIS_ADDR", "127.0.0.1:1") // nothing listens on port 1
	for _, args := range [][]string{
		{"customer", "C-1", "--namespace", "live"},
		{"actions", "C-1", "-n", "3", "--json"},
		{"status", "--purchases-addr", "off"},
	} {
		if code, _, errs := run(t, args...); code != 1 || !strings.Contains(errs, "redis") {
			t.Errorf("loyaltyctl %s without Redis: exit %d, want 1 naming redis; stderr: %s", strings.Join(args, " "), code, errs)
		}
	}
	for _, args := range [][]string{
		{"customer", "C-1", "--no-such-flag"},
		{"customer", "C-1", "C-2"},
		{"customer", "C-1", "--output", "yaml"},
		{"status", "extra"},
		{"model", "fit", "-h", "--bogus"},
		{"actions", "C-1", "-n", "0"},
	} {
		if code, _, errs := run(t, args...); code != 2 {
			t.Errorf("loyaltyctl %s: exit %d, want 2 (usage); stderr: %s", strings.Join(args, " "), code, errs)
		}
	}
}
