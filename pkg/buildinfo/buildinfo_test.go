package buildinfo

import (
	"strings"
	"testing"
)

func TestGetNeverReturnsEmptyFields(t *testing.T) {
	i := Get()
	for name, v := range map[string]string{"version": i.Version, "commit": i.Commit, "date": i.Date, "go": i.GoVersion} {
		if v == "" {
			t.Errorf("%s is empty in %+v", name, i)
		}
	}
	if !strings.Contains(i.String(), i.Version) || !strings.Contains(i.String(), i.Commit) {
		t.Errorf("String() = %q lacks the version or commit of %+v", i.String(), i)
	}
}
