package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// This file holds the machinery of the chaos suite (chaos_test.go): a Kafka broker of its own
// that it may kill and restart, a supervisor that restarts service processes the way systemd
// or Kubernetes would, a webhook receiver that verifies and counts the notifier's requests,
// and a monitor of the consumer groups' progress that finds stalled partitions.

// KafkaNode is a single-node Apache Kafka 4.x started with the project's
// deploy/local/kafka/kafka.sh in a run directory of its own, so it can be stopped, killed
// and started again (same ports, same data) without disturbing any other broker.
type KafkaNode struct {
	// Script is the path of kafka.sh.
	Script string
	// RunDir holds the broker's configuration, data and logs.
	RunDir string
	// Brokers is the bootstrap address, known once started.
	Brokers []string
}

// StartKafkaNode fetches the broker's jars when missing and starts a fresh broker in runDir.
func StartKafkaNode(ctx context.Context, script, runDir string) (*KafkaNode, error) {
	k := &KafkaNode{Script: script, RunDir: runDir}
	if _, err := k.run(ctx, "fetch"); err != nil {
		return nil, err
	}
	if err := k.Start(ctx); err != nil {
		return nil, err
	}
	addr, err := k.run(ctx, "bootstrap")
	if err != nil {
		return nil, err
	}
	k.Brokers = []string{strings.TrimSpace(addr)}
	return k, nil
}

func (k *KafkaNode) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, k.Script, args...)
	// The remembered ports of the run dir, never the caller's KAFKA_PORT.
	cmd.Env = append(os.Environ(), "KAFKA_RUN_DIR="+k.RunDir, "KAFKA_PORT=", "KAFKA_CONTROLLER_PORT=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kafka.sh %s (run dir %s): %w\n%s", strings.Join(args, " "), k.RunDir, err, out)
	}
	return string(out), nil
}

// Start starts the broker (again) and waits until it is ready.
func (k *KafkaNode) Start(ctx context.Context) error {
	_, err := k.run(ctx, "start")
	return err
}

// Stop shuts the broker down cleanly (a controlled shutdown).
func (k *KafkaNode) Stop(ctx context.Context) error {
	_, err := k.run(ctx, "stop")
	return err
}

// Kill ends the broker's JVM with SIGKILL, as a crash would, and waits until it is gone.
func (k *KafkaNode) Kill() error {
	b, err := os.ReadFile(filepath.Join(k.RunDir, "kafka.pid"))
	if err != nil {
		return fmt.Errorf("reading the broker's pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("broker pid file: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing broker pid %d: %w", pid, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("broker pid %d still there 30s after SIGKILL", pid)
		}
	}
}

// Clean stops the broker and deletes its run directory.
func (k *KafkaNode) Clean(ctx context.Context) error {
	_, err := k.run(ctx, "clean")
	return err
}

// ExitKind says why a supervised process ended.
type ExitKind string

// Exit kinds.
const (
	ExitKilled   ExitKind = "killed"   // SIGKILLed by the suite
	ExitPromoted ExitKind = "promoted" // exit code 3: the active namespace changed
	ExitStopped  ExitKind = "stopped"  // stopped by the suite (scale-down, shutdown)
	ExitCrashed  ExitKind = "crashed"  // anything else: a failure of the service
)

// Exit is one end of a supervised process.
type Exit struct {
	Service string
	Name    string
	At      time.Time
	Kind    ExitKind
	Err     string
	Log     string
}

// Supervisor keeps service instances of a Cluster running: whenever one ends it starts a
// new one, as a process supervisor would (a SIGKILLed service comes back, one that exited
// with code 3 after a promote comes back on the new namespace). It records every exit.
type Supervisor struct {
	Cluster *Cluster
	// Backoff is the pause before restarting a crashed process (default one second); killed
	// and promoted ones restart at once.
	Backoff time.Duration

	mu       sync.Mutex
	slots    []*slot
	exits    []Exit
	starts   int
	stopping bool
	wg       sync.WaitGroup
}

type slot struct {
	service string
	proc    *Process
	killing bool
	removed bool
}

// Add starts a supervised instance of service, waits until it is ready and returns its slot.
func (s *Supervisor) Add(ctx context.Context, service string) (int, error) {
	p, err := s.Cluster.spawn(service)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	sl := &slot{service: service, proc: p}
	s.slots = append(s.slots, sl)
	i := len(s.slots) - 1
	s.starts++
	s.mu.Unlock()
	s.wg.Add(1)
	go s.watch(sl)
	return i, p.WaitReady(ctx, s.readyTimeout())
}

func (s *Supervisor) readyTimeout() time.Duration {
	if s.Cluster.ReadyTimeout > 0 {
		return s.Cluster.ReadyTimeout
	}
	return 2 * time.Minute
}

func (s *Supervisor) watch(sl *slot) {
	defer s.wg.Done()
	backoff := s.Backoff
	if backoff == 0 {
		backoff = time.Second
	}
	for {
		s.mu.Lock()
		p := sl.proc
		s.mu.Unlock()
		<-p.done
		s.mu.Lock()
		e := Exit{Service: sl.service, Name: p.Name, At: time.Now(), Log: p.LogPath}
		var exit *exec.ExitError
		switch {
		case s.stopping || sl.removed:
			e.Kind = ExitStopped
		case sl.killing:
			e.Kind = ExitKilled
		case errors.As(p.err, &exit) && exit.ExitCode() == 3:
			e.Kind = ExitPromoted
		default:
			e.Kind = ExitCrashed
		}
		if p.err != nil {
			e.Err = p.err.Error()
		}
		sl.killing = false
		s.exits = append(s.exits, e)
		done := s.stopping || sl.removed
		s.mu.Unlock()
		if done {
			return
		}
		if e.Kind == ExitCrashed {
			time.Sleep(backoff)
		}
		for {
			s.mu.Lock()
			if s.stopping || sl.removed {
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			np, err := s.Cluster.spawn(sl.service)
			if err == nil {
				s.mu.Lock()
				sl.proc = np
				s.starts++
				s.mu.Unlock()
				break
			}
			time.Sleep(backoff)
		}
	}
}

// Slots returns the slots of service's running instances.
func (s *Supervisor) Slots(service string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for i, sl := range s.slots {
		if sl.service == service && !sl.removed {
			out = append(out, i)
		}
	}
	return out
}

// Kill SIGKILLs the process of slot i (the supervisor restarts it) and returns it.
func (s *Supervisor) Kill(i int) *Process {
	s.mu.Lock()
	sl := s.slots[i]
	sl.killing = true
	p := sl.proc
	s.mu.Unlock()
	p.Kill()
	return p
}

// Remove stops the process of slot i with SIGTERM and no longer restarts it.
func (s *Supervisor) Remove(i int, timeout time.Duration) error {
	s.mu.Lock()
	sl := s.slots[i]
	sl.removed = true
	p := sl.proc
	s.mu.Unlock()
	return p.Stop(timeout)
}

// WaitReady waits until every supervised process answers /readyz: the current ones, and the
// replacements of those that end meanwhile.
func (s *Supervisor) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		var procs []*Process
		for _, sl := range s.slots {
			if !sl.removed {
				procs = append(procs, sl.proc)
			}
		}
		s.mu.Unlock()
		ready := true
		for _, p := range procs {
			if err := p.WaitReady(ctx, time.Until(deadline)); err != nil {
				if done, _ := p.Exited(); !done || time.Now().After(deadline) {
					return err
				}
				ready = false // replaced meanwhile: look again
				break
			}
		}
		if ready {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Exits returns every exit so far.
func (s *Supervisor) Exits() []Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.exits)
}

// Starts is how many processes the supervisor started, first starts included.
func (s *Supervisor) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// StopAll stops every supervised process with SIGTERM (SIGKILL after timeout) and ends the
// supervision.
func (s *Supervisor) StopAll(timeout time.Duration) error {
	s.mu.Lock()
	s.stopping = true
	var procs []*Process
	for _, sl := range s.slots {
		procs = append(procs, sl.proc)
	}
	s.mu.Unlock()
	var g Group
	for _, p := range procs {
		g.Add(p)
	}
	err := g.StopAll(timeout)
	s.wg.Wait()
	return err
}

// WebhookRequest is one request the receiver got.
type WebhookRequest struct {
	Key     string
	Kind    string
	Attempt string
	At      time.Time
	// Status is what the receiver answered.
	Status int
	// Err is why the signature was refused, if it was.
	Err string
}

// WebhookReceiver is the notifier's webhook endpoint in the chaos suite: it verifies each
// request's signature with notifier.Verify, answers 401 to a bad one, 503 to the first attempt
// of one action in FailEvery (to exercise retries) and 200 otherwise, and records everything.
type WebhookReceiver struct {
	Secret    []byte
	Tolerance time.Duration
	FailEvery int

	mu       sync.Mutex
	requests []WebhookRequest
	seen     map[string]bool
}

// ServeHTTP implements http.Handler.
func (r *WebhookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	rec := WebhookRequest{Key: req.Header.Get(notifier.HeaderIdempotencyKey), Kind: req.Header.Get(notifier.HeaderKind),
		Attempt: req.Header.Get(notifier.HeaderAttempt), At: time.Now(), Status: http.StatusOK}
	tolerance := r.Tolerance
	if tolerance == 0 {
		tolerance = 5 * time.Minute
	}
	if err == nil {
		err = notifier.Verify(r.Secret, req.Header.Get(notifier.HeaderTimestamp), rec.Key,
			req.Header.Get(notifier.HeaderSignature), body, time.Now(), tolerance)
	}
	r.mu.Lock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	switch {
	case err != nil:
		rec.Status, rec.Err = http.StatusUnauthorized, err.Error()
	case !r.seen[rec.Key] && r.FailEvery > 0 && keyHash(rec.Key)%uint64(r.FailEvery) == 0:
		rec.Status = http.StatusServiceUnavailable
	}
	r.seen[rec.Key] = true
	r.requests = append(r.requests, rec)
	r.mu.Unlock()
	w.WriteHeader(rec.Status)
}

func keyHash(s string) uint64 {
	h := sha256.Sum256([]byte(s))
	return binary.BigEndian.Uint64(h[:8])
}

// Requests returns every request so far, in arrival order.
func (r *WebhookReceiver) Requests() []WebhookRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// PartitionKey names one input partition by the service consuming it.
type PartitionKey struct {
	Service   string
	Partition int
}

func (k PartitionKey) String() string { return k.Service + "/" + strconv.Itoa(k.Partition) }

// Stall is an interval in which a partition had records left and its group's committed
// offset did not move.
type Stall struct {
	Partition PartitionKey
	From, To  time.Time
	// Left is the lag when the stall began.
	Left int64
}

// Duration is the stall's length.
func (s Stall) Duration() time.Duration { return s.To.Sub(s.From) }

// LagMonitor samples, every Interval, each consumer group's committed offset and each input
// partition's end offset, and turns the samples into stalls.
type LagMonitor struct {
	Admin *stream.Admin
	// Topic is the input topic of a consumer service.
	Topic func(service string) string
	// Group is the consumer group of a service now (it changes with a promote).
	Group    func(service string) string
	Services []string
	Interval time.Duration

	mu       sync.Mutex
	open     map[PartitionKey]*partState
	stalls   []Stall
	progress map[PartitionKey][]time.Time
	errs     int
	last     time.Time
}

type partState struct {
	group     string
	committed int64
	since     time.Time
	left      int64
	stalled   bool
}

// Run samples until ctx ends.
func (m *LagMonitor) Run(ctx context.Context) {
	interval := m.Interval
	if interval == 0 {
		interval = 500 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.sample(ctx)
		select {
		case <-ctx.Done():
			m.close(time.Now())
			return
		case <-t.C:
		}
	}
}

func (m *LagMonitor) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	type obs struct {
		key            PartitionKey
		group          string
		committed, end int64
	}
	var got []obs
	for _, svc := range m.Services {
		topic, group := m.Topic(svc), m.Group(svc)
		end, err := m.Admin.EndOffsets(ctx, topic)
		if err != nil {
			m.failed()
			return
		}
		committed, err := m.Admin.GroupOffsets(ctx, group, topic)
		if err != nil {
			m.failed()
			return
		}
		for p, e := range end {
			c, ok := committed[p]
			if !ok || c < 0 {
				c = 0
			}
			got = append(got, obs{PartitionKey{svc, p}, group, c, e})
		}
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open == nil {
		m.open = map[PartitionKey]*partState{}
		m.progress = map[PartitionKey][]time.Time{}
	}
	m.last = now
	for _, o := range got {
		st, ok := m.open[o.key]
		left := max(o.end-o.committed, 0)
		if ok && st.group == o.group && o.committed > st.committed {
			m.progress[o.key] = append(m.progress[o.key], now)
		}
		if !ok || st.group != o.group || st.committed != o.committed || left == 0 {
			if ok && st.stalled {
				m.stalls = append(m.stalls, Stall{Partition: o.key, From: st.since, To: now, Left: st.left})
			}
			m.open[o.key] = &partState{group: o.group, committed: o.committed, since: now, left: left, stalled: left > 0}
			continue
		}
		if !st.stalled && left > 0 {
			st.stalled, st.since, st.left = true, now, left
		}
	}
}

func (m *LagMonitor) failed() {
	m.mu.Lock()
	m.errs++
	m.mu.Unlock()
}

func (m *LagMonitor) close(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, st := range m.open {
		if st.stalled {
			m.stalls = append(m.stalls, Stall{Partition: k, From: st.since, To: now, Left: st.left})
		}
	}
	m.open = nil
}

// Stalls returns every stall observed (open ones up to the last sample), and how many
// samples failed (broker unreachable).
func (m *LagMonitor) Stalls() ([]Stall, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.stalls)
	for k, st := range m.open {
		if st.stalled {
			out = append(out, Stall{Partition: k, From: st.since, To: m.last, Left: st.left})
		}
	}
	return out, m.errs
}

// Progress returns, per partition, the sample times at which its group's committed offset
// had moved on since the sample before.
func (m *LagMonitor) Progress() map[PartitionKey][]time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[PartitionKey][]time.Time, len(m.progress))
	for k, v := range m.progress {
		out[k] = slices.Clone(v)
	}
	return out
}

// Fault is one injected fault: from its injection to the end of its repair (the process or
// server back and ready).
type Fault struct {
	Kind, Target string
	From, To     time.Time
	// Affects are the consumer services whose partitions the fault can hold up: nil means
	// all (Kafka, Redis, a promote), empty none (a kill of the relay, sweeper or notifier).
	Affects []string
}

// Attribution is the stalls of a run set against its faults.
type Attribution struct {
	// Free are the stalls no fault explains: the ones poison, corrupt states or the pipeline
	// itself caused.
	Free []Stall
	// Recovery is, per fault (same index), how long after its repair the longest stall it
	// explains lasted (zero when it caused none). A stall several faults explain counts for
	// the latest of them only.
	Recovery []time.Duration
}

// Attribute sets stalls against faults. A fault explains a stall of a partition it affects
// when the stall overlaps the fault's window, or begins after it before the partition made
// any progress since the repair: a consumer that is ready again has not necessarily rejoined
// its group and resumed (a killed member's partitions wait for its session to expire), and
// records that arrive in between wait for it. Progress seen within settle of the repair (a
// sample period or two) is not counted: a sample may report a commit made before the fault.
func Attribute(stalls []Stall, faults []Fault, progress map[PartitionKey][]time.Time, settle time.Duration) Attribution {
	a := Attribution{Recovery: make([]time.Duration, len(faults))}
	for _, s := range stalls {
		owner := -1
		for i, f := range faults {
			if f.Affects != nil && !slices.Contains(f.Affects, s.Partition.Service) {
				continue
			}
			if s.To.Before(f.From) {
				continue
			}
			if s.From.After(f.To) && progressed(progress[s.Partition], f.To.Add(settle), s.From) {
				continue
			}
			if owner < 0 || f.From.After(faults[owner].From) {
				owner = i
			}
		}
		if owner < 0 {
			a.Free = append(a.Free, s)
			continue
		}
		a.Recovery[owner] = max(a.Recovery[owner], s.To.Sub(faults[owner].To))
	}
	return a
}

// progressed reports whether one of times is in [from, to].
func progressed(times []time.Time, from, to time.Time) bool {
	for _, t := range times {
		if !t.Before(from) && !t.After(to) {
			return true
		}
	}
	return false
}
