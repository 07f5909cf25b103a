package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/loyalty-scoring/loyalty/pkg/console"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// emptySource is a namespace with no customer and no counters.
type emptySource struct{}

func (emptySource) Namespace() string { return "ns" }
func (emptySource) KPIs(context.Context) (pipeline.KPISnapshot, error) {
	return pipeline.KPISnapshot{Counters: kpi.NewCounters()}, nil
}
func (emptySource) Customer(context.Context, string) (console.Customer, error) {
	return console.Customer{}, console.ErrNotFound
}
func (emptySource) Recent(context.Context, int) (console.Recent, error) { return console.Recent{}, nil }
func (emptySource) Uplift(context.Context) (kpi.UpliftReport, error) {
	return kpi.Uplift(kpi.UpliftCounts{}, []string{"CARE", "WIN_BACK"}), nil
}

func TestTheConsoleNeedsCredentialsAndNeverLogsCustomerIDs(t *testing.T) {
	for _, bad := range []console.Config{{}, {BearerToken: "short"}, {User: "u"}, {User: "u", Password: "short"}, {User: "a:b", Password: "long enough"}} {
		if _, err := console.New(bad, emptySource{}, scoring.DefaultPolicy(), zap.NewNop()); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	core, logs := observer.New(zap.DebugLevel)
	srv, err := console.New(console.Config{BearerToken: "0123456789abcdef-token", User: "support", Password: "a long password"},
		emptySource{}, scoring.DefaultPolicy(), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	do := func(path string, auth func(*http.Request)) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if auth != nil {
			auth(req)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	basic := func(u, p string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(u, p) } }
	for _, c := range []struct {
		path string
		auth func(*http.Request)
		want int
	}{
		{"/", nil, 401},
		{"/assets/console.css", nil, 401},
		{"/api/v1/overview", bearer("wrong-token-0123456789"), 401},
		{"/api/v1/overview", basic("support", "wrong password"), 401},
		{"/api/v1/overview", bearer("0123456789abcdef-token"), 200},
		{"/", basic("support", "a long password"), 200},
		{"/customer?id=secret-customer-42", basic("support", "a long password"), 200},
		{"/assets/overview.js", basic("support", "a long password"), 200},
		{"/api/v1/customers/secret-customer-42", bearer("0123456789abcdef-token"), 404},
		{"/api/v1/kpis?window=0", bearer("0123456789abcdef-token"), 400},
		{"/api/v1/kpis", bearer("0123456789abcdef-token"), 404}, // no final day yet
		{"/api/v1/uplift", bearer("0123456789abcdef-token"), 200},
		{"/api/v1/uplift", nil, 401},
	} {
		rec := do(c.path, c.auth)
		if rec.Code != c.want {
			t.Errorf("GET %s: %d, want %d (%s)", c.path, rec.Code, c.want, rec.Body.String())
		}
		if rec.Header().Get("Content-Security-Policy") == "" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: security headers missing: %v", c.path, rec.Header())
		}
		if c.want == 401 && c.auth == nil && !strings.Contains(rec.Header().Get("WWW-Authenticate"), "Basic") {
			t.Errorf("GET %s: a 401 without WWW-Authenticate Basic: browsers would not ask", c.path)
		}
	}
	if logs.Len() == 0 {
		t.Fatal("no request was logged")
	}
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += " " + k + "=" + fmt.Sprint(v)
		}
		if strings.Contains(line, "secret-customer-42") {
			t.Errorf("a log line names the customer: %s", line)
		}
	}
}
