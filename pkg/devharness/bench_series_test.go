package devharness

import (
	"bytes"
	"strings"
	"testing"
)

func TestASeriesSummaryIsEachFiguresMedianAndRange(t *testing.T) {
	report := func(tput, machine float64, redis, logins float64, loginsRSS int64, naive float64) BenchReport {
		return BenchReport{EventsPerSec: tput, MachineMicrosPerEvent: machine, MachineBusyShare: 0.9,
			Latency: Latency{Samples: 10, P50Ms: tput / 1000, P99Ms: tput / 100}, BytesSampled: 2000, BytesPerCustomer: 330,
			ConflictRate: 0.017, Naive: &NaiveResult{Speedup: naive},
			CPU: []ProcessCPU{{Name: "logins", MicrosPerEvent: logins, PeakRSSBytes: loginsRSS << 20}, {Name: "redis", MicrosPerEvent: redis}}}
	}
	reps := []BenchReport{
		report(17_272, 108, 40, 11.9, 709, 400),
		report(14_280, 132, 45, 14.1, 656, 300),
		report(17_318, 111, 38, 12.0, 703, 500),
	}
	// A process seen in one run only: Redis's forked AOF rewrite.
	reps[1].CPU = append(reps[1].CPU, ProcessCPU{Name: "redis children", MicrosPerEvent: 2.3})
	s := summarize(reps)
	if want := (Spread{Median: 17_272, Min: 14_280, Max: 17_318, Runs: 3}); s.EventsPerSec != want {
		t.Errorf("throughput %+v, want %+v", s.EventsPerSec, want)
	}
	if want := (Spread{Median: 111, Min: 108, Max: 132, Runs: 3}); s.MachineMicrosPerEvent != want {
		t.Errorf("machine µs/event %+v, want %+v", s.MachineMicrosPerEvent, want)
	}
	if s.NaiveSpeedup.Median != 400 || s.LatencyP99Ms.Median != 172.72 {
		t.Errorf("naive ×%v, p99 %v ms; want the medians 400 and 172.72", s.NaiveSpeedup.Median, s.LatencyP99Ms.Median)
	}
	var names []string
	for _, p := range s.Processes {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "redis,logins,redis children" {
		t.Fatalf("processes %v: want them by median CPU per event, the most first", names)
	}
	if l := s.Processes[1]; l.MicrosPerEvent.Median != 12.0 || l.PeakRSSMB != (Spread{Median: 703, Min: 656, Max: 709, Runs: 3}) {
		t.Errorf("logins %+v: want 12.0 µs/event and 703 (656–709) MB", l)
	}
	if c := s.Processes[2].MicrosPerEvent; c.Runs != 1 || c.Median != 2.3 {
		t.Errorf("redis children %+v: want 2.3 in 1 run", c)
	}
	if even := spreadOf([]float64{4, 1, 3, 2}); even.Median != 2.5 || even.Min != 1 || even.Max != 4 {
		t.Errorf("median of 1..4: %+v, want 2.5 (1–4)", even)
	}

	var out bytes.Buffer
	printBenchSummary(&out, s)
	for _, want := range []string{"summary of 3 runs", "17272 events/s (14280–17318)", "111 µs for the machine (108–132)",
		"logins", "12.0 µs/event (11.9–14.1)", "703 MB (656–709)", "2.3 µs/event (2.3–2.3) in 1 of the runs", "400× (300–500)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunsOutOfRangeAreUsageErrors(t *testing.T) {
	for _, runs := range []string{"0", "101", "-1"} {
		var stdout, stderr bytes.Buffer
		if code := Main(t.Context(), []string{"bench-e2e", "--runs", runs}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--runs") {
			t.Errorf("--runs %s: exit %d, stderr %q; want 2 naming --runs", runs, code, stderr.String())
		}
	}
}
