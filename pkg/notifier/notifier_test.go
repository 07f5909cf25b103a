package notifier_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

func rulesWith(t *testing.T, yaml string) *notifier.Rules {
	t.Helper()
	r, err := notifier.ParseRules([]byte(yaml), scoring.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// defaultRulesWithThreshold is the default rules file with a fixed CLV threshold.
func defaultRulesWithThreshold(t *testing.T, minor float64) *notifier.Rules {
	y := strings.Replace(string(notifier.DefaultRulesYAML()), "threshold_minor: 0", fmt.Sprintf("threshold_minor: %.0f", minor), 1)
	return rulesWith(t, y)
}

func TestDefaultRulesSendEachActionToItsTeamOnce(t *testing.T) {
	in := newInfra(t)
	e := newEnv(t, in, nil, nil)
	def := notifier.DefaultRules()
	p := e.rt.Policy

	// Two customers below GOLD: a frequent buyer (high CLV) and an occasional one (low CLV);
	// the threshold sits between them, so only the first is "in the top 20%".
	frequent, occasional := treated(def, "frequent"), treated(def, "occasional")
	stFrequent := e.seed(frequent, customer{purchases: 20, amountMinor: 4000})
	stOccasional := e.seed(occasional, customer{purchases: 2, amountMinor: 30000})
	clvHigh := notifier.CLVMinor(stFrequent, scoring.DayOf(t0), p, def.CLV)
	clvLow := notifier.CLVMinor(stOccasional, scoring.DayOf(t0), p, def.CLV)
	if !(clvHigh > clvLow && clvLow > 0) {
		t.Fatalf("CLV of the frequent buyer %.0f should exceed the occasional one's %.0f > 0", clvHigh, clvLow)
	}
	if got := p.TierName(int(stFrequent.Tier)); got != "SILVER" {
		t.Fatalf("frequent buyer is %s, want SILVER (below the tier clause of the care rule)", got)
	}
	rules := defaultRulesWithThreshold(t, (clvHigh+clvLow)/2)

	gold := treated(def, "gold")
	e.seed(gold, customer{purchases: 10, amountMinor: 25000})
	complaining := treated(def, "complaining")
	e.seed(complaining, customer{purchases: 2, amountMinor: 10000, openComplaint: true})
	ids := map[string]string{}
	for _, name := range []string{"upgrade-gold", "upgrade-silver", "warning", "falling", "downgrade"} {
		ids[name] = treated(def, name)
	}

	cases := []struct {
		name     string
		trigger  event.Event
		customer string
		kind     event.ActionKind // "" for no action
		rule     string
	}{
		{"churn rising to HIGH for a GOLD customer sends care to support",
			churn(gold, "ev-gold", event.ChurnMedium, event.ChurnHigh, t0), gold, event.ActionCare, "care-valuable-customer-at-high-risk"},
		{"churn rising to HIGH for a customer whose CLV is in the top 20% sends care",
			churn(frequent, "ev-frequent", event.ChurnLow, event.ChurnHigh, t0), frequent, event.ActionCare, "care-valuable-customer-at-high-risk"},
		{"rising risk with an open complaint sends care even below HIGH",
			churn(complaining, "ev-complaint", event.ChurnLow, event.ChurnMedium, t0), complaining, event.ActionCare, "care-open-complaint-risk-rises"},
		{"churn reaching HIGH for an ordinary customer without a complaint sends win-back to marketing",
			churn(occasional, "ev-occasional", event.ChurnMedium, event.ChurnHigh, t0), occasional, event.ActionWinBack, "win-back-high-risk"},
		{"an upgrade to GOLD sends a VIP welcome",
			tier(ids["upgrade-gold"], "ev-up-gold", event.TierSilver, event.TierGold, event.DirectionUp, t0), ids["upgrade-gold"], event.ActionVIPWelcome, "vip-welcome"},
		{"a review warning sends a downgrade warning",
			tier(ids["warning"], "ev-warning", event.TierGold, event.TierGold, event.DirectionWarning, t0), ids["warning"], event.ActionDowngradeWarning, "downgrade-warning"},
		{"an upgrade to SILVER sends nothing",
			tier(ids["upgrade-silver"], "ev-up-silver", event.TierBronze, event.TierSilver, event.DirectionUp, t0), ids["upgrade-silver"], "", ""},
		{"falling churn risk sends nothing",
			churn(ids["falling"], "ev-falling", event.ChurnHigh, event.ChurnMedium, t0), ids["falling"], "", ""},
		{"a downgrade sends nothing",
			tier(ids["downgrade"], "ev-down", event.TierGold, event.TierSilver, event.DirectionDown, t0), ids["downgrade"], "", ""},
	}
	cfg := e.cfg
	cfg.Rules = rules
	e.start(e.rt, cfg)
	for _, c := range cases {
		e.produce(c.trigger)
	}
	unmatched := 0
	for _, c := range cases {
		if c.kind == "" {
			unmatched++
		}
	}
	waitFor(t, 30*time.Second, "the unmatched triggers to be counted", func() bool {
		return counter(t, e.rt, "loyalty_notifier_unmatched_total", nil) == float64(unmatched)
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.kind == "" {
				if recs, hooks := e.recordsFor(c.customer), e.deliveriesFor(c.customer); len(recs)+len(hooks) > 0 {
					t.Fatalf("want no action, got records %+v and %d deliveries", recs, len(hooks))
				}
				return
			}
			recs := e.waitRecords(c.customer, 1)
			r := recs[0]
			if len(recs) != 1 || r.Kind != c.kind || r.Outcome != event.OutcomeSent || r.Reason != "rule:"+c.rule || r.Channel != notifier.ChannelWebhook {
				t.Fatalf("records %+v, want one %s SENT by rule %s over the webhook", recs, c.kind, c.rule)
			}
			wantTrigger := triggerID(c.trigger)
			if r.TriggerEventID != wantTrigger || r.ActionID != notifier.ActionID(wantTrigger, c.kind) {
				t.Fatalf("record %+v does not name trigger %s and its action id", r, wantTrigger)
			}
			hooks := e.deliveriesFor(c.customer)
			if len(hooks) != 1 {
				t.Fatalf("%d deliveries, want 1", len(hooks))
			}
			h := hooks[0]
			if h.Path != "/"+strings.ToLower(string(c.kind)) || h.Key != r.ActionID || h.Parsed.Rule != c.rule ||
				h.Parsed.Trigger.EventID != wantTrigger || h.Parsed.Kind != c.kind {
				t.Fatalf("delivery %s key %s body %+v does not match the record %+v", h.Path, h.Key, h.Parsed, r)
			}
		})
	}
	if got := counter(t, e.rt, "loyalty_notifier_decisions_total", map[string]string{"kind": "CARE", "outcome": "SENT"}); got != 3 {
		t.Errorf("decisions_total{CARE,SENT} = %v, want 3", got)
	}
}

func TestArbitrationKeepsEachCustomerToOneExplainableAction(t *testing.T) {
	in := newInfra(t)
	e := newEnv(t, in, nil, nil)
	def := notifier.DefaultRules()
	e.start(e.rt, e.cfg)

	t.Run("a second action inside the cooldown is suppressed and one after it is sent", func(t *testing.T) {
		id := treated(def, "cooldown")
		e.seed(id, customer{purchases: 10, amountMinor: 25000})
		e.produce(churn(id, "cd-1", event.ChurnMedium, event.ChurnHigh, t0),
			churn(id, "cd-2", event.ChurnLow, event.ChurnHigh, t0.Add(6*24*time.Hour)),
			churn(id, "cd-3", event.ChurnLow, event.ChurnHigh, t0.Add(8*24*time.Hour)))
		recs := e.waitRecords(id, 3)
		want := []string{"cd-1 SENT", "cd-2 SUPPRESSED cooldown", "cd-3 SENT"}
		if got := summarize(recs); !sameSet(got, want) {
			t.Fatalf("records %v, want %v", got, want)
		}
		if n := len(e.deliveriesFor(id)); n != 2 {
			t.Fatalf("%d deliveries, want 2", n)
		}
	})

	t.Run("a customer in the hold-out group is recorded as held out and receives nothing", func(t *testing.T) {
		id := heldOut(def, "holdout")
		e.seed(id, customer{purchases: 10, amountMinor: 25000})
		e.produce(churn(id, "ho-1", event.ChurnMedium, event.ChurnHigh, t0))
		recs := e.waitRecords(id, 1)
		if got := summarize(recs); !sameSet(got, []string{"ho-1 HELD_OUT holdout"}) {
			t.Fatalf("records %v", got)
		}
		if n := len(e.deliveriesFor(id)); n != 0 {
			t.Fatalf("%d deliveries to a held-out customer", n)
		}
	})

	t.Run("a redelivered trigger never produces a second action", func(t *testing.T) {
		id := treated(def, "duplicate")
		e.seed(id, customer{purchases: 10, amountMinor: 25000})
		tr := churn(id, "dup-1", event.ChurnMedium, event.ChurnHigh, t0)
		e.produce(tr, tr)
		e.produce(tr)
		recs := e.waitRecords(id, 3)
		if got := summarize(recs); !sameSet(got, []string{"dup-1 SENT", "dup-1 SUPPRESSED duplicate", "dup-1 SUPPRESSED duplicate"}) {
			t.Fatalf("records %v", got)
		}
		ids := map[string]bool{}
		for _, r := range recs {
			ids[r.ActionID] = true
		}
		if len(ids) != 3 {
			t.Fatalf("records share action ids: %+v", recs)
		}
		waitFor(t, 10*time.Second, "the delivery", func() bool { return len(e.deliveriesFor(id)) == 1 })
		time.Sleep(200 * time.Millisecond)
		if n := len(e.deliveriesFor(id)); n != 1 {
			t.Fatalf("%d deliveries, want 1", n)
		}
	})

	t.Run("an undecodable trigger is dead-lettered and does not hold up the next one", func(t *testing.T) {
		id := treated(def, "garbage")
		e.seed(id, customer{purchases: 10, amountMinor: 25000})
		if err := e.rt.Producer.Produce(context.Background(), stream.Record{Topic: e.rt.Topic(event.TopicChurnRisk), Key: []byte(id), Value: []byte("not avro")}); err != nil {
			t.Fatal(err)
		}
		e.produce(churn(id, "gb-1", event.ChurnMedium, event.ChurnHigh, t0))
		if got := summarize(e.waitRecords(id, 1)); !sameSet(got, []string{"gb-1 SENT"}) {
			t.Fatalf("records %v", got)
		}
		waitFor(t, 20*time.Second, "the dead letter", func() bool { return len(deadLettersFor(e, id)) == 1 })
		if dl := deadLettersFor(e, id)[0]; dl.ErrorCode == "" || string(dl.Value) != "not avro" || dl.Service != notifier.Service {
			t.Fatalf("dead letter %+v", dl)
		}
	})

	t.Run("replay-marked triggers are recorded as suppressed and never acted on", func(t *testing.T) {
		id := treated(def, "replay")
		e.seed(id, customer{purchases: 10, amountMinor: 25000})
		replayed := churn(id, "rp-1", event.ChurnMedium, event.ChurnHigh, t0)
		replayed.Replay = true
		upgrade := tier(id, "rp-2", event.TierSilver, event.TierGold, event.DirectionUp, t0)
		upgrade.Replay = true
		e.produce(replayed, upgrade)
		recs := e.waitRecords(id, 2)
		if got := summarize(recs); !sameSet(got, []string{"rp-1 SUPPRESSED replay", "rp-2 SUPPRESSED replay"}) {
			t.Fatalf("records %v", got)
		}
		// A replayed trigger does not start a cooldown: a live one a day later is sent.
		e.produce(churn(id, "rp-3", event.ChurnLow, event.ChurnHigh, t0.Add(24*time.Hour)))
		recs = e.waitRecords(id, 3)
		if got := summarize(recs); !slices.Contains(got, "rp-3 SENT") {
			t.Fatalf("records %v, want rp-3 SENT", got)
		}
		if n := len(e.deliveriesFor(id)); n != 1 {
			t.Fatalf("%d deliveries, want only the live one", n)
		}
	})
}

func TestNoWinBackIsSentWhileAComplaintIsOpen(t *testing.T) {
	in := newInfra(t)
	rules := rulesWith(t, `
version: win-back-only
cooldown: 168h
holdout_percent: 0
holdout_salt: s
clv: {top_fraction: 0.2, horizon_days: 365, annual_discount: 0.1, gamma_gamma: {p: 6.25, q: 3.74, gamma: 1544}, threshold_minor: 1000000000}
rules:
  - {name: win-back, kind: WIN_BACK, on: churn_risk, when: {to_level: [HIGH]}}
`)
	e := newEnv(t, in, rules, nil)
	e.start(e.rt, withRules(e.cfg, rules))
	complaining, quiet := "complaining", "quiet"
	e.seed(complaining, customer{purchases: 3, amountMinor: 5000, openComplaint: true})
	e.seed(quiet, customer{purchases: 3, amountMinor: 5000})
	e.produce(churn(complaining, "wb-1", event.ChurnMedium, event.ChurnHigh, t0), churn(quiet, "wb-2", event.ChurnMedium, event.ChurnHigh, t0))
	if got := summarize(e.waitRecords(complaining, 1)); !sameSet(got, []string{"wb-1 SUPPRESSED open_complaint"}) {
		t.Fatalf("complaining customer: %v", got)
	}
	if got := summarize(e.waitRecords(quiet, 1)); !sameSet(got, []string{"wb-2 SENT"}) {
		t.Fatalf("quiet customer: %v", got)
	}
	if n := len(e.deliveriesFor(complaining)); n != 0 {
		t.Fatalf("%d win-backs delivered during an open complaint", n)
	}
}

func TestCarePreemptsAPendingWinBackButNeverTheReverse(t *testing.T) {
	in := newInfra(t)
	// Win-back's endpoint is down, so the win-back waits in backoff: pending.
	e := newEnv(t, in, nil, func(r received, _ int) int {
		if r.Path == "/win_back" {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := e.cfg
	cfg.Delivery.BackoffBase, cfg.Delivery.BackoffMax = time.Minute, time.Minute
	e.start(e.rt, cfg)
	id := treated(notifier.DefaultRules(), "preempt")
	e.seed(id, customer{purchases: 2, amountMinor: 5000})

	e.produce(churn(id, "pe-1", event.ChurnMedium, event.ChurnHigh, t0))
	waitFor(t, 30*time.Second, "the win-back's first attempt to fail and wait for a retry", func() bool {
		return counter(t, e.rt, "loyalty_notifier_delivery_retries_total", map[string]string{"kind": "WIN_BACK"}) == 1
	})
	// A complaint opens; the next rise of risk calls for care inside the win-back's window.
	e.seed(id, customer{purchases: 2, amountMinor: 5000, openComplaint: true})
	e.produce(churn(id, "pe-2", event.ChurnLow, event.ChurnMedium, t0.Add(24*time.Hour)))
	recs := e.waitRecords(id, 2)
	if got := summarize(recs); !sameSet(got, []string{"pe-1 SUPPRESSED preempted_by_care", "pe-2 SENT"}) {
		t.Fatalf("records %v", got)
	}
	// The complaint closes; a win-back inside the care's window is held back by the cooldown.
	e.seed(id, customer{purchases: 2, amountMinor: 5000})
	e.produce(churn(id, "pe-3", event.ChurnMedium, event.ChurnHigh, t0.Add(48*time.Hour)))
	recs = e.waitRecords(id, 3)
	if got := summarize(recs); !slices.Contains(got, "pe-3 SUPPRESSED cooldown") {
		t.Fatalf("records %v, want pe-3 SUPPRESSED cooldown", got)
	}
	paths := []string{}
	for _, d := range e.deliveriesFor(id) {
		paths = append(paths, d.Path)
	}
	if !slices.Equal(paths, []string{"/win_back", "/care"}) {
		t.Fatalf("deliveries %v, want the one failed win-back attempt and the care", paths)
	}
}

func TestDeliveryRetriesTransientFailuresOnlyAndDeadLettersTheRest(t *testing.T) {
	in := newInfra(t)
	def := notifier.DefaultRules()
	retry, reject, down, slow, logged := treated(def, "retry"), treated(def, "reject"), treated(def, "down"), treated(def, "slow"), treated(def, "logged")
	e := newEnv(t, in, nil, func(r received, nth int) int {
		switch r.Parsed.CustomerID {
		case retry:
			if nth < 3 {
				return http.StatusBadGateway
			}
		case reject:
			return http.StatusUnprocessableEntity
		case down:
			return http.StatusServiceUnavailable
		case slow:
			if nth == 1 {
				time.Sleep(700 * time.Millisecond) // past the attempt timeout
			}
		}
		return http.StatusOK
	})
	cfg := e.cfg
	cfg.Delivery.Timeout = 400 * time.Millisecond
	cfg.Channels[event.ActionDowngradeWarning] = notifier.ChannelLog
	e.start(e.rt, cfg)
	up := func(id string) event.TierChanged {
		return tier(id, "up-"+id, event.TierSilver, event.TierGold, event.DirectionUp, t0)
	}
	e.produce(up(retry), up(reject), up(down), up(slow),
		tier(logged, "warn-"+logged, event.TierGold, event.TierGold, event.DirectionWarning, t0))

	cases := []struct {
		name     string
		customer string
		outcome  event.ActionOutcome
		attempts int
		dlqCode  string
	}{
		{"5xx answers are retried with the same idempotency key until one succeeds", retry, event.OutcomeSent, 3, ""},
		{"a 4xx answer is not retried, fails the action and dead-letters it", reject, event.OutcomeFailed, 1, notifier.CodeRejected},
		{"an endpoint that stays down gets every attempt, then the action is dead-lettered", down, event.OutcomeDeadLettered, testDelivery.MaxAttempts, notifier.CodeExhausted},
		{"a timeout is retried like a 5xx", slow, event.OutcomeSent, 2, ""},
		{"the log channel sends without HTTP", logged, event.OutcomeSent, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs := e.waitRecords(c.customer, 1)
			if len(recs) != 1 || recs[0].Outcome != c.outcome {
				t.Fatalf("records %+v, want one %s", recs, c.outcome)
			}
			hooks := e.deliveriesFor(c.customer)
			if len(hooks) != c.attempts {
				t.Fatalf("%d attempts, want %d", len(hooks), c.attempts)
			}
			for i, h := range hooks {
				if h.Key != recs[0].ActionID || h.Attempt != i+1 || !bytes.Equal(h.Body, hooks[0].Body) {
					t.Fatalf("attempt %d: key %s attempt header %d; want key %s, attempt %d and the first attempt's body", i+1, h.Key, h.Attempt, recs[0].ActionID, i+1)
				}
			}
			var dls []event.DeadLetter
			if c.dlqCode != "" {
				waitFor(t, 20*time.Second, "the dead letter", func() bool { return len(deadLettersFor(e, c.customer)) > 0 })
			}
			dls = deadLettersFor(e, c.customer)
			if c.dlqCode == "" {
				if len(dls) != 0 {
					t.Fatalf("dead letters %+v for a delivered action", dls)
				}
				return
			}
			if len(dls) != 1 || dls[0].ErrorCode != c.dlqCode || dls[0].Service != notifier.Service || !bytes.Equal(dls[0].Value, hooks[0].Body) ||
				dls[0].SourceTopic != e.rt.Topic(event.TopicTierChanges) {
				t.Fatalf("dead letters %+v, want one %s carrying the webhook body and the trigger's topic", dls, c.dlqCode)
			}
		})
	}
	if got := counter(t, e.rt, "loyalty_notifier_delivery_retries_total", map[string]string{"kind": "VIP_WELCOME"}); got != 2+2+1 {
		t.Errorf("retries_total = %v, want 5 (2 for the flaky endpoint, 2 for the one that stays down, 1 timeout)", got)
	}
}

func deadLettersFor(e *env, customer string) []event.DeadLetter {
	var out []event.DeadLetter
	for _, d := range e.dlq.deadLetters() {
		if string(d.Key) == customer {
			out = append(out, d)
		}
	}
	return out
}

func TestKillingTheNotifierMidDeliveryNeitherLosesNorDuplicatesAnAction(t *testing.T) {
	in := newInfra(t)
	e := newEnv(t, in, nil, nil)
	e.hook.block = make(chan struct{})
	customers := e.produceUpgrades("kill", 5)
	first := e.cfg
	first.Delivery.DrainTimeout = 10 * time.Millisecond // "kill": abandon in-flight attempts at once
	first.Delivery.Lease = 2500 * time.Millisecond
	stop := e.start(e.rt, first)
	waitFor(t, 30*time.Second, "every action to be in flight", func() bool { return len(e.hook.requests()) == len(customers) })
	stop()
	// The killed process closed its connections; the receiver sees that a moment later.
	waitFor(t, 10*time.Second, "the receiver to see every in-flight attempt abandoned", func() bool { return e.hook.abandoned() == len(customers) })

	// The receiver recovers; a new process (fresh runtime, same namespace and group) takes over.
	e.hook.mu.Lock()
	close(e.hook.block)
	e.hook.block = nil
	e.hook.mu.Unlock()
	second := e.cfg
	second.Delivery.Lease = first.Delivery.Lease
	e.start(e.runtime(), second)

	for _, id := range customers {
		recs := e.waitRecords(id, 1)
		want := notifier.ActionID("kill-up-"+id, event.ActionVIPWelcome)
		if len(recs) != 1 || recs[0].ActionID != want || recs[0].Outcome != event.OutcomeSent {
			t.Fatalf("customer %s: records %+v, want exactly one SENT %s", id, recs, want)
		}
		hooks := e.deliveriesFor(id)
		var answered []int
		for _, h := range hooks {
			if h.Key != want {
				t.Fatalf("customer %s: delivery with key %s, want every attempt to carry %s", id, h.Key, want)
			}
			answered = append(answered, h.Status)
		}
		if len(hooks) != 2 || answered[0] != 0 || answered[1] != http.StatusOK {
			t.Fatalf("customer %s: deliveries answered %v, want the abandoned attempt (0) and one successful redelivery (200)", id, answered)
		}
	}
	sent := 0
	for _, r := range e.actions.actions() {
		if r.Outcome == event.OutcomeSent {
			sent++
		}
	}
	if sent != len(customers) {
		t.Fatalf("%d SENT records, want %d", sent, len(customers))
	}
}

func withRules(c notifier.Config, r *notifier.Rules) notifier.Config {
	c.Rules = r
	return c
}

func triggerID(e event.Event) string {
	switch v := e.(type) {
	case event.ChurnRiskChanged:
		return v.EventID
	case event.TierChanged:
		return v.EventID
	}
	return ""
}

// summarize renders records as "trigger OUTCOME [reason]" (reason for non-SENT outcomes).
func summarize(recs []event.ActionDecided) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.TriggerEventID + " " + string(r.Outcome)
		if r.Outcome != event.OutcomeSent {
			out[i] += " " + r.Reason
		}
	}
	return out
}

func sameSet(got, want []string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

// BenchmarkTriggerToWebhook measures the end-to-end latency of one action: a tier upgrade
// produced to Kafka until its signed webhook arrives at the receiver (consume, read the
// customer, arbitrate, queue, claim, sign and POST). Run it with -benchtime=200x or so.
func BenchmarkTriggerToWebhook(b *testing.B) {
	in := newInfra(b)
	e := newEnv(b, in, nil, nil)
	e.start(e.rt, e.cfg)
	def := notifier.DefaultRules()
	// Warm up: the consumer group has joined once the first action arrives.
	warm := treated(def, "warm")
	e.produce(tier(warm, "warm", event.TierSilver, event.TierGold, event.DirectionUp, t0))
	waitFor(b, 60*time.Second, "the first delivery", func() bool { return len(e.hook.requests()) == 1 })
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		id := treated(def, fmt.Sprintf("bench%d", i))
		start := time.Now()
		e.produce(tier(id, "bench-"+id, event.TierSilver, event.TierGold, event.DirectionUp, t0))
		waitForFast(b, 10*time.Second, func() bool { return len(e.hook.requests()) == i+2 })
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func waitForFast(tb testing.TB, timeout time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("timed out")
		}
		time.Sleep(200 * time.Microsecond)
	}
}
