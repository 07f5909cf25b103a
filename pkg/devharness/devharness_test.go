package devharness

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/e2e"
)

// TestBenchE2EUsesPrebuiltBinariesAndNeverBuilds: bench-e2e takes its service binaries from
// --bin (make build writes them) and fails, naming the missing binary and make build, before
// connecting to anything when they are not there.
func TestBenchE2EUsesPrebuiltBinariesAndNeverBuilds(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "127.0.0.1:1")
	t.Setenv("REDIS_ADDR", "127.0.0.1:1")
	dir := t.TempDir()
	// Every binary but the relay: the benchmark must not build the missing one.
	for _, s := range e2e.Services() {
		if s == "relay" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, s), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"bench-e2e", "--bin", dir, "--events", "10"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "no relay binary in "+dir) || !strings.Contains(stderr.String(), "make build") {
		t.Fatalf("exit %d, stderr %q: want 1 naming the missing relay binary and make build", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "relay")); err == nil {
		t.Error("bench-e2e built the missing binary")
	}
	if err := os.WriteFile(filepath.Join(dir, "relay"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bins, err := serviceBinaries(dir)
	if err != nil || len(bins) != len(e2e.Services()) || bins["relay"] != filepath.Join(dir, "relay") {
		t.Errorf("with every binary in --bin: %v, %v; want every service's path in %s", bins, err, dir)
	}
}

func TestTheDevHarnessCommandLine(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"-h"}, 0, "demo"},
		{[]string{"demo", "--help"}, 0, "--customers"},
		{[]string{"bench-e2e", "-h"}, 0, "--bin"},
		{[]string{"--version"}, 0, "loyalty-dev "},
		{[]string{"completion", "bash"}, 0, "loyalty-dev"},
		{[]string{}, 2, ""},
		{[]string{"bench"}, 2, ""},
		{[]string{"bench-e2e", "--output", "xml"}, 2, ""},
		{[]string{"bench-e2e", "--events", "0"}, 2, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), c.args, &stdout, &stderr)
		if code != c.code || !strings.Contains(stdout.String(), c.out) {
			t.Errorf("loyalty-dev %q: exit %d, want %d with %q on stdout\nstdout: %.300s\nstderr: %.300s", c.args, code, c.code, c.out, stdout.String(), stderr.String())
		}
	}
}
