package gcsettings

import (
	"errors"
	"math"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// keepRuntime restores the collector's settings a test changes.
func keepRuntime(t *testing.T) {
	t.Helper()
	limit, percent := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	debug.SetGCPercent(percent)
	t.Cleanup(func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(percent)
	})
}

func TestTheHeapIsHeldUnderTheContainersLimit(t *testing.T) {
	keepRuntime(t)
	debug.SetMemoryLimit(math.MaxInt64)
	core, logs := observer.New(zap.InfoLevel)
	got := apply(Settings{GCPercent: 400, MemoryLimitRatio: 0.9}, "", memlimit.Limit(512<<20), zap.New(core))
	want := int64(512<<20) * 9 / 10 // 483,183,820: 0.9 of it, truncated
	if got.Source != SourceContainer || got.MemoryLimit != want || got.ContainerLimit != 512<<20 {
		t.Fatalf("applied %+v; want the container's 512 MiB × 0.9 = %d", got, want)
	}
	if rt := debug.SetMemoryLimit(-1); rt != want {
		t.Errorf("the runtime's memory limit is %d, want %d", rt, want)
	}
	if p := debug.SetGCPercent(400); p != 400 {
		t.Errorf("GOGC target %d, want 400", p)
	}
	if logs.FilterMessage("memory limit from the container's").Len() != 1 {
		t.Errorf("the limit was not logged: %v", logs.All())
	}
}

func TestAnExplicitGOMEMLIMITWins(t *testing.T) {
	keepRuntime(t)
	debug.SetMemoryLimit(300 << 20) // what the runtime read from GOMEMLIMIT=300MiB
	asked := false
	container := func() (uint64, error) { asked = true; return 1 << 30, nil }
	got := apply(Settings{GCPercent: 400, MemoryLimitRatio: 0.9}, "300MiB", container, zap.NewNop())
	if got.Source != SourceEnvironment || got.MemoryLimit != 300<<20 || asked {
		t.Fatalf("applied %+v (container read: %t); want GOMEMLIMIT's 300 MiB, the container not read", got, asked)
	}
	if rt := debug.SetMemoryLimit(-1); rt != 300<<20 {
		t.Errorf("the runtime's memory limit is %d, want GOMEMLIMIT's", rt)
	}
}

func TestNoLimitLeavesTheRuntimeAlone(t *testing.T) {
	for name, c := range map[string]struct {
		ratio     float64
		container memlimit.Provider
	}{
		"ratio off":          {0, memlimit.Limit(1 << 30)},
		"no container limit": {0.9, func() (uint64, error) { return 0, memlimit.ErrNoLimit }},
		"no cgroup":          {0.9, func() (uint64, error) { return 0, memlimit.ErrCgroupsNotSupported }},
		"unreadable cgroup":  {0.9, func() (uint64, error) { return 0, errors.New("permission denied") }},
		"limit beyond int64": {1, memlimit.Limit(math.MaxUint64)},
	} {
		t.Run(name, func(t *testing.T) {
			keepRuntime(t)
			debug.SetMemoryLimit(math.MaxInt64)
			got := apply(Settings{GCPercent: 400, MemoryLimitRatio: c.ratio}, "", c.container, zap.NewNop())
			if got.Source != SourceNone || got.MemoryLimit != math.MaxInt64 {
				t.Errorf("applied %+v; want no limit", got)
			}
			if rt := debug.SetMemoryLimit(-1); rt != math.MaxInt64 {
				t.Errorf("the runtime's memory limit is %d, want none", rt)
			}
		})
	}
}
