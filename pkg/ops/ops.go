// Package ops serves what operators and orchestrators poll on every service: Prometheus
// metrics on /metrics, liveness on /healthz and readiness on /readyz (the service's
// dependencies answer).
//
// With a bearer token (RequireToken, from OPS_BEARER_TOKEN or OPS_BEARER_TOKEN_FILE) every
// request needs "Authorization: Bearer <token>" except two, which probes must reach without
// one: /healthz (it only says ok), and /readyz without an Authorization header, which answers
// 200 "ready" or 503 "not ready" but not which dependency failed or why. Anything else
// (/metrics, /readyz's details, any other path) answers 401 without the token.
package ops

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/buildinfo"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Check is a readiness probe of one dependency; it returns nil when the dependency answers.
type Check func(ctx context.Context) error

// Server is the operations HTTP server of one service.
type Server struct {
	Registry *prometheus.Registry
	log      *zap.Logger
	mu       sync.Mutex
	checks   map[string]Check
	// tokenHash is the SHA-256 of the required bearer token; nil: no token required.
	tokenHash []byte
	// Profiling serves net/http/pprof under /debug/pprof/ (config PPROF).
	Profiling bool
}

// MinTokenLen is the shortest bearer token accepted.
const MinTokenLen = 16

// ErrBadToken reports an unusable bearer token.
var ErrBadToken = errors.New("ops bearer token")

// ValidateToken accepts a bearer token of MinTokenLen to 4096 visible ASCII characters (no
// spaces), which any HTTP client and scraper can send unchanged.
func ValidateToken(token string) error {
	if len(token) < MinTokenLen || len(token) > 4096 {
		return fmt.Errorf("%w: want %d to 4096 characters, got %d", ErrBadToken, MinTokenLen, len(token))
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: only visible ASCII characters, no spaces (byte %d is %#x)", ErrBadToken, i, c)
		}
	}
	return nil
}

// LoadSecretFile reads a secret from a file (a mounted secret), surrounding white space such
// as the trailing newline dropped; an empty file is an error.
func LoadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the secret: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// LoadToken returns the bearer token set directly (token) or in a file (path; surrounding
// white space, such as the trailing newline of a mounted secret, is dropped), validated; ""
// when neither is set. Setting both is an error: one would silently win.
func LoadToken(token, path string) (string, error) {
	switch {
	case token != "" && path != "":
		return "", fmt.Errorf("%w: set the token or a file holding it, not both", ErrBadToken)
	case path != "":
		var err error
		if token, err = LoadSecretFile(path); err != nil {
			return "", fmt.Errorf("%w: %w", ErrBadToken, err)
		}
	case token == "":
		return "", nil
	}
	if err := ValidateToken(token); err != nil {
		return "", err
	}
	return token, nil
}

// SetToken sets the Authorization header of a request to an ops server requiring token; an
// empty token leaves the request as it is.
func SetToken(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

// NewServer returns a server with a fresh registry holding the Go runtime and process
// collectors and the loyalty_build_info gauge.
func NewServer(log *zap.Logger) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoGauge())
	return &Server{Registry: reg, log: log, checks: map[string]Check{}}
}

// AddCheck registers a readiness check.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// RequireToken makes the handlers Handler returns from then on require token, as described
// in the package documentation; call it before Serve. An empty token requires none.
func (s *Server) RequireToken(token string) error {
	if token == "" {
		s.tokenHash = nil
		return nil
	}
	if err := ValidateToken(token); err != nil {
		return err
	}
	h := sha256.Sum256([]byte(token))
	s.tokenHash = h[:]
	return nil
}

// authorized reports whether r carries the bearer token whose SHA-256 is tokenHash (nil: no
// token is required). Both sides are hashed before the constant-time comparison, so neither
// the token nor its length leaks through timing.
func authorized(r *http.Request, tokenHash []byte) bool {
	if tokenHash == nil {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(h[:], tokenHash) == 1
}

// guard answers 401 to requests without the token, except those probes make: /healthz, and
// /readyz without an Authorization header (answered without details). A wrong token is
// refused everywhere but /healthz, so a misconfigured scraper notices.
func guard(next http.Handler, tokenHash []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
		case r.URL.Path == "/readyz" && r.Header.Get("Authorization") == "":
		case authorized(r, tokenHash):
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="ops"`)
			http.Error(w, "unauthorized: this endpoint needs Authorization: Bearer <OPS_BEARER_TOKEN>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Handler returns the HTTP handler, guarded by the token when one is required.
func (s *Server) Handler() http.Handler {
	tokenHash := s.tokenHash
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		s.mu.Lock()
		checks := make(map[string]Check, len(s.checks))
		for k, v := range s.checks {
			checks[k] = v
		}
		s.mu.Unlock()
		failed := false
		body := ""
		for name, c := range checks {
			if err := c(ctx); err != nil {
				failed = true
				body += name + ": " + err.Error() + "\n"
			} else {
				body += name + ": ok\n"
			}
		}
		if !authorized(r, tokenHash) { // an unauthenticated probe: the verdict, not the details
			body = "ready\n"
			if failed {
				body = "not ready\n"
			}
		}
		if failed {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(body))
	})
	if s.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if tokenHash == nil {
		return mux
	}
	return guard(mux, tokenHash)
}

// Serve listens on addr until ctx is cancelled. An empty addr disables the server.
func (s *Server) Serve(ctx context.Context, addr string) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	s.log.Debug("ops server listening", zap.String("addr", l.Addr().String()))
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// buildInfoGauge is loyalty_build_info, always 1, labelled with the binary's version, commit,
// build date and Go version (the same values as --version), so a dashboard shows what runs.
func buildInfoGauge() prometheus.Collector {
	bi := buildinfo.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "loyalty_build_info",
		Help: "Build of the running binary: version, commit, build date and Go version as labels; always 1.",
		ConstLabels: prometheus.Labels{
			"version": bi.Version, "commit": bi.Commit, "date": bi.Date, "goversion": bi.GoVersion,
		},
	})
	g.Set(1)
	return g
}
