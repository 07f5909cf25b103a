// Package console is the loyalty console: a web UI for marketing and support, and the
// versioned JSON API behind it (docs/console.md).
//
//   - The overview shows the KPIs of the last final day, the tier, churn, segment and layer
//     mix, 12 months of trends, and the recent churn alerts and actions.
//   - The customer page shows the tier and why, the churn level with its reasons, RFM,
//     segment, value layer, CLV, P(alive), the last transitions and the notifier's decisions.
//
// The assets are embedded: no CDN, it works offline. Every request needs the bearer token or
// the basic-auth credentials the service was started with. Customer ids and data never
// appear in its logs: requests are logged by route, not by path.
package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/profile"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

//go:embed web
var assets embed.FS

// ErrNotFound is the Source's error for an unknown customer.
var ErrNotFound = errors.New("customer not found")

// Customer is everything the customer page shows.
type Customer struct {
	Profile profile.View `json:"profile"`
	// Transitions are the latest tier, churn-risk and segment changes, newest first.
	Transitions []pipeline.Transition `json:"transitions"`
	// Actions are the notifier's latest decisions for the customer, newest first.
	Actions []notifier.HistoryEntry `json:"actions"`
}

// Recent is the latest churn alerts and action decisions on the output topics, newest first.
type Recent struct {
	ChurnAlerts []event.ChurnRiskChanged `json:"churn_alerts"`
	Actions     []event.ActionDecided    `json:"actions"`
}

// Source is what the console reads: the namespace's KPI counters, a customer, and the tail
// of the output topics.
type Source interface {
	Namespace() string
	KPIs(ctx context.Context) (pipeline.KPISnapshot, error)
	// Customer returns ErrNotFound (wrapped) for a customer without state.
	Customer(ctx context.Context, id string) (Customer, error)
	Recent(ctx context.Context, n int) (Recent, error)
	// Uplift is the care and win-back uplift against the hold-out group (kpi.Uplift).
	Uplift(ctx context.Context) (kpi.UpliftReport, error)
}

// Config configures the console. At least one credential is required.
type Config struct {
	// BearerToken, when set, is accepted as "Authorization: Bearer <token>" (API clients).
	BearerToken string
	// User and Password, when set, are accepted as basic auth (browsers).
	User, Password string
	// RecentEvents is how many churn alerts and actions the overview lists (default 20).
	RecentEvents int
	// CacheFor is how long KPI readings and the topics' tail are reused (default 15s).
	CacheFor time.Duration
}

// Validate checks the credentials.
func (c Config) Validate() error {
	if c.BearerToken == "" && c.User == "" {
		return errors.New("the console needs credentials: set CONSOLE_BEARER_TOKEN, or CONSOLE_USER and CONSOLE_PASSWORD")
	}
	if c.BearerToken != "" && len(c.BearerToken) < 16 {
		return errors.New("CONSOLE_BEARER_TOKEN must be at least 16 characters")
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("set both CONSOLE_USER and CONSOLE_PASSWORD, or neither")
	}
	if c.Password != "" && len(c.Password) < 8 {
		return errors.New("CONSOLE_PASSWORD must be at least 8 characters")
	}
	if strings.Contains(c.User, ":") {
		return errors.New("CONSOLE_USER must not contain ':'")
	}
	return nil
}

// Server serves the console.
type Server struct {
	cfg    Config
	src    Source
	policy *scoring.Policy
	log    *zap.Logger
	token  []byte // SHA-256 of the bearer token
	basic  []byte // SHA-256 of "user:password"

	mu        sync.Mutex
	snap      pipeline.KPISnapshot
	snapAt    time.Time
	recent    Recent
	recentAt  time.Time
	recentErr error
}

// New returns a console server over src.
func New(cfg Config, src Source, policy *scoring.Policy, log *zap.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RecentEvents <= 0 {
		cfg.RecentEvents = 20
	}
	if cfg.CacheFor <= 0 {
		cfg.CacheFor = 15 * time.Second
	}
	s := &Server{cfg: cfg, src: src, policy: policy, log: log}
	if cfg.BearerToken != "" {
		h := sha256.Sum256([]byte(cfg.BearerToken))
		s.token = h[:]
	}
	if cfg.User != "" {
		h := sha256.Sum256([]byte(cfg.User + ":" + cfg.Password))
		s.basic = h[:]
	}
	return s, nil
}

// Handler returns the console's HTTP handler: the pages, their assets and /api/v1.
func (s *Server) Handler() http.Handler {
	web, err := fs.Sub(assets, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/overview", s.route("overview", s.overview))
	mux.Handle("GET /api/v1/kpis", s.route("kpis", s.kpis))
	mux.Handle("GET /api/v1/quality", s.route("quality", s.quality))
	mux.Handle("GET /api/v1/uplift", s.route("uplift", s.uplift))
	mux.Handle("GET /api/v1/customers/{id}", s.route("customer", s.customer))
	files := http.FileServerFS(web)
	page := func(name string) http.Handler {
		return s.route("page", func(w http.ResponseWriter, r *http.Request) (int, error) {
			http.ServeFileFS(w, r, web, name)
			return http.StatusOK, nil
		})
	}
	mux.Handle("GET /{$}", page("index.html"))
	mux.Handle("GET /customer", page("customer.html"))
	mux.Handle("GET /assets/", s.route("asset", func(w http.ResponseWriter, r *http.Request) (int, error) {
		files.ServeHTTP(w, r)
		return http.StatusOK, nil
	}))
	return s.secure(mux)
}

// secure sets the security headers and requires the credentials on every request.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if !s.authorized(r) {
			if s.basic != nil {
				h.Set("WWW-Authenticate", `Basic realm="loyalty console", charset="UTF-8"`)
			}
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(auth, "Bearer "); ok && s.token != nil {
		h := sha256.Sum256([]byte(tok))
		return subtle.ConstantTimeCompare(h[:], s.token) == 1
	}
	if user, pass, ok := r.BasicAuth(); ok && s.basic != nil {
		h := sha256.Sum256([]byte(user + ":" + pass))
		return subtle.ConstantTimeCompare(h[:], s.basic) == 1
	}
	return false
}

// route wraps a handler that returns its status and error: the error becomes the JSON body
// the client gets, and the log line names the route, never the path (which may hold a
// customer id) nor the error text (which may too).
func (s *Server) route(name string, h func(http.ResponseWriter, *http.Request) (int, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status, err := h(w, r)
		if err != nil {
			writeJSON(w, status, map[string]string{"error": err.Error()})
		}
		level := zap.DebugLevel
		if status >= 500 {
			level = zap.WarnLevel
		}
		s.log.Check(level, "console request").Write(zap.String("route", name), zap.Int("status", status),
			zap.Duration("took", time.Since(start)))
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// snapshot returns the KPI counters, read at most every CacheFor.
func (s *Server) snapshot(ctx context.Context) (pipeline.KPISnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap.Counters != nil && time.Since(s.snapAt) < s.cfg.CacheFor {
		return s.snap, nil
	}
	snap, err := s.src.KPIs(ctx)
	if err != nil {
		return pipeline.KPISnapshot{}, err
	}
	s.snap, s.snapAt = snap, time.Now()
	return snap, nil
}

// recentEvents returns the tail of the output topics, read at most every CacheFor.
func (s *Server) recentEvents(ctx context.Context) (Recent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recentAt.IsZero() && time.Since(s.recentAt) < s.cfg.CacheFor {
		return s.recent, s.recentErr
	}
	s.recent, s.recentErr = s.src.Recent(ctx, s.cfg.RecentEvents)
	s.recentAt = time.Now()
	return s.recent, s.recentErr
}

// Overview is the overview page's data (GET /api/v1/overview).
type Overview struct {
	Namespace string `json:"namespace"`
	// Day is the last final day, which every figure is as of (empty: none is final yet, and
	// the reports are of the latest day with counters, not final).
	Day       string     `json:"day"`
	Final     bool       `json:"final"`
	Watermark *time.Time `json:"watermark,omitempty"`
	Currency  string     `json:"currency"`
	// Reports are the KPIs of the windows of 1, 7, 30, 90 and 365 days ending on Day.
	Reports []kpi.Report `json:"reports"`
	// Trend is the 30-day KPIs ending on each of the last 365 days up to Day.
	Trend []TrendPoint `json:"trend"`
	// Recent is the latest churn alerts and actions; RecentError says why they could not be
	// read (the rest of the page still is).
	Recent      Recent `json:"recent"`
	RecentError string `json:"recent_error,omitempty"`
}

// TrendPoint is one day of the 30-day trend.
type TrendPoint struct {
	Day             string   `json:"day"`
	NetRevenueMinor int64    `json:"net_revenue_minor"`
	Orders          int64    `json:"orders"`
	ActiveCustomers int64    `json:"active_customers"`
	RepurchaseRate  *float64 `json:"repurchase_rate"`
	RetentionRate   *float64 `json:"retention_rate"`
	NPS             *float64 `json:"nps"`
	Customers       int64    `json:"customers"`
}

// TrendDays is the length of the overview's trend.
const TrendDays = 365

func (s *Server) overview(w http.ResponseWriter, r *http.Request) (int, error) {
	snap, err := s.snapshot(r.Context())
	if err != nil {
		return http.StatusBadGateway, fmt.Errorf("reading the KPIs: %w", err)
	}
	o := Overview{Namespace: s.src.Namespace(), Currency: s.policy.Currency, Reports: []kpi.Report{}, Trend: []TrendPoint{},
		Recent: Recent{ChurnAlerts: []event.ChurnRiskChanged{}, Actions: []event.ActionDecided{}}}
	if !snap.Watermark.IsZero() {
		o.Watermark = &snap.Watermark
	}
	day, ok := snap.Complete, snap.HasComplete
	if !ok {
		if _, last, found := snap.Counters.Days(); found {
			day = min(last, scoring.DayOf(time.Now()))
		}
	}
	if ok || day != 0 {
		o.Day, o.Final = day.Start().Format(time.DateOnly), ok
		for _, w := range kpi.Windows {
			o.Reports = append(o.Reports, snap.Counters.Report(day, w))
		}
		for _, rep := range snap.Counters.Series(day-TrendDays+1, day, 30) {
			o.Trend = append(o.Trend, TrendPoint{Day: rep.Day, NetRevenueMinor: rep.NetRevenueMinor, Orders: rep.Orders,
				ActiveCustomers: rep.ActiveCustomers, RepurchaseRate: rep.RepurchaseRate, RetentionRate: rep.RetentionRate,
				NPS: rep.NPS, Customers: rep.Customers})
		}
	}
	recent, err := s.recentEvents(r.Context())
	if err != nil {
		o.RecentError = err.Error()
	} else {
		o.Recent = recent
	}
	writeJSON(w, http.StatusOK, o)
	return http.StatusOK, nil
}

// kpis serves GET /api/v1/kpis?day=YYYY-MM-DD&window=N: one window's report (default the last
// final day and 30 days), with whether the day is final.
func (s *Server) kpis(w http.ResponseWriter, r *http.Request) (int, error) {
	snap, err := s.snapshot(r.Context())
	if err != nil {
		return http.StatusBadGateway, fmt.Errorf("reading the KPIs: %w", err)
	}
	window := 30
	if v := r.URL.Query().Get("window"); v != "" {
		if window, err = strconv.Atoi(v); err != nil || window < 1 || window > 3660 {
			return http.StatusBadRequest, errors.New("window must be 1 to 3660 days")
		}
	}
	day, ok := snap.Complete, snap.HasComplete
	if v := r.URL.Query().Get("day"); v != "" {
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return http.StatusBadRequest, errors.New("day must be YYYY-MM-DD")
		}
		day, ok = scoring.DayOf(t), true
	}
	if !ok {
		return http.StatusNotFound, errors.New("no day is final yet: the watermark has not closed one")
	}
	writeJSON(w, http.StatusOK, struct {
		Final  bool       `json:"final"`
		Report kpi.Report `json:"report"`
	}{snap.HasComplete && day <= snap.Complete, snap.Counters.Report(day, window)})
	return http.StatusOK, nil
}

// quality serves GET /api/v1/quality: the churn model's quality on each observation day,
// oldest first (kpi.QualityReport), with the last final day.
func (s *Server) quality(w http.ResponseWriter, r *http.Request) (int, error) {
	snap, err := s.snapshot(r.Context())
	if err != nil {
		return http.StatusBadGateway, fmt.Errorf("reading the KPIs: %w", err)
	}
	out := struct {
		CompleteThrough string              `json:"complete_through,omitempty"`
		Days            []kpi.QualityReport `json:"days"`
	}{Days: snap.Quality(s.policy)}
	if snap.HasComplete {
		out.CompleteThrough = snap.Complete.Start().Format(time.DateOnly)
	}
	writeJSON(w, http.StatusOK, out)
	return http.StatusOK, nil
}

// uplift serves GET /api/v1/uplift: the repurchase rates of the customers treated by care
// and win-back against the hold-out group's, with the uplift and 95% intervals.
func (s *Server) uplift(w http.ResponseWriter, r *http.Request) (int, error) {
	u, err := s.src.Uplift(r.Context())
	if err != nil {
		return http.StatusBadGateway, fmt.Errorf("reading the uplift: %w", err)
	}
	writeJSON(w, http.StatusOK, u)
	return http.StatusOK, nil
}

func (s *Server) customer(w http.ResponseWriter, r *http.Request) (int, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > scoring.MaxCustomerIDLen {
		return http.StatusBadRequest, fmt.Errorf("a customer id is 1 to %d bytes", scoring.MaxCustomerIDLen)
	}
	c, err := s.src.Customer(r.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, errors.New("no such customer in this namespace")
	case err != nil:
		return http.StatusBadGateway, err
	}
	writeJSON(w, http.StatusOK, c)
	return http.StatusOK, nil
}
