package devharness

import (
	"net"
	"os"
	"os/exec"
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
