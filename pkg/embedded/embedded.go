// Package embedded runs the pipeline's infrastructure inside or beside the current process,
// for the demo and for tests on a machine without Kafka or Redis: an in-process
// Kafka-protocol broker (franz-go's kfake) and Debian's redis-server as a child process, or an
// in-process Redis-protocol server (miniredis) when redis-server is not installed.
package embedded

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/loyalty-scoring/loyalty/pkg/freeport"
)

// Kafka is an in-process Kafka-protocol broker.
type Kafka struct {
	cluster *kfake.Cluster
}

// StartKafka starts an in-process broker on a free loopback port. With dataDir set, the
// broker persists its log there and a restart resumes it.
func StartKafka(dataDir string, partitions int) (*Kafka, error) {
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(partitions),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }),
		kfake.GroupMinSessionTimeout(time.Second),
	}
	if dataDir != "" {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating kafka data dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting in-process kafka: %w", err)
	}
	return &Kafka{cluster: c}, nil
}

// Brokers returns the broker addresses.
func (k *Kafka) Brokers() []string { return k.cluster.ListenAddrs() }

// Close stops the broker.
func (k *Kafka) Close() { k.cluster.Close() }

// Redis is a Redis-protocol server for local use.
type Redis struct {
	Addr string
	// Kind is "redis-server" (the real server, a child process) or "miniredis" (in-process).
	Kind string
	stop func() error
}

// Close stops the server.
func (r *Redis) Close() error { return r.stop() }

// ErrNoRedisServer is returned by StartRedisServer when redis-server is not on the PATH.
var ErrNoRedisServer = errors.New("redis-server not found on PATH (install it: apt-get install -y redis-server)")

// StartRedis starts redis-server when it is installed, and miniredis otherwise.
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	r, err := StartRedisServer(ctx, dir)
	if errors.Is(err, ErrNoRedisServer) {
		m, err := miniredis.Run()
		if err != nil {
			return nil, fmt.Errorf("starting in-process redis: %w", err)
		}
		return &Redis{Addr: m.Addr(), Kind: "miniredis", stop: func() error { m.Close(); return nil }}, nil
	}
	return r, err
}

// StartRedisServer starts Debian's redis-server as a child process on a free loopback port,
// with its files under dir (a temporary directory when empty) and no persistence, and waits
// until it answers PING.
func StartRedisServer(ctx context.Context, dir string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "redis-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return startOnFreePort(ctx, bin, dir, nil)
}

// startOnFreePort starts redis-server (startRedisOn) on a free loopback port, trying another
// port up to four times: a port free when it was picked may be taken before the server binds
// it (by another test's server, or, for a cluster node, its bus port at port+10000). prepare,
// when set, runs before each attempt.
func startOnFreePort(ctx context.Context, bin, dir string, prepare func() error, extra ...string) (*Redis, error) {
	for attempt := 0; ; attempt++ {
		if prepare != nil {
			if err := prepare(); err != nil {
				return nil, err
			}
		}
		port, err := freeport.Port()
		if err != nil {
			return nil, err
		}
		r, err := startRedisOn(ctx, bin, dir, port, extra...)
		if err == nil || attempt == 4 {
			return r, err
		}
	}
}

func startRedisOn(ctx context.Context, bin, dir string, port int, extra ...string) (*Redis, error) {
	logFile := filepath.Join(dir, "redis.log")
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--save", "", "--appendonly", "no", "--logfile", logFile, "--protected-mode", "yes"}
	return launchRedis(ctx, bin, append(args, extra...), logFile, "127.0.0.1:"+strconv.Itoa(port), ping)
}

// exitedAtStart is launchRedis's error for a redis-server that ended before it answered.
type exitedAtStart struct {
	err  error
	tail string // the last lines of its log
}

func (e *exitedAtStart) Error() string {
	return fmt.Sprintf("redis-server exited at start (%v): %s", e.err, e.tail)
}

func (e *exitedAtStart) Unwrap() error { return e.err }

// launchRedis starts redis-server with args (logging to logFile) and returns it once
// answered(addr) succeeds, within 10 seconds; otherwise it stops the process and returns why
// (*exitedAtStart when the server ended by itself).
func launchRedis(ctx context.Context, bin string, args []string, logFile, addr string, answered func(string) error) (*Redis, error) {
	cmd := exec.Command(bin, args...)
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	stop := func() error {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		return nil
	}
	logTail := func() string {
		b, _ := os.ReadFile(logFile)
		return lastLines(string(b), 5)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if answered(addr) == nil {
			return &Redis{Addr: addr, Kind: "redis-server", stop: stop}, nil
		}
		select {
		case <-done:
			return nil, &exitedAtStart{err: waitErr, tail: logTail()}
		case <-ctx.Done():
			_ = stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, fmt.Errorf("redis-server on %s did not answer within 10s: %s", addr, logTail())
		}
	}
}

func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
