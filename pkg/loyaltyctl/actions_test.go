package loyaltyctl

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

func TestActionsListsACustomersDecisionsNewestFirst(t *testing.T) {
	keys, rdb := commandRedis(t)
	dep := testinfra.Name("dep")
	t.Setenv("LOYALTY_DEPLOYMENT", dep)
	d, err := keyspace.NewDeployment(dep)
	if err != nil {
		t.Fatal(err)
	}
	// The notifier pushes newest first: the pending care, then its delivery.
	for _, e := range []notifier.HistoryEntry{
		{ActionID: "a1", Kind: "CARE", Outcome: "PENDING", Reason: "rule:care", TriggerEventID: "ev-1", Channel: "webhook", DecidedAt: "2026-03-02T12:00:00Z"},
		{ActionID: "a1", Kind: "CARE", Outcome: "SENT", Reason: "rule:care", TriggerEventID: "ev-1", Channel: "webhook", DecidedAt: "2026-03-02T12:00:00Z", Attempts: 2},
		{ActionID: "a2", Kind: "WIN_BACK", Outcome: "SUPPRESSED", Reason: "cooldown", TriggerEventID: "ev-2", Channel: "webhook", DecidedAt: "2026-03-03T12:00:00Z"},
	} {
		raw, _ := json.Marshal(e)
		if err := rdb.LPush(context.Background(), notifier.HistoryKey(keys, d, "c-1"), raw).Err(); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"the table lists every decision with its outcome and reason, newest first", []string{"actions", "c-1"}, 0,
			[]string{"WIN_BACK  SUPPRESSED  cooldown", "CARE      SENT        rule:care", "CARE      PENDING"}},
		{"-n bounds the entries and --json prints one object a line", []string{"actions", "-n", "1", "--json", "c-1"}, 0,
			[]string{`"outcome":"SUPPRESSED"`, `"reason":"cooldown"`}},
		{"a customer without decisions is an error", []string{"actions", "nobody"}, 1, nil},
		{"a missing id is a usage error", []string{"actions"}, 2, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := run(t, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d: %s", code, c.code, errs)
			}
			for _, s := range c.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			if c.code == 0 && c.args[1] == "c-1" {
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 4 || !strings.Contains(lines[1], "WIN_BACK") || !strings.Contains(lines[3], "PENDING") {
					t.Errorf("want a header and three entries, newest first:\n%s", out)
				}
			}
			if strings.Contains(strings.Join(c.args, " "), "--json") && strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Errorf("-n 1 printed more than one line:\n%s", out)
			}
		})
	}
}

// commandRedis points the commands' environment at a Redis server and a fresh namespace of
// 8 shards, and returns that namespace's keys and a client for setting up state.
func commandRedis(t *testing.T) (keyspace.Keyspace, *redis.Client) {
	t.Helper()
	addr := testinfra.Redis(t)
	ns := testinfra.Name("ns")
	t.Setenv("REDIS_ADDR", addr)
	t.Setenv("LOYALTY_NAMESPACE", ns)
	t.Setenv("LOYALTY_SHARDS", "8")
	keys, err := keyspace.New(ns, 8)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return keys, rdb
}
