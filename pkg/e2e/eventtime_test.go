package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/e2e"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/replay"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// TestAcceptanceLiveEqualsReplayWhateverTheConsumersDid is the event-time acceptance test: a
// generated history of 300 customers over 90 days (120 at full size) of purchases, refunds,
// logins, NPS, CSAT and complaints, spread over real days ending now, runs through every
// service as real processes on real Kafka and Redis in three ways:
//
//   - (a) all three topics produced together, as a backlog;
//   - (b) the logins service stopped while purchases and feedback are consumed (they run
//     ahead until the alignment lead pauses them), then started;
//   - (c) the logins service SIGKILLed while caught up; new events arrive while it is down;
//     it is started again later.
//
// After each, `replay` of the same topics into a fresh namespace must reproduce the live
// run exactly: the same state for every customer (tier, churn level, segment and everything
// else) and the same derived events, byte for byte apart from the replay flag.
func TestAcceptanceLiveEqualsReplayWhateverTheConsumersDid(t *testing.T) {
	customers, days, outage := 300, 120, 3*time.Minute
	if testing.Short() {
		days, outage = 90, 20*time.Second
	}
	bins := buildServices(t)
	for _, variant := range []struct {
		name string
		live func(w *world, r *run, history []event.Input) result
	}{
		{"a/backlog of all three topics", func(w *world, r *run, history []event.Input) result {
			w.produce(history)
			if _, err := r.cluster.StartAll(context.Background(), e2e.Services()...); err != nil {
				t.Fatal(err)
			}
			return r.finish(5 * time.Minute)
		}},
		{"b/logins down while the others consume", func(w *world, r *run, history []event.Input) result {
			w.produce(history)
			ctx := context.Background()
			if _, err := r.cluster.StartAll(ctx, "purchases", "feedback", "relay", "sweeper"); err != nil {
				t.Fatal(err)
			}
			left := waitStalled(t, r, "purchases", "feedback")
			w.t.Logf("without logins, purchases and feedback stopped with %v records left (the alignment lead)", left)
			if left["purchases"] == 0 && left["feedback"] == 0 {
				t.Errorf("purchases and feedback consumed the whole history while logins was down: nothing held them to the lead")
			}
			if _, err := r.cluster.Start(ctx, "logins"); err != nil {
				t.Fatal(err)
			}
			return r.finish(5 * time.Minute)
		}},
		{"c/logins killed while caught up", func(w *world, r *run, history []event.Input) result {
			w.produce(history)
			ctx := context.Background()
			procs, err := r.cluster.StartAll(ctx, e2e.Services()...)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.observer.WaitDone(ctx, 5*time.Minute, nil); err != nil {
				t.Fatal(err)
			}
			// Caught up, the watermark follows the consumers' heartbeats: the wall clock less
			// the hour of lateness, give or take a heartbeat.
			lateness := time.Hour
			lag := watermarkLag(t, r)
			t.Logf("caught up: watermark lag %s (allowed lateness %s)", lag.Round(time.Millisecond), lateness)
			if lag < lateness || lag > lateness+time.Minute {
				t.Errorf("caught-up watermark lag %s, want the lateness %s plus at most a minute of heartbeats", lag, lateness)
			}
			procs["logins"].Kill()
			w.produce(liveTraffic(history, time.Now().UTC()))
			time.Sleep(outage)
			// The killed consumer's partitions hold the watermark where its last heartbeat left it.
			if held := watermarkLag(t, r); held < lateness+outage {
				t.Errorf("watermark lag %s after a %s outage of logins: the dead consumer's partitions did not hold it", held, outage)
			} else {
				t.Logf("after a %s outage of logins the watermark lags %s", outage, held.Round(time.Second))
			}
			restarted := time.Now()
			if _, err := r.cluster.Start(ctx, "logins"); err != nil {
				t.Fatal(err)
			}
			if err := r.observer.WaitDone(ctx, 5*time.Minute, nil); err != nil {
				t.Fatal(err)
			}
			t.Logf("recovered from the %s outage %s after logins restarted (caught up, evaluated and published; watermark lag %s)",
				outage, time.Since(restarted).Round(100*time.Millisecond), watermarkLag(t, r).Round(time.Second))
			return r.finish(5 * time.Minute)
		}},
	} {
		t.Run(variant.name, func(t *testing.T) {
			awayFromDayClose(t)
			w := newWorldWith(t, bins)
			history := e2e.History(e2e.HistoryConfig{Customers: customers, Days: days, End: time.Now().UTC().Add(-time.Minute),
				Seed: 10, Prefix: "et" + strings.SplitN(variant.name, "/", 2)[0]})
			r := w.newRun("live")
			start := time.Now()
			live := variant.live(w, r, history)
			t.Logf("live: %d input events, %d customers, %d derived events in %s", len(history), len(live.state), len(live.derived),
				time.Since(start).Round(time.Second))
			start = time.Now()
			replayed := w.replay(r)
			t.Logf("replay: %d derived events in %s", len(replayed.derived), time.Since(start).Round(time.Second))
			if len(live.derived) == 0 {
				t.Fatal("the live run derived nothing")
			}
			compareStates(t, live.state, replayed.state)
			sameDerivedEvents(t, w, live.derived, replayed.derived)
		})
	}
}

// watermarkLag is the wall clock minus the run's watermark.
func watermarkLag(t *testing.T, r *run) time.Duration {
	t.Helper()
	wm, ok, err := r.observer.Watermark(context.Background())
	if err != nil || !ok {
		t.Fatalf("no watermark (%v)", err)
	}
	return time.Since(wm)
}

// awayFromDayClose waits while a day is about to close on the wall clock: the final
// watermark of a caught-up pipeline is the wall clock less the hour of lateness, so days
// close at 01:00 UTC plus that hour, and a live run and its replay must see the same days
// closed. A variant takes a minute or two at CI size (-short) and up to about 15 at full
// size; a wait that would overrun the test binary's -timeout fails at once, saying so,
// instead of panicking at the timeout.
func awayFromDayClose(t *testing.T) {
	need := 20 * time.Minute
	if testing.Short() {
		need = 5 * time.Minute
	}
	now := time.Now().UTC()
	wait := wallClockWait(now, 2*time.Hour, need, time.Minute) // the close at 02:00 UTC, and a minute
	if wait == 0 {
		return
	}
	if deadline, ok := t.Deadline(); ok && now.Add(wait+need).After(deadline) {
		t.Fatalf("a day closes on the wall clock in %s, and waiting %s for it plus the run (%s) exceeds -timeout: raise TEST_TIMEOUT to at least %s",
			(wait - time.Minute).Round(time.Second), wait.Round(time.Second), need, (wait + 2*need).Round(time.Minute))
	}
	t.Logf("waiting %s until the day closes", wait.Round(time.Second))
	time.Sleep(wait)
}

// waitStalled waits until the given services' lag stops moving for three seconds (paused, or
// done) and returns it.
func waitStalled(t *testing.T, r *run, services ...string) map[string]int64 {
	t.Helper()
	var last map[string]int64
	since := time.Now()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		_, lags, err := r.observer.ServiceLags(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		now := map[string]int64{}
		for _, s := range services {
			now[s] = lags[s]
		}
		if last == nil || !mapsEqual(last, now) {
			last, since = now, time.Now()
			continue
		}
		if time.Since(since) >= 3*time.Second {
			return now
		}
	}
	t.Fatalf("the lag of %v kept moving for three minutes", services)
	return nil
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// liveTraffic is what arrives while a consumer is down: for every fifth customer of history,
// a login and a purchase at about now.
func liveTraffic(history []event.Input, now time.Time) []event.Input {
	var ids []string
	seen := map[string]bool{}
	for _, in := range history {
		if c := in.Customer(); !seen[c] {
			seen[c] = true
			ids = append(ids, c)
		}
	}
	slices.Sort(ids)
	var out []event.Input
	for i, c := range ids {
		if i%5 != 0 {
			continue
		}
		at := now.Add(-time.Duration(i) * time.Millisecond)
		out = append(out,
			event.Login{EventID: c + "-live-login", CustomerID: c, OccurredAt: at, Channel: event.ChannelApp},
			event.Purchase{EventID: c + "-live-buy", CustomerID: c, OccurredAt: at, OrderID: c + "-live-order",
				Kind: event.KindPurchase, AmountMinor: 4_200, Currency: "USD"})
	}
	return out
}

// replay replays the run's input topics into a fresh namespace with shadow outputs, as
// `loyaltyctl replay --outputs shadow` does, and returns what it left.
func (w *world) replay(r *run) result {
	w.t.Helper()
	ctx := context.Background()
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"KAFKA_BROKERS": strings.Join(w.brokers, ","), "REDIS_ADDR": w.redis,
			"LOYALTY_NAMESPACE": r.cluster.Namespace, "LOYALTY_TOPIC_SUFFIX": w.suffix,
			"LOYALTY_SHARDS": fmt.Sprint(w.shards), "HTTP_ADDR": "off",
			// the registry the services use (see registryConfig)
			"SCHEMA_REGISTRY_URL": os.Getenv("SCHEMA_REGISTRY_URL"), "SCHEMA_REGISTRY_USERNAME": os.Getenv("SCHEMA_REGISTRY_USERNAME"),
			"SCHEMA_REGISTRY_PASSWORD": os.Getenv("SCHEMA_REGISTRY_PASSWORD")}[k]
	}, "")
	if err != nil {
		w.t.Fatal(err)
	}
	ns := testinfra.Namespace(w.t, "replay")
	if _, err := wiring.Replay(ctx, cfg, replay.Config{Namespace: ns, Outputs: replay.OutputsShadow},
		zaptest.NewLogger(w.t, zaptest.Level(zap.WarnLevel))); err != nil {
		w.t.Fatal(err)
	}
	state, err := w.observer(ns).State(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	var shadows []string
	for _, topic := range r.observer.OutputTopics() {
		shadows = append(shadows, replay.ShadowTopic(topic, ns))
	}
	to, err := e2e.Positions(ctx, w.admin, shadows...)
	if err != nil {
		w.t.Fatal(err)
	}
	derived, err := e2e.ReadDerived(ctx, w.admin, w.codec, nil, to)
	if err != nil {
		w.t.Fatal(err)
	}
	return result{state: state, derived: derived}
}

// sameDerivedEvents checks that live and replay derived the same events, by id, and that
// each replayed record is the live one with the replay flag set.
func sameDerivedEvents(t *testing.T, w *world, live, replayed []e2e.Derived) {
	t.Helper()
	index := func(ds []e2e.Derived) map[string]e2e.Derived {
		out := map[string]e2e.Derived{}
		for _, d := range ds {
			if first, ok := out[d.ID]; ok && !bytes.Equal(first.Value, d.Value) {
				t.Errorf("event %s was published twice with different contents", d.ID)
			}
			out[d.ID] = d
		}
		return out
	}
	a, b := index(live), index(replayed)
	// The history spans many cut-point boundaries with enough customers: segments must have
	// been scored with several population cut-point versions, derived live and in the replay.
	versions := map[string]bool{}
	for _, d := range a {
		if sc, ok := d.Event.(event.SegmentChanged); ok && strings.HasPrefix(sc.CutpointsVersion, "rfm-") {
			versions[sc.CutpointsVersion] = true
		}
	}
	if len(versions) < 3 {
		t.Errorf("live segment changes used %d population cut-point versions (%v), want several", len(versions), versions)
	}
	var missing, extra, differ []string
	for id, d := range a {
		got, ok := b[id]
		if !ok {
			missing = append(missing, describeDerived(d))
			continue
		}
		asLive, wasReplay := withoutReplayFlag(got.Event)
		if !wasReplay {
			t.Errorf("replayed event %s is not marked as a replay", id)
		}
		norm, err := w.codec.Encode(asLive)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(norm, d.Value) {
			differ = append(differ, fmt.Sprintf("%s: live %+v, replay %+v", id, d.Event, got.Event))
		}
	}
	for id, d := range b {
		if _, ok := a[id]; !ok {
			extra = append(extra, describeDerived(d))
		}
	}
	for what, list := range map[string][]string{"missing from the replay": missing, "extra in the replay": extra, "different in the replay": differ} {
		if len(list) > 0 {
			slices.Sort(list)
			t.Errorf("%d of %d live derived events %s, e.g.\n  %s", len(list), len(a), what, strings.Join(list[:min(8, len(list))], "\n  "))
		}
	}
}

// withoutReplayFlag returns a derived event with its replay flag cleared, and the flag.
func withoutReplayFlag(e event.Event) (event.Event, bool) {
	switch v := e.(type) {
	case event.TierChanged:
		flag := v.Replay
		v.Replay = false
		return v, flag
	case event.ChurnRiskChanged:
		flag := v.Replay
		v.Replay = false
		return v, flag
	case event.SegmentChanged:
		flag := v.Replay
		v.Replay = false
		return v, flag
	}
	return e, false
}

func describeDerived(d e2e.Derived) string {
	return fmt.Sprintf("%s %s %+v", d.Topic, d.Customer, d.Event)
}
