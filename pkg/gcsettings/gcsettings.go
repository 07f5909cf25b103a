// Package gcsettings applies the Go garbage collector's settings when a service or a tool
// starts: the collector's target (GOGC, which the services raise to 400) and a soft memory
// limit derived from the container's memory limit.
//
// A higher GOGC buys CPU with memory: the heap may grow to five times what is live between
// collections, and under a backlog a consumer's live heap holds its fetched and held-back
// records. Without a limit the Go runtime does not know the container's (Go 1.26 reads the
// cgroup for GOMAXPROCS, not for memory), so a service could outgrow it and be killed. With
// the limit set, the collector runs more often as the heap nears it instead.
package gcsettings

import (
	"errors"
	"math"
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"
)

// Settings are the collector's settings from the configuration.
type Settings struct {
	// GCPercent is GOGC's target (-1: off).
	GCPercent int
	// MemoryLimitRatio is the share of the container's memory limit the Go heap is held
	// under (MEMORY_LIMIT_RATIO, in (0, 1]); 0 leaves the runtime's limit alone.
	MemoryLimitRatio float64
}

// Source says where the memory limit in force came from.
type Source string

const (
	// SourceEnvironment is GOMEMLIMIT, which the Go runtime applied.
	SourceEnvironment Source = "GOMEMLIMIT"
	// SourceContainer is the container's limit times MemoryLimitRatio.
	SourceContainer Source = "container"
	// SourceNone is no limit: none in the container, or MemoryLimitRatio 0.
	SourceNone Source = "none"
)

// Applied is what Apply set.
type Applied struct {
	// MemoryLimit is the Go runtime's soft memory limit in bytes (math.MaxInt64: none).
	MemoryLimit int64
	// ContainerLimit is the container's memory limit in bytes (0: none found, or not read).
	ContainerLimit uint64
	Source         Source
}

// Apply sets GOGC's target and the soft memory limit, and logs the limit. An explicit
// GOMEMLIMIT wins; otherwise the limit is MemoryLimitRatio of the container's (cgroup v2
// memory.max or v1 memory.limit_in_bytes, read from the process's own cgroup). Where there is
// no cgroup, or it cannot be read, the runtime's limit stays as it is: a service never fails
// to start for want of a limit.
func Apply(s Settings, log *zap.Logger) Applied {
	return apply(s, os.Getenv("GOMEMLIMIT"), memlimit.FromCgroup, log)
}

// apply is Apply with the environment's GOMEMLIMIT and the container's limit given.
func apply(s Settings, envLimit string, container memlimit.Provider, log *zap.Logger) Applied {
	debug.SetGCPercent(s.GCPercent)
	current := debug.SetMemoryLimit(-1)
	switch {
	case envLimit != "":
		log.Info("memory limit from GOMEMLIMIT", zap.String("GOMEMLIMIT", envLimit), zap.Int64("bytes", current))
		return Applied{MemoryLimit: current, Source: SourceEnvironment}
	case s.MemoryLimitRatio == 0:
		return Applied{MemoryLimit: current, Source: SourceNone}
	}
	limit, err := container()
	switch {
	case errors.Is(err, memlimit.ErrNoLimit), err == nil && limit == 0:
		log.Debug("no container memory limit; the Go heap is unlimited")
		return Applied{MemoryLimit: current, Source: SourceNone}
	case err != nil:
		// No cgroup (a developer's machine, another OS) or one that cannot be read.
		log.Debug("container memory limit not read; the Go heap is unlimited", zap.Error(err))
		return Applied{MemoryLimit: current, Source: SourceNone}
	}
	heap := float64(limit) * s.MemoryLimitRatio
	if heap >= math.MaxInt64 {
		return Applied{MemoryLimit: current, ContainerLimit: limit, Source: SourceNone}
	}
	debug.SetMemoryLimit(int64(heap))
	log.Info("memory limit from the container's", zap.Uint64("container_bytes", limit),
		zap.Float64("ratio", s.MemoryLimitRatio), zap.Int64("bytes", int64(heap)))
	return Applied{MemoryLimit: int64(heap), ContainerLimit: limit, Source: SourceContainer}
}
