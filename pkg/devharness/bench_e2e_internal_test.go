package devharness

import (
	"testing"
	"time"
)

func TestTheLatencySplitsIntoItsPartsAndTheTailSaysWhere(t *testing.T) {
	// 100 events: 99 spend 10 ms writing, 5 relaying, 2 in Kafka; one spends 300 ms relaying.
	var samples []latencySample
	for i := range 100 {
		s := latencySample{written: 10, relayed: 5, delivered: 2, split: true}
		if i == 42 {
			s.relayed = 300
		}
		s.total = s.written + s.relayed + s.delivered
		samples = append(samples, s)
	}
	l := summarizeLatency(samples)
	if !l.Split || l.Samples != 100 || l.P50Ms != 17 || l.P99Ms != 17 || l.MaxMs != 312 {
		t.Fatalf("total: %+v", l)
	}
	if l.WrittenP50Ms != 10 || l.RelayedP50Ms != 5 || l.DeliveredP99Ms != 2 {
		t.Fatalf("parts: %+v", l)
	}
	// With two slow events out of 100 the p99 is a slow one's, and the tail is theirs.
	samples[7].relayed, samples[7].total = 300, 312
	if l = summarizeLatency(samples); l.P99Ms != 312 || l.TailRelayedMs != 300 || l.TailWrittenMs != 10 || l.TailDeliveredMs != 2 {
		t.Fatalf("tail: %+v", l)
	}

	// One record without its entry's header (a relay of an earlier release): no split.
	samples[3].split = false
	if l = summarizeLatency(samples); l.Split || l.WrittenP50Ms != 0 || l.P99Ms != 312 || l.DeliveredP50Ms != 2 {
		t.Fatalf("a record without its entry must leave the parts unknown: %+v", l)
	}
}

func TestTheSteadyLatencyLeavesOutTheWarmUpAndTheOutage(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var samples []latencySample
	for s := range 60 {
		samples = append(samples, latencySample{produced: start.Add(time.Duration(s) * time.Second), total: float64(s)})
	}
	steady := steadySamples(samples, start, &outageRun{stoppedAt: start.Add(40 * time.Second)})
	if len(steady) != 30 || steady[0].total != 10 || steady[len(steady)-1].total != 39 {
		t.Fatalf("steady: %d samples from %v to %v, want 30 from 10 to 39", len(steady), steady[0].total, steady[len(steady)-1].total)
	}
	if steady = steadySamples(samples, start, nil); len(steady) != 50 {
		t.Fatalf("without an outage: %d samples, want 50", len(steady))
	}
}

// The busy share is busy over total time between two readings, at most 1 (the sums of ticks
// can round busy past total on a saturated machine), and 0 when no time passed.
func TestTheBusyShareIsAtMostOne(t *testing.T) {
	for _, c := range []struct{ b0, t0, b1, t1, want float64 }{
		{1, 2, 3, 6, 0.5},
		{0.1, 0.2, 0.3 + 1e-12, 0.3, 1},
		{5, 10, 5, 10, 0},
	} {
		if got := busyShare(c.b0, c.t0, c.b1, c.t1); got != c.want {
			t.Errorf("busyShare(%v, %v, %v, %v) = %v, want %v", c.b0, c.t0, c.b1, c.t1, got, c.want)
		}
	}
}

func TestServiceMemoryLimitReadsGOMEMLIMITSizes(t *testing.T) {
	for v, want := range map[string]int64{"460MiB": 460 << 20, "1GiB": 1 << 30, "500000000": 500_000_000, "64KiB": 64 << 10, "0": 0, "2TiB": 2 << 40, "100B": 100} {
		var n int64
		if err := (&byteSize{&n}).Set(v); err != nil || n != want {
			t.Errorf("%q: %d, %v; want %d", v, n, err, want)
		}
	}
	for _, v := range []string{"", "460MB", "-1MiB", "1.5GiB", "lots", "99999999TiB"} {
		var n int64
		if err := (&byteSize{&n}).Set(v); err == nil {
			t.Errorf("%q: accepted as %d, want an error", v, n)
		}
	}
}
