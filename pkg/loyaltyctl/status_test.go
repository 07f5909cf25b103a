package loyaltyctl

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// TestStatusReportsTheSeededPipelineState seeds Kafka and Redis with known lag, watermarks,
// outbox entries, deadlines, dead letters, a promoted namespace with its own policy and two
// ops servers, and checks every number `loyaltyctl status` reports.
func TestStatusReportsTheSeededPipelineState(t *testing.T) {
	ctx := context.Background()
	keys, rdb := commandRedis(t)
	brokers := testinfra.Kafka(t)
	suffix := testinfra.TopicSuffix(t, "st")
	deployment := testinfra.Name("dep")
	t.Setenv("KAFKA_BROKERS", strings.Join(brokers, ","))
	t.Setenv("LOYALTY_TOPIC_SUFFIX", suffix)
	t.Setenv("LOYALTY_DEPLOYMENT", deployment)
	// The configured namespace is not the live one: status follows the promotion.
	t.Setenv("LOYALTY_NAMESPACE", testinfra.Name("configured"))
	now := time.Now()

	// The active namespace and its own policy (version and lateness differ from the default).
	mustDo(t, rdb.Set(ctx, mustDeployment(t, deployment).Active(), keys.Namespace(), 0).Err())
	yaml := strings.Replace(strings.Replace(string(scoring.DefaultPolicyYAML()), "version: default-2025.1", "version: status-test-7", 1),
		"allowed_lateness: 1h", "allowed_lateness: 30m", 1)
	mustDo(t, namespace.StorePolicy(ctx, rdb, keys, []byte(yaml)))

	// Kafka: lag of 6 (purchases: 10 records, 4 committed) + 3 (logins, no commit) + 0
	// (feedback, empty), 0 on tier-changes (all 5 committed) and 2 on churn-risk; 3 of the 5
	// dead letters are from the last hour.
	topic := func(logical string) string { return logical + suffix }
	var specs []stream.TopicSpec
	for _, l := range append(event.InputTopics(), event.OutputTopics()...) {
		specs = append(specs, stream.TopicSpec{Name: topic(l), Partitions: 1, ReplicationFactor: 1})
	}
	// Retention: purchases 400 days, logins forever, the rest the broker's default (shorter
	// than the 365-day tier window).
	specs[0].Retention, specs[1].Retention = 400*24*time.Hour, stream.RetentionInfinite
	// Timestamps: purchases bounded as the services create inputs, logins and feedback at the
	// broker's default.
	specs[0].MaxTimestampAhead = stream.DefaultMaxTimestampAhead
	admin, err := stream.NewAdmin(brokers, stream.Security{}, zap.NewNop())
	mustDo(t, err)
	defer admin.Close()
	mustDo(t, admin.EnsureTopics(ctx, specs...))
	p, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, zap.NewNop())
	mustDo(t, err)
	defer p.Close()
	produce := func(logical string, n int, at time.Time) {
		t.Helper()
		recs := make([]stream.Record, n)
		for i := range recs {
			recs[i] = stream.Record{Topic: topic(logical), Key: []byte("c"), Value: []byte{byte(i)}, Time: at}
		}
		mustDo(t, p.Produce(ctx, recs...))
	}
	produce(event.TopicPurchases, 10, now)
	produce(event.TopicLogins, 3, now)
	produce(event.TopicTierChanges, 5, now)
	produce(event.TopicChurnRisk, 2, now)
	produce(event.TopicDeadLetter, 2, now.Add(-3*time.Hour))
	produce(event.TopicDeadLetter, 3, now.Add(-10*time.Minute))
	group := func(svc string) string { return "loyalty-" + keys.Namespace() + "-" + svc }
	mustDo(t, admin.CommitGroupOffsets(ctx, group("purchases"), topic(event.TopicPurchases), stream.Offsets{0: 4}))
	mustDo(t, admin.CommitGroupOffsets(ctx, group("notifier"), topic(event.TopicTierChanges), stream.Offsets{0: 5}))

	// Redis: purchases applied up to an hour ago; logins caught up, but its consumer last
	// heartbeat 2h ago, so it holds the watermark at that less the 30m of lateness; 3 outbox
	// entries, the oldest 5 minutes old; 3 deadlines, 2 due, 1 of them past the watermark.
	wmKey := keys.Global("watermarks")
	ms := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixMilli(), 10) }
	mustDo(t, rdb.HSet(ctx, wmKey, watermark.Field(topic(event.TopicPurchases), 0), ms(-time.Hour)+":0",
		watermark.Field(topic(event.TopicLogins), 0), ms(-5*time.Hour)+":"+ms(-2*time.Hour)).Err())
	for _, e := range []struct {
		shard int
		age   time.Duration
	}{{0, 5 * time.Minute}, {0, time.Minute}, {3, 2 * time.Minute}} {
		id := strconv.FormatInt(now.Add(-e.age).UnixMilli(), 10) + "-0"
		mustDo(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Outbox(e.shard), ID: id, Values: []any{"t", "x"}}).Err())
	}
	for _, d := range []struct {
		shard int
		at    time.Time
	}{{1, now.Add(-3 * time.Hour)}, {1, now.Add(-time.Hour)}, {5, now.Add(time.Hour)}} {
		mustDo(t, rdb.ZAdd(ctx, keys.Deadlines(d.shard), redis.Z{Score: float64(d.at.UnixMilli()), Member: d.at.String()}).Err())
	}

	// Ops servers: purchases ready, relay not; the others are not asked.
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer ready.Close()
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer notReady.Close()
	for _, s := range []string{"logins", "feedback", "sweeper", "notifier"} {
		t.Setenv(addrEnv(s), "off")
	}
	t.Setenv(addrEnv("relay"), strings.TrimPrefix(notReady.URL, "http://"))

	code, out, errs := run(t, "status", "--purchases-addr", strings.TrimPrefix(ready.URL, "http://"), "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("output is not the JSON status: %v\n%s", err, out)
	}
	if st.Namespace != keys.Namespace() || st.PolicyVersion != "status-test-7" {
		t.Errorf("namespace %s policy %s, want the promoted %s with policy status-test-7", st.Namespace, st.PolicyVersion, keys.Namespace())
	}
	wantLag := map[string]int64{"purchases " + topic(event.TopicPurchases): 6, "logins " + topic(event.TopicLogins): 3,
		"feedback " + topic(event.TopicFeedback): 0, "notifier " + topic(event.TopicTierChanges): 0, "notifier " + topic(event.TopicChurnRisk): 2}
	if len(st.Lag) != len(wantLag) {
		t.Errorf("lag of %d groups and topics, want %d: %+v", len(st.Lag), len(wantLag), st.Lag)
	}
	for _, l := range st.Lag {
		if want, ok := wantLag[l.Service+" "+l.Topic]; !ok || l.Lag != want || l.Group != group(l.Service) {
			t.Errorf("lag %+v, want %d in group %s", l, want, group(l.Service))
		}
	}
	if specs[0].Name != topic(event.TopicPurchases) || specs[1].Name != topic(event.TopicLogins) || specs[2].Name != topic(event.TopicFeedback) {
		t.Fatalf("the first specs are not purchases, logins, feedback: %+v", specs[:3])
	}
	wantRetention := map[string]TopicRetention{
		topic(event.TopicPurchases): {Topic: topic(event.TopicPurchases), Retention: (400 * 24 * time.Hour).String(),
			TimestampType: stream.CreateTime, TimestampMaxAhead: "1m0s"},
	}
	if len(st.Retention) != len(event.Streams()) {
		t.Errorf("retention of %d topics, want %d: %+v", len(st.Retention), len(event.Streams()), st.Retention)
	}
	for _, r := range st.Retention {
		want, ok := wantRetention[r.Topic]
		switch {
		case ok && r != want:
			t.Errorf("retention %+v, want %+v", r, want)
		case r.Topic == topic(event.TopicFeedback) && !r.Short:
			t.Errorf("feedback at the broker's default %s is not flagged shorter than the tier window", r.Retention)
		case r.Topic == topic(event.TopicLogins) && (r.Retention != "infinite" || !r.ProducerClock || r.TimestampType != stream.CreateTime):
			t.Errorf("logins at the broker's timestamp default is not flagged for producers' clocks: %+v", r)
		case r.Topic == topic(event.TopicTierChanges) && (r.Short || r.ProducerClock):
			t.Errorf("an output topic is flagged short or for producers' clocks: %+v", r)
		}
	}
	var written strings.Builder
	mustDo(t, st.WriteText(&written))
	if !strings.Contains(written.String(), "retention:") || !strings.Contains(written.String(), "SHORTER THAN THE TIER WINDOW") {
		t.Errorf("the text status lacks the retention section or its warning:\n%s", written.String())
	}
	if !strings.Contains(written.String(), "PRODUCERS' CLOCKS NOT BOUNDED (CreateTime") || !strings.Contains(written.String(),
		"--entity-name "+topic(event.TopicLogins)+" --add-config message.timestamp.type=CreateTime,message.timestamp.after.max.ms=60000") {
		t.Errorf("the text status does not flag logins' unbounded producer clocks with the fix:\n%s", written.String())
	}
	wantWM := time.UnixMilli(now.Add(-2 * time.Hour).UnixMilli()).Add(-30 * time.Minute)
	if st.Watermark == nil || !st.Watermark.Equal(wantWM) || st.WatermarkHeldBy != watermark.Field(topic(event.TopicLogins), 0) {
		t.Errorf("watermark %v held by %s, want %v held by logins (its last heartbeat minus the namespace policy's 30m)",
			st.Watermark, st.WatermarkHeldBy, wantWM)
	}
	if behind := st.WatermarkBehindSeconds; math.Abs(behind-9000) > 30 {
		t.Errorf("watermark %.0fs behind, want about 9000s", behind)
	}
	if st.OutboxDepth != 3 || math.Abs(st.OutboxOldestAgeSeconds-300) > 30 {
		t.Errorf("outbox %d entries, oldest %.0fs: want 3 and about 300s", st.OutboxDepth, st.OutboxOldestAgeSeconds)
	}
	if st.DeadlinesScheduled != 3 || st.DeadlinesDue != 2 || st.DeadlinesPastWatermark != 1 {
		t.Errorf("deadlines %d scheduled, %d due, %d past the watermark: want 3, 2, 1", st.DeadlinesScheduled, st.DeadlinesDue, st.DeadlinesPastWatermark)
	}
	if st.DeadLettersLastHour != 3 {
		t.Errorf("%d dead letters in the last hour, want 3", st.DeadLettersLastHour)
	}
	if len(st.Services) != 2 || st.Services[0].Service != "purchases" || !st.Services[0].Ready ||
		st.Services[1].Service != "relay" || st.Services[1].Ready || !strings.Contains(st.Services[1].Detail, "503") {
		t.Errorf("services %+v: want purchases ready and relay not (503)", st.Services)
	}
	if len(st.Errors) != 0 {
		t.Errorf("errors: %v", st.Errors)
	}

	code, text, errs := run(t, "status", "--purchases-addr", strings.TrimPrefix(ready.URL, "http://"))
	if code != 0 {
		t.Fatalf("text: exit %d: %s", code, errs)
	}
	for _, s := range []string{"policy status-test-7", "3 entries", "3 scheduled, 2 due, 1 past the watermark", "3 in the last hour", "NOT READY (503"} {
		if !strings.Contains(text, s) {
			t.Errorf("text status lacks %q:\n%s", s, text)
		}
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustDeployment(t *testing.T, name string) keyspace.Deployment {
	t.Helper()
	d, err := keyspace.NewDeployment(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestStatusNamesTheChurnModelInForce(t *testing.T) {
	p := scoring.DefaultPolicy()
	fit := &scoring.FittedModel{Version: "bgnbd-v1@2026-10-08", BGNBD: p.Churn.BGNBD, Customers: 1200, RepeatCustomers: 410}
	fixed := *p
	fixed.Churn.Refit = scoring.RefitPolicy{}
	for _, c := range []struct {
		policy *scoring.Policy
		sealed *namespace.SealedCutpoints
		want   string
	}{
		{p, nil, "rules-v1 (rules fallback): no model fitted on this population yet"},
		{p, &namespace.SealedCutpoints{Date: "2026-10-08", ModelNote: "too little data: 80 customers"},
			"rules-v1 (rules fallback): no model fitted on this population yet; boundary 2026-10-08 not fitted: too little data: 80 customers"},
		{p, &namespace.SealedCutpoints{Date: "2026-10-08", Model: fit, ModelFitted: true}, "bgnbd-v1@2026-10-08, fitted on 1200 customers (410 bought again)"},
		{&fixed, &namespace.SealedCutpoints{Date: "2026-10-08"}, "bgnbd-v1, the policy's fixed parameters (refit off)"},
	} {
		if got := churnModelInForce(c.policy, c.sealed); got != c.want {
			t.Errorf("churn model %q, want %q", got, c.want)
		}
	}
}
