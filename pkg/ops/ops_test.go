package ops

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

const testToken = "ops-token-0123456789abcdef"

// get requests path with the Authorization header auth ("" for none) and returns the status
// and body.
func get(t *testing.T, url, path, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestATokenProtectsMetricsAndReadinessDetailsButNotProbes(t *testing.T) {
	s := NewServer(zap.NewNop())
	s.AddCheck("redis", func(context.Context) error { return errors.New("dial tcp 10.1.2.3:6379: connection refused") })
	if err := s.RequireToken(testToken); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	good := "Bearer " + testToken
	cases := []struct {
		name, path, auth string
		wantCode         int
		wantBody         string // contained in the body
		notInBody        string // must not be in the body
	}{
		{"metrics without a token", "/metrics", "", http.StatusUnauthorized, "unauthorized", "loyalty_build_info"},
		{"metrics with a wrong token", "/metrics", "Bearer ops-token-0123456789abcdeX", http.StatusUnauthorized, "", "loyalty_build_info"},
		{"metrics with a prefix of the token", "/metrics", "Bearer " + testToken[:20], http.StatusUnauthorized, "", "loyalty_build_info"},
		{"metrics with the token as basic auth", "/metrics", "Basic " + testToken, http.StatusUnauthorized, "", "loyalty_build_info"},
		{"metrics with the token", "/metrics", good, http.StatusOK, "loyalty_build_info", ""},
		{"metrics with a lower-case scheme", "/metrics", "bearer " + testToken, http.StatusOK, "loyalty_build_info", ""},
		{"liveness stays open", "/healthz", "", http.StatusOK, "ok", ""},
		{"liveness ignores a wrong token", "/healthz", "Bearer nope", http.StatusOK, "ok", ""},
		{"readiness without a token: the verdict only", "/readyz", "", http.StatusServiceUnavailable, "not ready", "10.1.2.3"},
		{"readiness with a wrong token is refused", "/readyz", "Bearer ops-token-0123456789abcdeX", http.StatusUnauthorized, "", "10.1.2.3"},
		{"readiness with the token: the details", "/readyz", good, http.StatusServiceUnavailable, "redis: dial tcp 10.1.2.3:6379", ""},
		{"an unknown path is refused before it is looked up", "/debug/pprof/", "", http.StatusUnauthorized, "", ""},
		{"an unknown path with the token is not found", "/debug/pprof/", good, http.StatusNotFound, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := get(t, srv.URL, c.path, c.auth)
			if code != c.wantCode || !strings.Contains(body, c.wantBody) || (c.notInBody != "" && strings.Contains(body, c.notInBody)) {
				t.Fatalf("%s: %d %q, want %d containing %q and not %q", c.path, code, body, c.wantCode, c.wantBody, c.notInBody)
			}
		})
	}
	// SetToken is what the repository's scrapers (loyaltyctl status, bench-e2e) call.
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	SetToken(req, testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a request with SetToken: %s, want 200", resp.Status)
	}
}

func TestReadinessWithoutATokenShowsTheDetailsAndReadyAnswers200(t *testing.T) {
	s := NewServer(zap.NewNop())
	s.AddCheck("kafka", func(context.Context) error { return nil })
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	if code, body := get(t, srv.URL, "/readyz", ""); code != http.StatusOK || body != "kafka: ok\n" {
		t.Fatalf("/readyz without a token configured: %d %q, want 200 with the details", code, body)
	}
	if code, _ := get(t, srv.URL, "/metrics", ""); code != http.StatusOK {
		t.Fatalf("/metrics without a token configured: %d, want 200", code)
	}
	if err := s.RequireToken(testToken); err != nil {
		t.Fatal(err)
	}
	guarded := httptest.NewServer(s.Handler())
	defer guarded.Close()
	if code, body := get(t, guarded.URL, "/readyz", ""); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/readyz of a ready service without a token: %d %q, want 200 \"ready\"", code, body)
	}
}

func TestTokensAreValidatedAndReadFromAFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, token, path, want string
		wantErr                 bool
	}{
		{"neither: no token", "", "", "", false},
		{"the variable", testToken, "", testToken, false},
		{"the file, its newline dropped", "", file, testToken, false},
		{"both are refused", testToken, file, "", true},
		{"a missing file is refused", "", filepath.Join(dir, "missing"), "", true},
		{"an empty file is refused", "", empty, "", true},
		{"a short token is refused", "short-token", "", "", true},
		{"a token with a space is refused", "ops token 0123456789abcdef", "", "", true},
		{"a token with a control character is refused", "ops-token-0123456789\x01abcdef", "", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := LoadToken(c.token, c.path)
			if (err != nil) != c.wantErr || got != c.want {
				t.Fatalf("LoadToken = %q, %v; want %q, error %v", got, err, c.want, c.wantErr)
			}
		})
	}
	if err := NewServer(zap.NewNop()).RequireToken("short"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("RequireToken(short) = %v, want ErrBadToken", err)
	}
}

func TestProfilesAreServedOnlyWhenEnabledAndBehindTheToken(t *testing.T) {
	s := NewServer(zap.NewNop())
	s.Profiling = true
	if err := s.RequireToken(testToken); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	if code, _ := get(t, srv.URL, "/debug/pprof/allocs?debug=1", ""); code != http.StatusUnauthorized {
		t.Fatalf("an allocation profile without the token: %d, want 401", code)
	}
	if code, body := get(t, srv.URL, "/debug/pprof/allocs?debug=1", "Bearer "+testToken); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Fatalf("an allocation profile with the token: %d %.80q, want 200 and a heap profile", code, body)
	}
	if code, _ := get(t, srv.URL, "/debug/pprof/profile?seconds=1", "Bearer "+testToken); code != http.StatusOK {
		t.Fatalf("a CPU profile with the token: %d, want 200", code)
	}
}
