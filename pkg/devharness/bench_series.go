package devharness

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// BenchSeries is what `bench-e2e --runs N` reports for N ≥ 2: every run's report, one after
// another on the same machine, and their medians. The machines the benchmark runs on are
// shared and noisy, so a figure worth quoting is a median of several runs with the range
// beside it, and each run's own per-process table.
type BenchSeries struct {
	Runs    []BenchReport `json:"runs"`
	Summary BenchSummary  `json:"summary"`
}

// Spread is a measure over the runs of a series: its median (the mean of the middle two for
// an even count), least and greatest value, and how many runs had it.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Runs   int     `json:"runs"`
}

// spreadOf is the Spread of vs (the zero Spread for none).
func spreadOf(vs []float64) Spread {
	if len(vs) == 0 {
		return Spread{}
	}
	s := slices.Sorted(slices.Values(vs))
	n := len(s)
	median := s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return Spread{Median: median, Min: s[0], Max: s[n-1], Runs: n}
}

// ProcessSpread is one process's CPU per input event and peak resident memory over a series.
type ProcessSpread struct {
	Name           string `json:"name"`
	MicrosPerEvent Spread `json:"cpu_us_per_event"`
	PeakRSSMB      Spread `json:"peak_rss_mb"`
}

// BenchSummary is a series' medians and ranges of the figures the targets are stated
// in: throughput, CPU per event for the machine and per process, latency, Redis bytes per
// customer, conflicts and the naive baseline's ratio.
type BenchSummary struct {
	Runs                  int             `json:"runs"`
	EventsPerSec          Spread          `json:"events_per_sec"`
	MachineMicrosPerEvent Spread          `json:"machine_cpu_us_per_event"`
	MachineBusyShare      Spread          `json:"machine_busy_share"`
	LatencyP50Ms          Spread          `json:"latency_p50_ms"`
	LatencyP99Ms          Spread          `json:"latency_p99_ms"`
	SteadyP99Ms           Spread          `json:"latency_steady_p99_ms,omitzero"`
	SteadyBusyShare       Spread          `json:"steady_busy_share,omitzero"`
	BytesPerCustomer      Spread          `json:"redis_bytes_per_customer"`
	ConflictRate          Spread          `json:"store_conflict_rate"`
	NaiveSpeedup          Spread          `json:"naive_speedup,omitzero"`
	Processes             []ProcessSpread `json:"processes"`
}

// summarize computes a series' summary; processes are listed by median CPU per event, the
// most first.
func summarize(reps []BenchReport) BenchSummary {
	var tput, machine, busy, p50, p99, steady, steadyBusy, bytes, conflicts, naive []float64
	perProcess := map[string]*[2][]float64{} // µs per event, peak RSS MB
	var order []string
	for _, r := range reps {
		tput = append(tput, r.EventsPerSec)
		machine = append(machine, r.MachineMicrosPerEvent)
		busy = append(busy, r.MachineBusyShare)
		if r.Latency.Samples > 0 {
			p50 = append(p50, r.Latency.P50Ms)
			p99 = append(p99, r.Latency.P99Ms)
		}
		if r.LatencySteady != nil && r.LatencySteady.Samples > 0 {
			steady = append(steady, r.LatencySteady.P99Ms)
		}
		if r.SteadyBusyShare > 0 {
			steadyBusy = append(steadyBusy, r.SteadyBusyShare)
		}
		if r.BytesSampled > 0 {
			bytes = append(bytes, r.BytesPerCustomer)
		}
		conflicts = append(conflicts, r.ConflictRate)
		if r.Naive != nil && r.Naive.Speedup > 0 {
			naive = append(naive, r.Naive.Speedup)
		}
		for _, p := range r.CPU {
			v, ok := perProcess[p.Name]
			if !ok {
				v = &[2][]float64{}
				perProcess[p.Name] = v
				order = append(order, p.Name)
			}
			v[0] = append(v[0], p.MicrosPerEvent)
			if p.PeakRSSBytes > 0 {
				v[1] = append(v[1], float64(p.PeakRSSBytes)/(1<<20))
			}
		}
	}
	s := BenchSummary{Runs: len(reps), EventsPerSec: spreadOf(tput), MachineMicrosPerEvent: spreadOf(machine),
		MachineBusyShare: spreadOf(busy), LatencyP50Ms: spreadOf(p50), LatencyP99Ms: spreadOf(p99),
		SteadyP99Ms: spreadOf(steady), SteadyBusyShare: spreadOf(steadyBusy), BytesPerCustomer: spreadOf(bytes),
		ConflictRate: spreadOf(conflicts), NaiveSpeedup: spreadOf(naive)}
	for _, name := range order {
		v := perProcess[name]
		s.Processes = append(s.Processes, ProcessSpread{Name: name, MicrosPerEvent: spreadOf(v[0]), PeakRSSMB: spreadOf(v[1])})
	}
	slices.SortStableFunc(s.Processes, func(a, b ProcessSpread) int {
		return cmp.Compare(b.MicrosPerEvent.Median, a.MicrosPerEvent.Median)
	})
	return s
}

// printBenchSummary writes a series' summary as a table: each figure's median, then its
// range over the runs.
func printBenchSummary(w io.Writer, s BenchSummary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, sp Spread, format, unit string) {
		if sp.Runs == 0 {
			return
		}
		f := func(v float64) string { return fmt.Sprintf(format, v) }
		of := ""
		if sp.Runs < s.Runs {
			of = fmt.Sprintf(" in %d of the runs", sp.Runs)
		}
		fmt.Fprintf(tw, "%s\t%s%s (%s–%s)%s\n", k, f(sp.Median), unit, f(sp.Min), f(sp.Max), of)
	}
	fmt.Fprintf(tw, "summary of %d runs\tmedian (least–greatest)\n", s.Runs)
	row("sustained throughput", s.EventsPerSec, "%.0f", " events/s")
	row("CPU per input event", s.MachineMicrosPerEvent, "%.0f", " µs for the machine")
	pct := func(sp Spread) Spread {
		return Spread{Median: 100 * sp.Median, Min: 100 * sp.Min, Max: 100 * sp.Max, Runs: sp.Runs}
	}
	row("  machine busy", pct(s.MachineBusyShare), "%.0f", "% of the CPUs")
	for _, p := range s.Processes {
		row("  "+p.Name, p.MicrosPerEvent, "%.1f", " µs/event")
		row("    peak RSS", p.PeakRSSMB, "%.0f", " MB")
	}
	row("produce→derived p50", s.LatencyP50Ms, "%.0f", " ms")
	row("produce→derived p99", s.LatencyP99Ms, "%.0f", " ms")
	row("  steady p99", s.SteadyP99Ms, "%.0f", " ms")
	row("  steady machine busy", pct(s.SteadyBusyShare), "%.0f", "%")
	row("redis bytes/customer", s.BytesPerCustomer, "%.0f", " B of state")
	row("store conflict rate", pct(s.ConflictRate), "%.2f", "%")
	row("ours ÷ naive", s.NaiveSpeedup, "%.0f", "×")
	_ = tw.Flush()
}
