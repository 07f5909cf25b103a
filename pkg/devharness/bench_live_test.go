package devharness

import (
	"testing"
	"time"
)

func TestLagSummaryIsTheSteadyStateThenTheOutageAndTheRecovery(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	var samples []lagSample
	for s := 0.0; s < 100; s += 0.5 {
		lag := 3601.0
		switch {
		case s < 10:
			lag = 4000 // warm-up, ignored
		case s >= 30 && s < 60:
			lag = 3601 + (s - 30) // the outage: the watermark stands still
		case s >= 60 && s < 64:
			lag = 3640 - 10*(s-60) // catching up after the restart at 60 s
		}
		samples = append(samples, lagSample{at: at(s), lag: lag})
	}
	var r BenchReport
	r.summarizeLag(samples, start, at(200), &outageRun{service: "logins", stoppedAt: at(30), resumedAt: at(60)})
	if r.WatermarkLagSamples != 40 || r.WatermarkLagP50 != 3601 || r.WatermarkLagMax != 3601 {
		t.Fatalf("steady state: %+v", r)
	}
	if r.OutageSeconds != 30 || r.OutageLagMax != 3640 || r.RecoverySeconds != 3.5 {
		t.Fatalf("outage: %+v", r)
	}
	// After the last produce the lag grows with the wall clock; it is not counted as behind.
	var after BenchReport
	tail := append(samples[:124:124], lagSample{at: at(70), lag: 10 + 3601})
	after.summarizeLag(tail, start, at(60), &outageRun{service: "logins", stoppedAt: at(30), resumedAt: at(60)})
	if after.RecoverySeconds != 10 {
		t.Fatalf("recovery after the last produce: %v", after.RecoverySeconds)
	}
	var never BenchReport
	never.summarizeLag(samples[:124], start, at(200), &outageRun{service: "logins", stoppedAt: at(30), resumedAt: at(60)})
	if never.RecoverySeconds != -1 {
		t.Fatalf("a run that ends before the recovery reports %v", never.RecoverySeconds)
	}
}
