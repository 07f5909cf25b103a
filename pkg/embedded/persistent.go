package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/freeport"
)

// PersistentRedis is a redis-server child process with the append-only file on (fsync every
// second, as deploy/local/redis.sh runs it) and maxmemory-policy noeviction, which can be
// stopped, killed and started again on the same port and directory: the chaos suite restarts
// it under running services, which must find their data again.
type PersistentRedis struct {
	Addr string
	// Dir holds the AOF, the RDB and redis.log.
	Dir string

	bin  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartPersistentRedis starts redis-server with AOF on a free loopback port, its files under
// dir, and waits until it answers PING.
func StartPersistentRedis(ctx context.Context, dir string) (*PersistentRedis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating redis dir: %w", err)
	}
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	r := &PersistentRedis{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, bin: bin, port: port}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Running reports whether the server process is up.
func (r *PersistentRedis) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// Start starts the server again on the same port and directory (it loads its AOF) and waits
// until it answers PING. Starting a running server is an error.
func (r *PersistentRedis) Start(ctx context.Context) error {
	if r.Running() {
		return fmt.Errorf("redis-server on %s is already running", r.Addr)
	}
	logFile := filepath.Join(r.Dir, "redis.log")
	cmd := exec.Command(r.bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port), "--dir", r.Dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
		"--logfile", logFile, "--protected-mode", "yes")
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	// Loading a large AOF takes a while; a port that is still in TIME_WAIT use does not.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ping(r.Addr) == nil {
			return nil
		}
		select {
		case <-done:
			logTail, _ := os.ReadFile(logFile)
			return fmt.Errorf("redis-server on %s exited at start (%w): %s", r.Addr, waitErr, lastLines(string(logTail), 5))
		case <-ctx.Done():
			_ = r.Kill()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = r.Kill()
			return fmt.Errorf("redis-server on %s did not answer PING within 60s", r.Addr)
		}
	}
}

// Stop shuts the server down cleanly (SIGTERM: it flushes the AOF) and waits for it to exit,
// killing it after 10 seconds.
func (r *PersistentRedis) Stop() error { return r.signal(syscall.SIGTERM, 10*time.Second) }

// Kill ends the server with SIGKILL, as a crash would, and waits for it to be gone.
func (r *PersistentRedis) Kill() error { return r.signal(syscall.SIGKILL, 10*time.Second) }

// Close stops the server if it runs.
func (r *PersistentRedis) Close() error { return r.Stop() }

func (r *PersistentRedis) signal(sig syscall.Signal, timeout time.Duration) error {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling redis-server: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("redis-server on %s did not exit within %s after %s; killed", r.Addr, timeout, sig)
	}
}
