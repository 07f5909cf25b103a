package devharness

import (
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCPUReadingsSeeThisProcessWorkAndFindItsListener: the /proc readings count the CPU time
// a thread burned in this process and the machine, and a loopback listener's port leads back
// to this process.
func TestCPUReadingsSeeThisProcessWorkAndFindItsListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m, err := startCPU(map[string]int{"self": os.Getpid(), "absent": 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := burnThreadCPU(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	procs, busy, share, err := m.report(1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[0].Name != "self" || procs[0].Seconds < 0.27 || procs[0].Seconds > 5 {
		t.Fatalf("300 ms of CPU burned measured as %+v", procs)
	}
	if procs[0].MicrosPerEvent != procs[0].Seconds*1e6/1000 || busy < procs[0].Seconds*0.8 || share <= 0 || share > 1 {
		t.Fatalf("per event %v of %v s; machine busy %v s, share %v", procs[0].MicrosPerEvent, procs[0].Seconds, busy, share)
	}
	// The peak RSS is at least the 64 MiB this test touches now, read again.
	ballast := make([]byte, 64<<20)
	for i := range ballast {
		ballast[i] = byte(i)
	}
	procs, _, _, _ = m.report(1000)
	if procs[0].PeakRSSBytes < 64<<20 || procs[0].PeakRSSBytes > 64<<30 {
		t.Fatalf("peak RSS %d bytes after touching 64 MiB", procs[0].PeakRSSBytes)
	}
	runtime.KeepAlive(ballast)
	if pid := listenerPid(ln.Addr().(*net.TCPAddr).Port); pid != os.Getpid() {
		t.Fatalf("the listener on %s belongs to pid %d, not this process (%d)", ln.Addr(), pid, os.Getpid())
	}
}

// TestCPUReadingsCountReapedChildrenApart: a child's CPU time (Redis's AOF rewrites are
// forked children) shows as a row of its own once the parent has waited for it.
func TestCPUReadingsCountReapedChildrenApart(t *testing.T) {
	m, err := startCPU(map[string]int{"self": os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	busy := exec.Command("sh", "-c", `i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done`)
	if out, err := busy.CombinedOutput(); err != nil {
		t.Fatalf("busy child: %v %s", err, out)
	}
	procs, _, _, err := m.report(1000)
	if err != nil {
		t.Fatal(err)
	}
	var child *ProcessCPU
	for i := range procs {
		if procs[i].Name == "self children" {
			child = &procs[i]
		}
	}
	if child == nil || child.Seconds < 0.05 || child.MicrosPerEvent != child.Seconds*1e6/1000 {
		t.Fatalf("a busy child measured as %+v (all rows %+v)", child, procs)
	}
}

// TestCPUReadingsSplitARuntimesThreadsByKind: a thread named like a JVM's C2 compiler is
// counted apart, inside its process's time, and threads of other names are not. Both threads
// burn a set amount of their own CPU time (not of wall time, which a loaded machine would not
// turn into CPU), and the compiler thread is named before the start reading, as a JVM's are
// from their creation.
func TestCPUReadingsSplitARuntimesThreadsByKind(t *testing.T) {
	named, start, done, release := make(chan error, 1), make(chan struct{}), make(chan error, 1), make(chan struct{})
	defer close(release)
	go func() {
		// The thread stays locked to this goroutine until the reading below, so its name
		// and its time stay its own.
		runtime.LockOSThread()
		tid := syscall.Gettid()
		if err := os.WriteFile(fmt.Sprintf("/proc/self/task/%d/comm", tid), []byte("C2 CompilerThread0"), 0o644); err != nil {
			named <- err
			return
		}
		named <- nil
		<-start
		done <- burnThreadCPU(300 * time.Millisecond)
		<-release
	}()
	if err := <-named; err != nil {
		t.Fatal(err)
	}
	m, err := startCPU(map[string]int{"self": os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	close(start)
	if err := burnThreadCPU(200 * time.Millisecond); err != nil { // another thread: not compiler time
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	procs, _, _, err := m.report(1000)
	if err != nil {
		t.Fatal(err)
	}
	self := procs[slices.IndexFunc(procs, func(p ProcessCPU) bool { return p.Name == "self" })]
	if len(self.Threads) != 1 || self.Threads[0].Kind != "JIT compiler" {
		t.Fatalf("threads of this process: %+v, want one JIT compiler row", self.Threads)
	}
	// Per-thread times are in clock ticks (10 ms): a few ticks of slack either way.
	jit := self.Threads[0]
	if jit.Seconds < 0.27 || jit.Seconds > 0.45 || self.Seconds < jit.Seconds+0.15 || jit.MicrosPerEvent != jit.Seconds*1e6/1000 {
		t.Fatalf("a thread named as a compiler that burned 0.3 s measured as %+v, the process (0.2 s more on another thread) as %.2f s", jit, self.Seconds)
	}
}

// burnThreadCPU spins on the calling goroutine's thread, locked to it meanwhile, until the
// thread has used d of CPU time (from its /proc stat).
func burnThreadCPU(d time.Duration) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	path := fmt.Sprintf("/proc/self/task/%d/stat", syscall.Gettid())
	used := func() (float64, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		own, _, err := parseStat(string(b))
		return own, err
	}
	from, err := used()
	if err != nil {
		return err
	}
	x := 1.0
	for {
		now, err := used()
		if err != nil {
			return err
		}
		if now-from >= d.Seconds() {
			burnSink.Store(math.Float64bits(x)) // the loop's result is used
			return nil
		}
		for range 100_000 {
			x = x*1.0000001 + 1e-9
		}
	}
}

var burnSink atomic.Uint64
