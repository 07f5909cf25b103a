package ops

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/buildinfo"
	"go.uber.org/zap"
)

func TestMetricsCarryTheBuildInfoGauge(t *testing.T) {
	srv := httptest.NewServer(NewServer(zap.NewNop()).Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	bi := buildinfo.Get()
	var line string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "loyalty_build_info{") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no loyalty_build_info in /metrics:\n%s", body)
	}
	for _, want := range []string{`version="` + bi.Version + `"`, `commit="` + bi.Commit + `"`, `date="` + bi.Date + `"`} {
		if !strings.Contains(line, want) {
			t.Errorf("loyalty_build_info line %q lacks %s", line, want)
		}
	}
	if !strings.HasSuffix(line, " 1") {
		t.Errorf("loyalty_build_info = %q, want value 1", line)
	}
}
