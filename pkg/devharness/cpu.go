package devharness

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CPU accounting for bench-e2e, read from Linux's /proc: the CPU time (user + system, every
// thread) of each process of the pipeline — the broker and Redis found by their listening
// port, each service by its pid, the benchmark process itself as the generator — and of the
// whole machine, between two readings.

// ProcessCPU is one process's CPU time over the measured run.
type ProcessCPU struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
	// Seconds is user + system CPU time over the run; MicrosPerEvent that per input event.
	Seconds        float64 `json:"cpu_seconds"`
	MicrosPerEvent float64 `json:"cpu_us_per_event"`
	// Threads is the part of Seconds spent by kinds of threads that are a runtime's own work
	// rather than the process's (threadKinds: a JVM's JIT compilers and garbage collectors),
	// largest first.
	Threads []ThreadCPU `json:"threads,omitempty"`
	// PeakRSSBytes is the most resident memory the process has had since it started
	// (VmHWM), read at the end of the run: the memory side of its CPU cost.
	PeakRSSBytes int64 `json:"peak_rss_bytes,omitempty"`
}

// peakRSS is the process's peak resident set size (VmHWM in /proc/<pid>/status), in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest) // "<n> kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("/proc/%d/status: VmHWM %q", pid, rest)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

// ThreadCPU is the CPU time of one kind of thread of a process over the measured run.
type ThreadCPU struct {
	Kind           string  `json:"kind"`
	Seconds        float64 `json:"cpu_seconds"`
	MicrosPerEvent float64 `json:"cpu_us_per_event"`
}

// threadKinds names kinds of threads by the start of their name (the kernel's comm, 15
// bytes): a JVM's JIT compilers and garbage collectors (G1's). A freshly started broker
// spends a large share of its CPU compiling its hot paths (bench-e2e 300k events on a broker
// 10 minutes old: C2 compiler threads about 40% of the broker's CPU), which a long-running
// broker has long paid; the split shows how much of the broker's row that is.
var threadKinds = []struct{ kind, prefix string }{
	{"JIT compiler", "C1 CompilerThre"},
	{"JIT compiler", "C2 CompilerThre"},
	{"garbage collector", "GC Thread"},
	{"garbage collector", "G1 "},
}

// threadKind is the kind of a thread named comm, or "" for none of threadKinds.
func threadKind(comm string) string {
	for _, k := range threadKinds {
		if strings.HasPrefix(comm, k.prefix) {
			return k.kind
		}
	}
	return ""
}

// threadCPUSeconds returns the user + system time so far of each thread of pid whose kind
// threadKind names, by thread id, with its kind.
func threadCPUSeconds(pid int) (map[int]ThreadCPU, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[int]ThreadCPU{}
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(dir, e.Name(), "comm"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		kind := threadKind(strings.TrimSpace(string(comm)))
		if kind == "" {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue
		}
		own, _, err := parseStat(string(stat))
		if err != nil {
			return nil, fmt.Errorf("%s/%d: %w", dir, tid, err)
		}
		out[tid] = ThreadCPU{Kind: kind, Seconds: own}
	}
	return out, nil
}

// clockTicks is the kernel's clock tick rate (AT_CLKTCK of the auxiliary vector; 100 on
// every common Linux).
var clockTicks = func() float64 {
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err == nil {
		for i := 0; i+16 <= len(b); i += 16 {
			if k, v := binary.NativeEndian.Uint64(b[i:]), binary.NativeEndian.Uint64(b[i+8:]); k == atClkTck && v > 0 {
				return float64(v)
			}
		}
	}
	return 100
}()

// processCPUSeconds is a process's user + system time so far, and that of its children it
// has waited for (Redis's AOF rewrites and snapshots are forked children).
func processCPUSeconds(pid int) (own, children float64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	own, children, err = parseStat(string(b))
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return own, children, nil
}

// parseStat reads user + system time and that of the waited-for children from the contents
// of a stat file of /proc (a process's or a thread's).
func parseStat(s string) (own, children float64, err error) {
	// The command name (field 2) is in parentheses and may hold spaces: count from its end.
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, 0, errors.New("no command name")
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15, cutime and cstime 16, 17.
	f := strings.Fields(s[end+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("%d fields", len(f)+2)
	}
	var t [4]float64
	for i := range t {
		if t[i], err = strconv.ParseFloat(f[11+i], 64); err != nil {
			return 0, 0, err
		}
	}
	return (t[0] + t[1]) / clockTicks, (t[2] + t[3]) / clockTicks, nil
}

// machineCPUSeconds is the CPU time the machine spent busy (every state but idle and iowait)
// and in total, over all CPUs, since boot.
func machineCPUSeconds() (busy, total float64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, errors.New("/proc/stat is empty")
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q", sc.Text())
	}
	// user nice system idle iowait irq softirq steal (guest time is inside user).
	for i, v := range fields[1:min(len(fields), 9)] {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += x
		if i != 3 && i != 4 {
			busy += x
		}
	}
	return busy / clockTicks, total / clockTicks, nil
}

// listenerPid finds the local process listening on TCP port port (the broker, Redis), by the
// socket inode of its listening entry in /proc/net/tcp{,6}; 0 when none is visible (another
// machine, or another user's process).
func listenerPid(port int) int {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && inodes[target] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid
		}
	}
	return 0
}

// cpuMeter reads the CPU time of named processes and of the machine at the start of a run and
// reports the differences at its end.
type cpuMeter struct {
	procs       []ProcessCPU // Seconds holds the start reading until report
	children    []float64    // the children's start readings, by procs' index
	threads     []map[int]ThreadCPU
	busy, total float64
}

// startCPU takes the start readings of pids (name → pid; a pid of 0 is left out).
func startCPU(pids map[string]int) (*cpuMeter, error) {
	m := &cpuMeter{}
	for name, pid := range pids {
		if pid == 0 {
			continue
		}
		s, c, err := processCPUSeconds(pid)
		if err != nil {
			return nil, fmt.Errorf("reading the CPU time of %s (pid %d): %w", name, pid, err)
		}
		threads, err := threadCPUSeconds(pid)
		if err != nil {
			return nil, fmt.Errorf("reading the CPU time of the threads of %s (pid %d): %w", name, pid, err)
		}
		m.procs = append(m.procs, ProcessCPU{Name: name, Pid: pid, Seconds: s})
		m.children = append(m.children, c)
		m.threads = append(m.threads, threads)
	}
	var err error
	m.busy, m.total, err = machineCPUSeconds()
	return m, err
}

// threadsSince is the CPU time of the kinds of threads of m.procs[i] since the start reading,
// largest first. Threads that exited during the run are left out (a JVM stops compiler
// threads it no longer needs), so each kind's time is at least what is reported.
func (m *cpuMeter) threadsSince(i int, perEvent func(float64) float64) []ThreadCPU {
	now, err := threadCPUSeconds(m.procs[i].Pid)
	if err != nil {
		return nil
	}
	byKind := map[string]float64{}
	for tid, t := range now {
		byKind[t.Kind] += t.Seconds - m.threads[i][tid].Seconds // a thread started since: from 0
	}
	var out []ThreadCPU
	for kind, s := range byKind {
		if s > 0 {
			out = append(out, ThreadCPU{Kind: kind, Seconds: s, MicrosPerEvent: perEvent(s)})
		}
	}
	slices.SortFunc(out, func(a, b ThreadCPU) int { return cmp.Compare(b.Seconds, a.Seconds) })
	return out
}

// report returns each process's CPU seconds and µs per event since the start, largest first,
// and the machine's busy CPU seconds and busy share. The children a process forked and
// reaped meanwhile (Redis's AOF rewrites) are a row of their own, "NAME children". A process
// that has exited since is reported with -1.
func (m *cpuMeter) report(events int) (procs []ProcessCPU, busy, share float64, err error) {
	perEvent := func(s float64) float64 { return s * 1e6 / float64(max(events, 1)) }
	for i, p := range m.procs {
		s, c, err := processCPUSeconds(p.Pid)
		if err != nil {
			p.Seconds, p.MicrosPerEvent = -1, -1
		} else {
			p.Seconds = s - p.Seconds
			p.MicrosPerEvent = perEvent(p.Seconds)
			p.Threads = m.threadsSince(i, perEvent)
			p.PeakRSSBytes, _ = peakRSS(p.Pid) // a kernel thread or a vanished process has none
			if c -= m.children[i]; c > 0 {
				procs = append(procs, ProcessCPU{Name: p.Name + " children", Pid: p.Pid, Seconds: c, MicrosPerEvent: perEvent(c)})
			}
		}
		procs = append(procs, p)
	}
	slices.SortFunc(procs, func(a, b ProcessCPU) int { return cmp.Compare(b.Seconds, a.Seconds) })
	b, t, err := machineCPUSeconds()
	if err != nil {
		return procs, 0, 0, err
	}
	return procs, b - m.busy, busyShare(m.busy, m.total, b, t), nil
}

// busyShare is the machine's busy share between two readings of machineCPUSeconds (0 when no
// time passed). Busy time is part of the total, but their sums of ticks in seconds can round
// the ratio past 1.
func busyShare(busy0, total0, busy1, total1 float64) float64 {
	if total1 <= total0 {
		return 0
	}
	return min((busy1-busy0)/(total1-total0), 1)
}
