package devharness

import (
	"testing"
)

func TestCommandStatsSince(t *testing.T) {
	before, err := parseCommandStats("# Commandstats\r\n" +
		"cmdstat_get:calls=10,usec=50,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=2,usec=400,usec_per_call=200.00,rejected_calls=0,failed_calls=0\r\n")
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseCommandStats("# Commandstats\r\n" +
		"cmdstat_get:calls=30,usec=150,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=6,usec=1600,usec_per_call=266.67,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_xadd:calls=8,usec=40,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_ping:calls=1,usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0\r\n")
	if err != nil {
		t.Fatal(err)
	}
	got := after.since(before, 4)
	want := []RedisCommand{
		{Name: "EVALSHA", Calls: 4, Usec: 1200, CallsPerEvent: 1, UsecPerEvent: 300},
		{Name: "GET", Calls: 20, Usec: 100, CallsPerEvent: 5, UsecPerEvent: 25},
		{Name: "XADD", Calls: 8, Usec: 40, CallsPerEvent: 2, UsecPerEvent: 10},
		{Name: "PING", Calls: 1, Usec: 0, CallsPerEvent: 0.25, UsecPerEvent: 0},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestCommandStatsRejectsGarbage(t *testing.T) {
	if _, err := parseCommandStats("cmdstat_get:calls=x,usec=1\r\n"); err == nil {
		t.Fatal("a non-numeric count was accepted")
	}
}
