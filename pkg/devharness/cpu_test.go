package devharness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestCPUReadingsSeeThisProcessWorkAndFindItsListener: the /proc readings count a busy loop's
// CPU time in this process and the machine, and a loopback listener's port leads back to this
// process.
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
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 1.0
	for time.Now().Before(deadline) {
		x = x*1.0000001 + 1e-9
	}
	procs, busy, share, err := m.report(1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[0].Name != "self" || procs[0].Seconds < 0.1 || procs[0].Seconds > 5 {
		t.Fatalf("a 300 ms busy loop measured as %+v (x %v)", procs, x)
	}
	if procs[0].MicrosPerEvent != procs[0].Seconds*1e6/1000 || busy < procs[0].Seconds*0.8 || share <= 0 || share > 1 {
		t.Fatalf("per event %v of %v s; machine busy %v s, share %v", procs[0].MicrosPerEvent, procs[0].Seconds, busy, share)
	}
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
// counted apart, inside its process's time, and threads of other names are not.
func TestCPUReadingsSplitARuntimesThreadsByKind(t *testing.T) {
	m, err := startCPU(map[string]int{"self": os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	busy := func(d time.Duration) float64 {
		x := 1.0
		for deadline := time.Now().Add(d); time.Now().Before(deadline); {
			x = x*1.0000001 + 1e-9
		}
		return x
	}
	done, release := make(chan error, 1), make(chan struct{})
	defer close(release)
	go func() {
		// The thread is locked and never handed back: it exits with the goroutine, so the
		// name stays with it.
		runtime.LockOSThread()
		tid := syscall.Gettid()
		if err := os.WriteFile(fmt.Sprintf("/proc/self/task/%d/comm", tid), []byte("C2 CompilerThread0"), 0o644); err != nil {
			done <- err
			return
		}
		busy(300 * time.Millisecond)
		done <- nil
		<-release // keep the thread, and so its time, until the reading below
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	busy(200 * time.Millisecond) // on other threads: not compiler time
	procs, _, _, err := m.report(1000)
	if err != nil {
		t.Fatal(err)
	}
	self := procs[slices.IndexFunc(procs, func(p ProcessCPU) bool { return p.Name == "self" })]
	if len(self.Threads) != 1 || self.Threads[0].Kind != "JIT compiler" {
		t.Fatalf("threads of this process: %+v, want one JIT compiler row", self.Threads)
	}
	jit := self.Threads[0]
	if jit.Seconds < 0.15 || jit.Seconds > self.Seconds-0.1 || jit.MicrosPerEvent != jit.Seconds*1e6/1000 {
		t.Fatalf("a 300 ms busy thread named as a compiler measured as %+v of the process's %.2f s", jit, self.Seconds)
	}
}
