package testinfra

import (
	"os"
	"path/filepath"
	"testing"
)

// DataFile returns the path of name (for example "cdnow/CDNOW_sample.txt") inside the
// repository's testdata/ folder, found by walking up from the test's working directory to the
// directory holding go.mod. Every data file a test reads is in the repository; see
// testdata/README.md for each one's source, licence and conventions.
func DataFile(tb testing.TB, name string) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("finding testdata/%s: %v", name, err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("finding testdata/%s: no go.mod above the working directory", name)
		}
		dir = parent
	}
	p := filepath.Join(dir, "testdata", filepath.FromSlash(name))
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("test data file missing: %v (it is committed to the repository; see testdata/README.md)", err)
	}
	return p
}
