package notifier_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

const testSecret = "test-secret-0123456789abcdef"

// t0 is the event time the test histories are built around.
var t0 = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// infra is one broker and one Redis server shared by the subtests of a test; every env on it
// has its own topic suffix and key namespace.
type infra struct {
	brokers []string
	redis   string
	// redisCluster is REDIS_CLUSTER: "true" when redis holds the seeds of a Redis Cluster.
	redisCluster string
}

func newInfra(t testing.TB) infra {
	redis, cluster := testinfra.RedisEnv(t)
	return infra{brokers: testinfra.Kafka(t), redis: redis, redisCluster: cluster}
}

// received is one webhook request as the receiver saw it.
type received struct {
	Path      string
	Key       string
	Attempt   int
	Timestamp string
	Signature string
	Body      []byte
	Parsed    notifier.WebhookBody
	Status    int // the answer; 0 while pending or when the sender gave up
}

// receiver is a webhook endpoint that checks every request the way a receiving team would,
// independently of the notifier's own signing code.
type receiver struct {
	t       testing.TB
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []received
	respond func(r received, nth int) int // status for the nth request (1-based) with this key
	perKey  map[string]int
	// block, when not nil, holds requests until closed.
	block chan struct{}
	// gaveUp counts the held requests whose sender gave up (closed the connection).
	gaveUp int
}

func newReceiver(t testing.TB, respond func(r received, nth int) int) *receiver {
	rc := &receiver{t: t, respond: respond, perKey: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

// verifySignature is the documented receiver recipe (docs/webhooks.md), written out
// independently: "v2=" + hex(HMAC-SHA256(secret, timestamp + "." + key + "." + body)) must be
// one of the signature header's comma-separated values, and the timestamp must be recent.
func verifySignature(secret, timestamp, key, header string, body []byte, now time.Time) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %w", timestamp, err)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s is %s away", timestamp, d)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + "." + key + "." + string(body)))
	want := "v2=" + hex.EncodeToString(mac.Sum(nil))
	for _, got := range strings.Split(header, ",") {
		if hmac.Equal([]byte(strings.TrimSpace(got)), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("signature %q has no %q", header, want)
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Errorf("reading webhook body: %v", err)
		return
	}
	rec := received{Path: r.URL.Path, Key: r.Header.Get("Idempotency-Key"), Timestamp: r.Header.Get("X-Loyalty-Timestamp"),
		Signature: r.Header.Get("X-Loyalty-Signature"), Body: body}
	rec.Attempt, _ = strconv.Atoi(r.Header.Get("X-Loyalty-Attempt"))
	if err := verifySignature(testSecret, rec.Timestamp, rec.Key, rec.Signature, body, time.Now()); err != nil {
		rc.t.Errorf("webhook %s: signature does not verify: %v", rec.Key, err)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		rc.t.Errorf("Content-Type %q", ct)
	}
	if err := json.Unmarshal(body, &rec.Parsed); err != nil {
		rc.t.Errorf("webhook body is not JSON: %v", err)
	}
	if rec.Parsed.IdempotencyKey != rec.Key || rec.Parsed.ActionID != rec.Key {
		rc.t.Errorf("body action_id %q / idempotency_key %q differ from the header %q", rec.Parsed.ActionID, rec.Parsed.IdempotencyKey, rec.Key)
	}
	// Recorded on arrival, in arrival order; the status is filled in once decided.
	rc.mu.Lock()
	rc.perKey[rec.Key]++
	nth := rc.perKey[rec.Key]
	block := rc.block
	idx := len(rc.reqs)
	rc.reqs = append(rc.reqs, rec)
	rc.mu.Unlock()
	status := http.StatusOK
	if rc.respond != nil {
		status = rc.respond(rec, nth)
	}
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			status = 0 // the sender gave up: no answer reached it
		}
	}
	rc.mu.Lock()
	rc.reqs[idx].Status = status
	if block != nil && status == 0 {
		rc.gaveUp++
	}
	rc.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
	}
}

// abandoned returns how many held requests the sender gave up on.
func (rc *receiver) abandoned() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.gaveUp
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

func (rc *receiver) url(kind event.ActionKind) string {
	return rc.srv.URL + "/" + strings.ToLower(string(kind))
}

// collector gathers the decoded records of one topic.
type collector struct {
	mu     sync.Mutex
	events []event.Event
}

func (c *collector) snapshot() []event.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event.Event(nil), c.events...)
}

func (c *collector) actions() []event.ActionDecided {
	var out []event.ActionDecided
	for _, e := range c.snapshot() {
		if a, ok := e.(event.ActionDecided); ok {
			out = append(out, a)
		}
	}
	return out
}

func (c *collector) deadLetters() []event.DeadLetter {
	var out []event.DeadLetter
	for _, e := range c.snapshot() {
		if d, ok := e.(event.DeadLetter); ok {
			out = append(out, d)
		}
	}
	return out
}

// env is one isolated notifier with its relay, receiver and collectors.
type env struct {
	t        testing.TB
	in       infra
	ns       string
	suffix   string
	log      *zap.Logger
	rt       *wiring.Runtime
	hook     *receiver
	actions  *collector
	dlq      *collector
	cfg      notifier.Config
	stopping []func()
	// stopRelay stops the env's relay on its first runtime.
	stopRelay func()
}

// testDelivery is fast enough for tests and keeps every invariant of the defaults.
var testDelivery = notifier.DeliveryConfig{Timeout: 2 * time.Second, MaxAttempts: 3, BackoffBase: 20 * time.Millisecond,
	BackoffMax: 100 * time.Millisecond, Lease: 3 * time.Second, PollInterval: 50 * time.Millisecond, DrainTimeout: 2 * time.Second}

func newEnv(t testing.TB, in infra, rules *notifier.Rules, respond func(received, int) int) *env {
	e := &env{t: t, in: in, ns: testinfra.Namespace(t, "ns"), suffix: testinfra.TopicSuffix(t, "n"),
		log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
	e.rt = e.runtime()
	e.hook = newReceiver(t, respond)
	channels := map[event.ActionKind]string{}
	for _, k := range []event.ActionKind{event.ActionCare, event.ActionWinBack, event.ActionVIPWelcome, event.ActionDowngradeWarning} {
		channels[k] = e.hook.url(k)
	}
	e.cfg = notifier.Config{Rules: rules, Channels: channels, Secret: []byte(testSecret), Delivery: testDelivery}
	e.actions = e.collect(event.TopicActions)
	e.dlq = e.collect(event.TopicDeadLetter)
	e.stopRelay = e.goRun("relay", func(ctx context.Context) error { return wiring.RunRelay(ctx, e.rt, nil) })
	t.Cleanup(e.stop)
	return e
}

func (e *env) runtime() *wiring.Runtime {
	e.t.Helper()
	return e.runtimeIn(e.ns)
}

// runtimeIn is a runtime of the env's deployment (named like its first namespace) on
// namespace ns, the active one when ns was promoted.
func (e *env) runtimeIn(ns string) *wiring.Runtime {
	e.t.Helper()
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"KAFKA_BROKERS": strings.Join(e.in.brokers, ","), "REDIS_ADDR": e.in.redis, "REDIS_CLUSTER": e.in.redisCluster, "LOYALTY_NAMESPACE": ns, "LOYALTY_DEPLOYMENT": e.ns,
			"HTTP_ADDR": "off", "KAFKA_PARTITIONS": "2", "LOYALTY_SHARDS": "4", "BATCH_LINGER": "5ms"}[k]
	}, "")
	if err != nil {
		e.t.Fatal(err)
	}
	rt, err := wiring.NewRuntime(context.Background(), cfg, e.log, wiring.Options{TopicSuffix: e.suffix})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(rt.Close)
	return rt
}

// goRun runs f until the env stops (or until the returned cancel is called).
func (e *env) goRun(name string, f func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f(ctx); err != nil && ctx.Err() == nil {
			e.t.Errorf("%s: %v", name, err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.stopping = append(e.stopping, stop)
	return stop
}

func (e *env) stop() {
	for i := len(e.stopping) - 1; i >= 0; i-- {
		e.stopping[i]()
	}
	e.stopping = nil
}

// start runs the notifier on rt (a fresh runtime per run: metrics register once per runtime).
func (e *env) start(rt *wiring.Runtime, cfg notifier.Config) (stop func()) {
	return e.goRun("notifier", func(ctx context.Context) error { return wiring.RunNotifier(ctx, rt, cfg) })
}

func (e *env) collect(logical string) *collector {
	c := &collector{}
	cons, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: e.in.brokers, GroupID: testinfra.Name("collect"),
		Topics: []string{e.rt.Topic(logical)}, Linger: 5 * time.Millisecond},
		stream.HandlerFunc(func(ctx context.Context, b *stream.Batch) error {
			for _, m := range b.Messages {
				ev, err := e.rt.Codec.Decode(ctx, m.Value)
				if err != nil {
					return fmt.Errorf("record on %s does not decode: %w", m.Topic, err)
				}
				c.mu.Lock()
				c.events = append(c.events, ev)
				c.mu.Unlock()
			}
			return nil
		}), nil, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	e.goRun("collector", cons.Run)
	return c
}

// produce publishes triggers on the env's derived topics, keyed by customer.
func (e *env) produce(evs ...event.Event) {
	e.t.Helper()
	recs := make([]stream.Record, 0, len(evs))
	for _, ev := range evs {
		v, err := e.rt.Codec.Encode(ev)
		if err != nil {
			e.t.Fatal(err)
		}
		var topic, key string
		switch x := ev.(type) {
		case event.ChurnRiskChanged:
			topic, key = event.TopicChurnRisk, x.CustomerID
		case event.TierChanged:
			topic, key = event.TopicTierChanges, x.CustomerID
		default:
			e.t.Fatalf("cannot produce %T as a trigger", ev)
		}
		recs = append(recs, stream.Record{Topic: e.rt.Topic(topic), Key: []byte(key), Value: v})
	}
	if err := e.rt.Producer.Produce(context.Background(), recs...); err != nil {
		e.t.Fatal(err)
	}
}

// customer describes the stored history to build for a customer before its triggers.
type customer struct {
	purchases     int   // purchase days, weekly, ending a week before t0
	amountMinor   int64 // each
	openComplaint bool
}

// seed stores the customer's scoring state as the consumer services would have built it.
func (e *env) seed(id string, c customer) scoring.State {
	e.t.Helper()
	p := e.rt.Policy
	var st scoring.State
	apply := func(ev scoring.Event) {
		var err error
		st, _, err = scoring.Apply(st, ev, p)
		if err != nil {
			e.t.Fatalf("seeding %s: %v", id, err)
		}
	}
	off := int64(0)
	src := func() scoring.Source { off++; return scoring.Source{Topic: "seed", Offset: off} }
	for i := range c.purchases {
		at := t0.AddDate(0, 0, -7*(c.purchases-i))
		apply(scoring.Event{Kind: scoring.KindPurchase, EventID: fmt.Sprintf("%s-p%d", id, i), CustomerID: id, OccurredAt: at,
			AmountMinor: c.amountMinor, Currency: p.Currency, OrderID: fmt.Sprintf("o%d", i), Source: src()})
	}
	if c.openComplaint {
		apply(scoring.Event{Kind: scoring.KindFeedback, EventID: id + "-complaint", CustomerID: id, OccurredAt: t0.AddDate(0, 0, -2),
			FeedbackKind: scoring.FeedbackComplaintOpened, CaseID: "case-1", Source: src()})
	}
	store, err := state.New(context.Background(), e.rt.Redis, e.rt.Keys, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := store.Apply(context.Background(), []string{id}, func(string, state.Current) (state.Update, error) {
		value, err := st.AppendBinary(nil)
		return state.Update{Value: value}, err
	}); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// treated returns a customer id with the prefix that is not in the hold-out group of rules.
func treated(rules *notifier.Rules, prefix string) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if !notifier.HeldOut(rules.HoldoutSalt, id, rules.HoldoutPercent) {
			return id
		}
	}
}

// heldOut returns a customer id with the prefix that is in the hold-out group of rules.
func heldOut(rules *notifier.Rules, prefix string) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if notifier.HeldOut(rules.HoldoutSalt, id, rules.HoldoutPercent) {
			return id
		}
	}
}

func churn(id, eventID string, from, to event.ChurnLevel, at time.Time) event.ChurnRiskChanged {
	return event.ChurnRiskChanged{EventID: eventID, CustomerID: id, OccurredAt: at, FromLevel: from, ToLevel: to, Score: 0.75,
		PAlive: 0.3, ModelVersion: "bgnbd-v1", Source: event.Source{Topic: "sweeper", Offset: -1},
		Reasons: []event.Reason{{Code: scoring.ReasonPurchaseGap, Message: "no purchase in 74 days, 3x the usual gap", Value: 3}}}
}

func tier(id, eventID string, from, to event.Tier, dir event.TierDirection, at time.Time) event.TierChanged {
	return event.TierChanged{EventID: eventID, CustomerID: id, OccurredAt: at, FromTier: from, ToTier: to, Direction: dir,
		PolicyVersion: "default-2025.1", Source: event.Source{Topic: "loyalty.purchases.v1", Offset: 1},
		Reasons: []event.Reason{{Code: scoring.ReasonSpendQualifies, Message: "net spend qualifies", Value: 250000}}}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recordsFor returns the action records about one customer.
func (e *env) recordsFor(id string) []event.ActionDecided {
	var out []event.ActionDecided
	for _, a := range e.actions.actions() {
		if a.CustomerID == id {
			out = append(out, a)
		}
	}
	return out
}

// waitRecords waits until the customer has n action records and returns them.
func (e *env) waitRecords(id string, n int) []event.ActionDecided {
	e.t.Helper()
	waitFor(e.t, 30*time.Second, fmt.Sprintf("%d action records for %s", n, id), func() bool { return len(e.recordsFor(id)) >= n })
	return e.recordsFor(id)
}

// deliveriesFor returns the webhook requests about one customer.
func (e *env) deliveriesFor(id string) []received {
	var out []received
	for _, r := range e.hook.requests() {
		if r.Parsed.CustomerID == id {
			out = append(out, r)
		}
	}
	return out
}

// counter sums the samples of a counter in the runtime's registry whose labels include want.
func counter(t testing.TB, rt *wiring.Runtime, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := rt.Ops.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// produceUpgrades produces a SILVER→GOLD upgrade (trigger id "<prefix>-up-<customer>") for n
// customers outside the hold-out group, and returns the customers.
func (e *env) produceUpgrades(prefix string, n int) []string {
	e.t.Helper()
	def := notifier.DefaultRules()
	var customers []string
	for i := range n {
		id := treated(def, fmt.Sprintf("%s%d", prefix, i))
		customers = append(customers, id)
		e.produce(tier(id, prefix+"-up-"+id, event.TierSilver, event.TierGold, event.DirectionUp, t0))
	}
	return customers
}
