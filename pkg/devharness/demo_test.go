package devharness

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// summaryCount reads the leading number of a summary line such as
// "  tier changes:       1,234 (UP 1,200, DOWN 34, WARNING 0)".
func summaryCount(t *testing.T, summary, name string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + `:\s+([0-9,]+)`).FindStringSubmatch(summary)
	if m == nil {
		t.Fatalf("summary has no %q line:\n%s", name, summary)
	}
	n, err := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// summaryField reads "NAME n" out of a summary line's list, e.g. field "to HIGH" of the
// churn-risk changes line.
func summaryField(t *testing.T, summary, line, field string) int {
	t.Helper()
	l := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(line) + `:.*$`).FindString(summary)
	m := regexp.MustCompile(regexp.QuoteMeta(field) + ` ([0-9,]+)`).FindStringSubmatch(l)
	if m == nil {
		t.Fatalf("summary line %q has no %q: %q", line, field, l)
	}
	n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	return n
}

// TestTheDemoRunsThePipelineAndItsSummaryShowsTierAndChurnChanges runs the demo on both Redis
// backends and reads the summary it prints.
func TestTheDemoRunsThePipelineAndItsSummaryShowsTierAndChurnChanges(t *testing.T) {
	for _, redis := range []string{"auto", "miniredis"} {
		t.Run("redis "+redis, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			// For caps the run on a slow machine; normally it ends 3s after the history is applied,
			// which leaves the sweeper time on the wall clock and the relay and notifier time to
			// publish what followed.
			o := demoOptions{For: 150 * time.Second, StopAfterApplied: 3 * time.Second, Customers: 120, Months: 4, Seed: 3,
				Redis: redis, DataDir: t.TempDir(), HTTP: "off", Progress: time.Second, Lead: 72 * time.Hour}
			sum, err := runDemoPipeline(context.Background(), o, &stderr)
			if err != nil {
				t.Fatalf("demo: %v\nstderr:\n%s", err, stderr.String())
			}
			var out bytes.Buffer
			sum.print(&out)
			summary := out.String()
			t.Logf("summary:\n%s", summary)

			if !strings.Contains(summary, "; the whole history") {
				t.Errorf("the history was not produced in full within %s", o.For)
			}
			produced, processed := summaryCount(t, summary, "events produced"), summaryCount(t, summary, "events processed")
			if produced == 0 || processed != produced {
				t.Errorf("produced %d events, processed %d: want all of them processed", produced, processed)
			}
			if up := summaryField(t, summary, "tier changes", "UP"); up == 0 {
				t.Error("no tier upgrades")
			}
			if summaryCount(t, summary, "churn-risk changes") == 0 {
				t.Error("no churn-risk changes")
			}
			if high := summaryField(t, summary, "churn levels", "HIGH"); high == 0 {
				t.Error("nobody ended at HIGH churn risk, though the lapsers stopped buying months ago")
			}
			if summaryCount(t, summary, "segment changes") == 0 {
				t.Error("no segment changes")
			}
			if above := summaryField(t, summary, "tiers", "SILVER") + summaryField(t, summary, "tiers", "GOLD") +
				summaryField(t, summary, "tiers", "PLATINUM"); above == 0 {
				t.Error("every customer is still BRONZE")
			}
			if summaryCount(t, summary, "actions decided") == 0 {
				t.Error("the notifier decided no action")
			}
			if dlq := summaryCount(t, summary, "dead-lettered"); dlq != 0 {
				t.Errorf("%d records were dead-lettered", dlq)
			}
			wantRedis := redis
			if redis == "auto" {
				wantRedis = "redis-server|miniredis"
			}
			if !regexp.MustCompile(`(?m)^  redis:\s+(` + wantRedis + `)$`).MatchString(summary) {
				t.Errorf("summary does not name the %s backend", wantRedis)
			}
			if !strings.Contains(stderr.String(), "churn alert: ") {
				t.Errorf("the progress report showed no churn alert:\n%s", stderr.String())
			}
		})
	}
}

func TestTheDemoCommandPrintsItsSummaryOnStdout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"demo", "--for", "4s", "--customers", "50", "--months", "2", "--redis", "miniredis", "--data-dir", t.TempDir(), "--http", "off"}
	if code := Main(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("loyalty-dev %s exited %d\nstderr:\n%s", strings.Join(args, " "), code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "loyalty-dev demo summary\n") || summaryCount(t, stdout.String(), "events produced") == 0 {
		t.Errorf("stdout is not a summary of a run that produced events:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "demo: redis  miniredis") {
		t.Errorf("stderr does not say which Redis runs:\n%s", stderr.String())
	}
}

func TestTheDemoRefusesToClearADirectoryItDidNotCreate(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "kafka"), 0o755); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dir, "kafka", "precious")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"demo", "--for", "1s", "--data-dir", dir, "--http", "off"}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("the demo deleted a file it did not create: %v", err)
	}
	if !strings.Contains(stderr.String(), "refusing to clear") {
		t.Errorf("stderr does not explain the refusal: %s", stderr.String())
	}
}

func TestDemoFlagMistakesAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--customers", "0"},
		{"demo", "--redis", "memcached"},
		{"demo", "--for", "-1s"},
		{"demo", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage); stderr: %s", args, code, stderr.String())
		}
	}
}

func TestTheEventClockFollowsTheAppliedHistoryThenTheWallClock(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	applied := map[string]float64{}
	c := newEventClock(start, func() map[string]float64 { return applied })
	wait := func() { time.Sleep(25 * time.Millisecond) } // past the clock's read cache
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("before anything is produced the clock is %s, want the start of the history", got)
	}
	c.mark(map[string]int64{"p": 10, "l": 5}, start.Add(time.Hour))
	c.mark(map[string]int64{"p": 20, "l": 5}, start.Add(2*time.Hour))
	applied["p"], applied["l"] = 15, 5
	wait()
	if got := c.Now(); !got.Equal(start.Add(time.Hour)) {
		t.Errorf("with the first mark applied the clock is %s, want %s", got, start.Add(time.Hour))
	}
	if !c.Behind(start.Add(90 * time.Minute)) {
		t.Error("the clock does not report history still to apply")
	}
	c.finish()
	applied["p"] = 20
	wait()
	if got := c.Now(); time.Since(got) > time.Minute {
		t.Errorf("with the whole history applied the clock is %s, want the wall clock", got)
	}
	if c.Behind(time.Now().Add(time.Hour)) {
		t.Error("nothing is in flight, yet the clock says the consumers are behind")
	}
}
