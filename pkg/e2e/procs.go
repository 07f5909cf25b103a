// Package e2e runs the pipeline's real service binaries as child processes and observes what
// they did: it is the shared machinery of the failure and replay tests (failure_test.go) and
// of `loyalty-dev bench-e2e`. A Cluster is one isolated pipeline on a shared broker and Redis:
// its own topic suffix (LOYALTY_TOPIC_SUFFIX) and its own Redis namespace (LOYALTY_NAMESPACE),
// so several can run side by side and be compared.
//
// Determinism, and what a comparison may expect: the scoring is independent of arrival order
// only for events within the policy's allowed lateness of a customer's newest event
// (docs/scoring.md). The three consumer services read their topics independently, so when a
// long history is fed through them at once (a backfill, a replay through consumer groups, or
// a restart after a consumer was down) one topic runs days of event time ahead of another
// and the slower topics' events arrive "late": two runs over the same year-long history then
// end in different churn and segment decisions even without any crash. Tests that compare
// runs therefore squeeze the history into the lateness (HistoryConfig.Span), which is what
// live traffic looks like to the pipeline; replaying history needs an event-time merge of
// the topics instead.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/freeport"
)

// Module is the import path prefix of the services.
const Module = "github.com/loyalty-scoring/loyalty"

// ConsumerServices returns the services that consume an input topic (event.Streams).
func ConsumerServices() []string { return event.ConsumerServices() }

// Services returns the pipeline services every Cluster runs.
func Services() []string { return append(event.ConsumerServices(), "relay", "sweeper") }

// Build compiles the named services (packages Module/services/<name>) into dir in one go
// build invocation and returns the binaries' paths by name. It must run inside the module.
func Build(ctx context.Context, dir string, services ...string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	out := make(map[string]string, len(services))
	for _, s := range services {
		args = append(args, Module+"/services/"+s)
		out[s] = filepath.Join(dir, s)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s: %w\n%s", strings.Join(services, ", "), err, msg)
	}
	return out, nil
}

// Process is one running service binary.
type Process struct {
	Name     string
	HTTPAddr string
	LogPath  string
	cmd      *exec.Cmd
	done     chan struct{}
	err      error
}

// StartProcess runs bin with env added to a copy of the caller's environment from which
// every pipeline variable was removed, an HTTP_ADDR on a free loopback port, and its output
// appended to logPath.
func StartProcess(name, bin, logPath string, env map[string]string) (*Process, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = childEnv(env, addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, HTTPAddr: addr, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func childEnv(env map[string]string, httpAddr string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, set := env[k]; set || k == "HTTP_ADDR" || strings.HasPrefix(k, "LOYALTY_") {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return append(out, "HTTP_ADDR="+httpAddr)
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// WaitReady polls /readyz until it answers 200, the process exits, or timeout passes.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTPAddr+"/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start-up (%w); log: %s", p.Name, p.err, p.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s; log: %s", p.Name, timeout, p.LogPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lostItsPort reports whether the process ended because its HTTP address was in use.
func (p *Process) lostItsPort() bool {
	if done, _ := p.Exited(); !done {
		return false
	}
	log, err := os.ReadFile(p.LogPath)
	return err == nil && strings.Contains(string(log), "bind: address already in use")
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM (a consumer drains its in-flight batch), and SIGKILL after timeout. It
// returns the process's exit error when it did not stop cleanly.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", p.Name, timeout)
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) && exit.ExitCode() < 0 {
		return nil // ended by a signal we sent earlier
	}
	return p.err
}

// Group is a set of processes started together; StopAll stops each one it still has.
type Group struct {
	mu    sync.Mutex
	procs []*Process
}

// Add remembers p.
func (g *Group) Add(p *Process) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.procs = append(g.procs, p)
}

// StopAll stops every process (in parallel) and returns their errors joined.
func (g *Group) StopAll(timeout time.Duration) error {
	g.mu.Lock()
	procs := g.procs
	g.procs = nil
	g.mu.Unlock()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		if done, _ := p.Exited(); done {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Stop(timeout)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
