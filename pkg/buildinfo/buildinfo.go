// Package buildinfo holds the version, commit and build date of a binary. The Makefile sets
// them with -ldflags "-X"; a binary built without them (go run, go install) falls back to what
// the Go toolchain embedded (module version, VCS revision and time), and otherwise to "dev".
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Set by the linker: go build -ldflags "-X github.com/loyalty-scoring/loyalty/pkg/buildinfo.version=...".
// They are read only through Get, never assigned at run time.
var (
	version = ""
	commit  = ""
	date    = ""
)

// Info describes one build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
}

// Get returns the build's information, filling what the linker did not set from the Go
// toolchain's embedded build settings.
func Get() Info {
	info := Info{Version: version, Commit: commit, Date: date, GoVersion: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.time":
				if info.Date == "" {
					info.Date = s.Value
				}
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	if info.Date == "" {
		info.Date = "unknown"
	}
	return info
}

// String is the one-line form printed by --version.
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s)", i.Version, i.Commit, i.Date, i.GoVersion)
}
