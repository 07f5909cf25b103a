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

// Start starts one more instance of service and waits until it is ready. An instance that
// exits because its HTTP port was taken between the pick and its bind is started again on
// another port.
func (c *Cluster) Start(ctx context.Context, service string) (*Process, error) {
	timeout := c.ReadyTimeout
	if timeout == 0 {
		timeout = time.Minute
	}
	for attempt := 1; ; attempt++ {
		p, err := c.spawn(service)
		if err != nil {
			return nil, err
		}
		err = p.WaitReady(ctx, timeout)
		if err == nil {
			return p, nil
		}
		p.Kill()
		if attempt == 3 || !p.lostItsPort() {
			return nil, err
		}
	}
}

// spawn starts one more instance of service without waiting for it to be ready.
func (c *Cluster) spawn(service string) (*Process, error) {
	bin, ok := c.Bins[service]
	if !ok {
		return nil, fmt.Errorf("no binary for service %s", service)
	}
	c.mu.Lock()
	if c.seq == nil {
		c.seq = map[string]int{}
	}
	c.seq[service]++
	name := service + "-" + strconv.Itoa(c.seq[service])
	c.mu.Unlock()
	p, err := StartProcess(name, bin, filepath.Join(c.LogDir, c.Namespace+"-"+name+".log"), c.env())
	if err != nil {
		return nil, err
	}
	c.procs.Add(p)
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
