package wiring_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// deployDir is the repository's deploy/ directory.
const deployDir = "../../deploy"

// promtool finds promtool (Debian's prometheus package) or fails saying how to install it.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: deploy/local/tools.sh install promtool (sudo apt-get install -y --no-install-recommends prometheus); make test installs it")
	}
	return path
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPromtoolAcceptsTheScrapeConfigAndTheAlertRulesAndTheirTests runs promtool over
// deploy/prometheus: the config and rules are valid, and every alert's unit test passes (each
// alert fires on the series that should raise it and stays silent before).
func TestPromtoolAcceptsTheScrapeConfigAndTheAlertRulesAndTheirTests(t *testing.T) {
	dir := filepath.Join(deployDir, "prometheus")
	runPromtool(t, "check", "config", filepath.Join(dir, "prometheus.yml"))
	out := runPromtool(t, "check", "rules", filepath.Join(dir, "alerts.yml"))
	if !strings.Contains(out, "SUCCESS: 9 rules found") {
		t.Errorf("promtool check rules: %s", out)
	}
	runPromtool(t, "test", "rules", filepath.Join(dir, "alerts_test.yml"))

	// Every alert has a unit test.
	rules := alertRules(t)
	tests, err := os.ReadFile(filepath.Join(dir, "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
			t.Errorf("alert %s has no test in alerts_test.yml", r.Alert)
		}
	}
}

type alertRule struct {
	Alert string `yaml:"alert"`
	Expr  string `yaml:"expr"`
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir, "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatal("no alert rules in alerts.yml")
	}
	return out
}

// dashboardQueries returns every PromQL expression of the Grafana dashboards, by dashboard
// file and panel title.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "grafana", "dashboards", "*.json"))
	if err != nil || len(files) < 2 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	out := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID    string `json:"uid"`
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || len(d.Panels) == 0 {
			t.Fatalf("%s: no uid or no panels", f)
		}
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for i, q := range p.Targets {
				if strings.TrimSpace(q.Expr) == "" {
					t.Errorf("%s: panel %q query %d is empty", f, p.Title, i)
				}
				out[fmt.Sprintf("%s / %s / %d", filepath.Base(f), p.Title, i)] = q.Expr
			}
		}
	}
	return out
}

// TestPromtoolAcceptsEveryDashboardQuery checks each panel's PromQL with promtool, as the
// expression of a recording rule.
func TestPromtoolAcceptsEveryDashboardQuery(t *testing.T) {
	queries := dashboardQueries(t)
	keys := make([]string, 0, len(queries))
	for k := range queries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	type group struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	}
	g := group{Name: "dashboards"}
	for i, k := range keys {
		g.Rules = append(g.Rules, rule{Record: fmt.Sprintf("dashboard_query_%d", i), Expr: queries[k]})
	}
	raw, err := yaml.Marshal(map[string][]group{"groups": {g}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runPromtool(t, "check", "rules", path)
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(keys)); !strings.Contains(out, want) {
		t.Fatalf("promtool: %s (want %q)", out, want)
	}
	t.Logf("%d dashboard queries pass promtool", len(keys))
}

// TestDashboardsAndAlertsNameOnlyMetricsTheServicesExport starts every service of the
// pipeline in one process, as the binaries compose them, and checks that each metric a
// dashboard or an alert names is registered by one of them.
func TestDashboardsAndAlertsNameOnlyMetricsTheServicesExport(t *testing.T) {
	exported := serviceMetricNames(t)
	named := map[string][]string{} // metric → where
	metric := regexp.MustCompile(`\bloyalty_[a-z0-9_]+\b`)
	for where, q := range dashboardQueries(t) {
		for _, m := range metric.FindAllString(q, -1) {
			named[m] = append(named[m], where)
		}
	}
	for _, r := range alertRules(t) {
		for _, m := range metric.FindAllString(r.Expr, -1) {
			named[m] = append(named[m], "alert "+r.Alert)
		}
	}
	if len(named) < 20 {
		t.Fatalf("only %d metrics named: the extraction is broken", len(named))
	}
	for m, where := range named {
		base := m
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suffix); ok && exported[b] {
				base = b
			}
		}
		if !exported[base] {
			t.Errorf("%s (in %s) is exported by no service", m, strings.Join(where, "; "))
		}
	}
	t.Logf("%d metrics named by the dashboards and alerts, all among the %d the services export", len(named), len(exported))
}

// serviceMetricNames runs the consumers, sweeper, relay and notifier against the test Kafka
// and Redis until each has registered its metrics, and returns the names registered.
func serviceMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	brokers := testinfra.Kafka(t)
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ","), "REDIS_ADDR": testinfra.Redis(t),
			"LOYALTY_NAMESPACE": testinfra.Name("obs"), "LOYALTY_TOPIC_SUFFIX": testinfra.TopicSuffix(t, "obs"),
			"LOYALTY_DEPLOYMENT": testinfra.Name("obs"), "KAFKA_PARTITIONS": "1", "LOYALTY_SHARDS": "4"}[k]
	}, "off")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt, err := wiring.NewRuntime(ctx, cfg, zaptest.NewLogger(t), wiring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	services := map[string]func(context.Context) error{
		"purchases": func(ctx context.Context) error {
			return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: "purchases", Topics: []string{event.TopicPurchases}})
		},
		"logins": func(ctx context.Context) error {
			return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: "logins", Topics: []string{event.TopicLogins}})
		},
		"feedback": func(ctx context.Context) error {
			return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: "feedback", Topics: []string{event.TopicFeedback}})
		},
		"sweeper": func(ctx context.Context) error { return wiring.RunSweeper(ctx, rt) },
		"relay":   func(ctx context.Context) error { return wiring.RunRelay(ctx, rt, nil) },
		"notifier": func(ctx context.Context) error {
			return wiring.RunNotifier(ctx, rt, notifier.Config{Channels: notifier.LogChannels()})
		},
	}
	done := make(chan error, len(services))
	for name, run := range services {
		go func() {
			if err := run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				done <- fmt.Errorf("%s: %w", name, err)
				return
			}
			done <- nil
		}()
	}
	// Each service registers its metrics as it starts; wait for a metric of each.
	want := []string{"loyalty_records_in_total", "loyalty_kpi_final_day_timestamp_seconds", "loyalty_relay_published_total",
		"loyalty_notifier_decisions_total", "loyalty_watermark_lag_seconds"}
	var names map[string]bool
	deadline := time.Now().Add(90 * time.Second)
	for {
		names = describe(rt.Ops.Registry)
		missing := 0
		for _, w := range want {
			if !names[w] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the services did not register their metrics within 90s: %d of %v missing", missing, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	for range services {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	return names
}

// describe lists the names of every metric registered on reg, including vectors that have no
// series yet.
func describe(reg *prometheus.Registry) map[string]bool {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		reg.Describe(ch)
		close(ch)
	}()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}
