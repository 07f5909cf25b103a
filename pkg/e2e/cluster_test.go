package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeService writes a shell script that stands in for a service binary: it appends one line
// to calls (so the test counts starts) and then runs body.
func fakeService(t *testing.T, dir, body string) (bin, calls string) {
	t.Helper()
	bin = filepath.Join(dir, "svc")
	calls = filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho start >> " + calls + "\n" + body + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, calls
}

func starts(t *testing.T, calls string) int {
	t.Helper()
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "start")
}

func TestStartTriesAnotherPortWhenTheServiceLostItsPort(t *testing.T) {
	dir := t.TempDir()
	bin, calls := fakeService(t, dir, `echo '{"msg":"stopped","error":"listen tcp '"$HTTP_ADDR"': bind: address already in use"}'; exit 1`)
	c := &Cluster{Namespace: "t", Bins: map[string]string{"svc": bin}, LogDir: dir, ReadyTimeout: 10 * time.Second}
	_, err := c.Start(context.Background(), "svc")
	if err == nil {
		t.Fatal("Start succeeded with a service that never binds")
	}
	if n := starts(t, calls); n != 3 {
		t.Fatalf("service started %d times, want 3 (a first start and two more on other ports)", n)
	}
}

func TestStartDoesNotRetryAServiceThatFailsForAnotherReason(t *testing.T) {
	dir := t.TempDir()
	bin, calls := fakeService(t, dir, `echo '{"msg":"stopped","error":"config: KAFKA_BROKERS is empty"}'; exit 1`)
	c := &Cluster{Namespace: "t", Bins: map[string]string{"svc": bin}, LogDir: dir, ReadyTimeout: 10 * time.Second}
	_, err := c.Start(context.Background(), "svc")
	if err == nil || !strings.Contains(err.Error(), "exited during start-up") {
		t.Fatalf("Start: %v, want the start-up exit", err)
	}
	if n := starts(t, calls); n != 1 {
		t.Fatalf("service started %d times, want 1", n)
	}
}
