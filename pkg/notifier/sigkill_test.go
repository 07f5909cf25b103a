package notifier_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/e2e"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// TestASIGKILLedNotifierProcessRedeliversWithTheSameKeyAndLosesNothing is the crash test of
// delivery with a real process: the notifier binary is SIGKILLed while every webhook attempt
// is in flight (the receiver holds the requests), then started again. Each action must be
// delivered again with the same idempotency key once its lease has run out, end SENT exactly
// once, and nothing may be lost.
func TestASIGKILLedNotifierProcessRedeliversWithTheSameKeyAndLosesNothing(t *testing.T) {
	// A real broker: the restarted process joins the group the killed one still belongs to,
	// which the in-process broker does not always resolve before its clients time out.
	redis, redisCluster := testinfra.RedisEnv(t)
	in := infra{brokers: testinfra.RealKafkaBroker(t), redis: redis, redisCluster: redisCluster}
	e := newEnv(t, in, nil, nil)
	e.hook.block = make(chan struct{})
	ctx := context.Background()
	bins, err := e2e.Build(ctx, t.TempDir(), "notifier")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"LOYALTY_SHARDS": "4", "KAFKA_PARTITIONS": "2", "BATCH_LINGER": "5ms",
		notifier.EnvSecret: testSecret, notifier.EnvTimeout: "2s", notifier.EnvBackoffBase: "50ms", notifier.EnvBackoffMax: "200ms",
		"REDIS_CLUSTER": in.redisCluster}
	for _, k := range []event.ActionKind{event.ActionCare, event.ActionWinBack, event.ActionVIPWelcome, event.ActionDowngradeWarning} {
		env[notifier.EnvChannelPrefix+string(k)] = e.hook.url(k)
	}
	logs := t.TempDir()
	cluster := &e2e.Cluster{Brokers: in.brokers, Redis: in.redis, Namespace: e.ns, Suffix: e.suffix, Bins: bins, LogDir: logs, Env: env}
	t.Cleanup(func() { _ = cluster.Stop(10 * time.Second) })

	customers := e.produceUpgrades("sigkill", 5)
	first, err := cluster.Start(ctx, "notifier")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every action to be in flight", func() bool { return len(e.hook.requests()) == len(customers) })
	first.Kill()
	killedAt := time.Now()

	// The receiver recovers; a new process takes over the queue once the leases expire.
	e.hook.mu.Lock()
	close(e.hook.block)
	e.hook.block = nil
	e.hook.mu.Unlock()
	if _, err := cluster.Start(ctx, "notifier"); err != nil {
		t.Fatal(err)
	}
	for _, id := range customers {
		want := notifier.ActionID("sigkill-up-"+id, event.ActionVIPWelcome)
		// The attempt cut off by the kill, then the redelivery, answered 200. (How the first
		// is recorded races with the receiver's recovery: only the count and keys matter.)
		waitFor(t, 90*time.Second, "the redelivery to "+id, func() bool {
			hooks := e.deliveriesFor(id)
			return len(hooks) >= 2 && hooks[len(hooks)-1].Status == http.StatusOK
		})
		var keys []string
		for _, h := range e.deliveriesFor(id) {
			keys = append(keys, h.Key)
			if h.Key != want {
				t.Errorf("customer %s: a delivery with key %s, want every attempt to carry %s", id, h.Key, want)
			}
		}
		if len(keys) != 2 {
			t.Errorf("customer %s: %d deliveries, want the one in flight at the kill and one redelivery", id, len(keys))
		}
		recs := e.waitRecords(id, 1)
		sent := 0
		for _, r := range recs {
			if r.Outcome == event.OutcomeSent && r.ActionID == want {
				sent++
			}
		}
		if sent != 1 {
			t.Errorf("customer %s: records %+v, want exactly one SENT %s", id, recs, want)
		}
	}
	t.Logf("every action redelivered %s after the kill", time.Since(killedAt).Round(time.Second))
	if t.Failed() {
		t.Logf("notifier logs are in %s", logs)
	}
}
