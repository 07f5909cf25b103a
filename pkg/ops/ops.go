// Package ops serves what operators and orchestrators poll on every service: Prometheus
// metrics on /metrics, liveness on /healthz and readiness on /readyz (the service's
// dependencies answer).
package ops

import (
	"context"
	"errors"
	"net"
	"net/http"
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

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
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
		if failed {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(body))
	})
	return mux
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
