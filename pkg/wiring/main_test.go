package wiring_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/e2e"
)

// Every service binary answers -h with its variables and exits 0, and refuses any other
// argument with exit 2 before connecting to anything (no Kafka or Redis runs here: a service
// that started would fail to connect and exit 1, or hang in its start-up retries).
func TestServiceBinariesAnswerHelpAndRefuseOtherArguments(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	services := append(e2e.Services(), "notifier")
	bins, err := e2e.Build(ctx, t.TempDir(), services...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range services {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, bins[name], "-h")
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s -h: %v", name, err)
		}
		for _, v := range config.Vars("") {
			if !strings.Contains(out.String(), v.Name) {
				t.Errorf("%s -h does not list %s", name, v.Name)
			}
		}
		var stderr bytes.Buffer
		cmd = exec.CommandContext(ctx, bins[name], "--bogus")
		cmd.Stderr = &stderr
		var exit *exec.ExitError
		if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%s --bogus: %v, want exit status 2", name, err)
		}
		if !strings.Contains(stderr.String(), "--bogus") {
			t.Errorf("%s --bogus: stderr %q does not name the argument", name, stderr.String())
		}
	}
}
