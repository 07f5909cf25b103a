package e2e

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Cluster is one isolated pipeline of service processes on a shared broker and Redis.
type Cluster struct {
	Brokers   []string
	Redis     string
	Namespace string
	Suffix    string
	// Bins maps service name to binary (see Build).
	Bins map[string]string
	// LogDir receives one log file per service instance.
	LogDir string
	// Env is added to every service's environment (BATCH_SIZE, LOG_LEVEL, ...).
	Env map[string]string
	// ReadyTimeout bounds a service's start-up (default one minute).
	ReadyTimeout time.Duration

	mu    sync.Mutex
	seq   map[string]int
	procs Group
}

// env is the environment of one service of the cluster.
func (c *Cluster) env() map[string]string {
	env := map[string]string{
		"KAFKA_BROKERS": strings.Join(c.Brokers, ","), "REDIS_ADDR": c.Redis,
		"LOYALTY_NAMESPACE": c.Namespace, "LOYALTY_DEPLOYMENT": c.Namespace, "LOYALTY_TOPIC_SUFFIX": c.Suffix,
		"LOG_LEVEL": "warn",
	}
	maps.Copy(env, c.Env)
	return env
}

// Start starts one more instance of service and waits until it is ready.
func (c *Cluster) Start(ctx context.Context, service string) (*Process, error) {
	bin, ok := c.Bins[service]
	if !ok {
		return nil, fmt.Errorf("no binary for service %s", service)
	}
	c.mu.Lock()
	if c.seq == nil {
		c.seq = map[string]int{}
	}
	c.seq[service]++
	n := c.seq[service]
	c.mu.Unlock()
	name := service + "-" + strconv.Itoa(n)
	p, err := StartProcess(name, bin, filepath.Join(c.LogDir, c.Namespace+"-"+name+".log"), c.env())
	if err != nil {
		return nil, err
	}
	c.procs.Add(p)
	timeout := c.ReadyTimeout
	if timeout == 0 {
		timeout = time.Minute
	}
	if err := p.WaitReady(ctx, timeout); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// StartAll starts one instance of each service, in parallel, and returns them by name.
func (c *Cluster) StartAll(ctx context.Context, services ...string) (map[string]*Process, error) {
	out := make(map[string]*Process, len(services))
	var mu sync.Mutex
	errs := make(chan error, len(services))
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := c.Start(ctx, s)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			out[s] = p
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return out, err
	}
	return out, nil
}

// Stop stops every process the cluster started (SIGTERM, SIGKILL after timeout).
func (c *Cluster) Stop(timeout time.Duration) error { return c.procs.StopAll(timeout) }
