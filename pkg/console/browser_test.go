package console_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/console"
	"github.com/loyalty-scoring/loyalty/pkg/e2e"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/synth"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// screenshotDir is the git-ignored folder the browser test saves its screenshots in.
const screenshotDir = "../../.artifacts/screenshots"

const (
	consoleUser     = "support"
	consolePassword = "correct horse battery"
)

// chromium finds Debian's chromium or fails saying how to install it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium: deploy/local/tools.sh install chromium (sudo apt-get install -y --no-install-recommends chromium); make test installs it")
	return ""
}

// pipelineRun runs the whole pipeline on generated customers against the test Kafka and Redis
// until it is caught up, and returns its runtime and a stop function for the services.
func pipelineRun(t *testing.T) (*wiring.Runtime, func()) {
	t.Helper()
	brokers := testinfra.Kafka(t)
	suffix := testinfra.TopicSuffix(t, "console")
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ","), "REDIS_ADDR": testinfra.Redis(t),
			"LOYALTY_NAMESPACE": testinfra.Name("console"), "LOYALTY_TOPIC_SUFFIX": suffix, "LOYALTY_DEPLOYMENT": testinfra.Name("console"),
			"KAFKA_PARTITIONS": "2", "LOYALTY_SHARDS": "4", "BATCH_LINGER": "5ms", "LOG_LEVEL": "warn"}[k]
	}, "off")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt, err := wiring.NewRuntime(ctx, cfg, zaptest.NewLogger(t).Named("pipeline"), wiring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	if err := rt.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	gen, err := synth.New(synth.Config{Customers: 120, Months: 8, End: time.Now().UTC().Truncate(24 * time.Hour), Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	topic := map[string]string{"Purchase": event.TopicPurchases, "Login": event.TopicLogins, "Feedback": event.TopicFeedback}
	var recs []stream.Record
	for {
		in, ok := gen.Next()
		if !ok {
			break
		}
		v, err := rt.Codec.Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, stream.Record{Topic: rt.Topic(topic[in.Schema()]), Key: []byte(in.Customer()), Value: v})
	}
	if err := rt.Producer.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	services := []func(context.Context) error{
		func(ctx context.Context) error {
			return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: "purchases", Topics: []string{event.TopicPurchases}})
		},
		func(ctx context.Context) error {
			return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: "logins", Topics: []string{event.TopicLogins}})
		},
		func(ctx context.Context) error {
			return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: "feedback", Topics: []string{event.TopicFeedback}})
		},
		func(ctx context.Context) error { return wiring.RunSweeper(ctx, rt) },
		func(ctx context.Context) error { return wiring.RunRelay(ctx, rt, nil) },
		func(ctx context.Context) error {
			return wiring.RunNotifier(ctx, rt, notifier.Config{Channels: notifier.LogChannels()})
		},
	}
	done := make(chan error, len(services))
	for _, run := range services {
		go func() { done <- run(runCtx) }()
	}
	obs := &e2e.Observer{Admin: rt.Admin, Redis: rt.Redis, Keys: rt.Keys, Suffix: suffix, Lateness: rt.Policy.AllowedLateness}
	if err := obs.WaitDone(ctx, 5*time.Minute, nil); err != nil {
		stop()
		t.Fatal(err)
	}
	t.Logf("pipeline: %d generated records applied", len(recs))
	return rt, func() {
		stop()
		for range services {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("service: %v", err)
			}
		}
	}
}

// TestTheConsoleShowsWhatTheAPIAndRedisSayInARealBrowser drives headless Chromium through the
// overview and a customer page of the console serving a pipeline run on generated customers.
func TestTheConsoleShowsWhatTheAPIAndRedisSayInARealBrowser(t *testing.T) {
	browser := chromium(t)
	rt, stopServices := pipelineRun(t)
	ctx := context.Background()

	// Every day up to the last final one must be final before the page is compared: wait for
	// the sweeper to evaluate everyone through yesterday.
	var snap pipeline.KPISnapshot
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var err error
		if snap, err = rt.KPIs(ctx); err != nil {
			t.Fatal(err)
		}
		if snap.HasComplete && snap.Complete >= scoring.DayOf(time.Now())-2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("KPIs final only through %s (known %v)", snap.Complete.Start().Format(time.DateOnly), snap.HasComplete)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Let the relay and notifier finish with the evaluations' events, then stop the services so
	// that nothing moves while the pages are compared with Redis.
	time.Sleep(3 * time.Second)
	stopServices()
	if snap, _ = rt.KPIs(ctx); !snap.HasComplete {
		t.Fatal("no final day")
	}

	addr := make(chan string, 1)
	consoleCtx, stopConsole := context.WithCancel(ctx)
	defer stopConsole()
	go func() {
		err := wiring.RunConsole(consoleCtx, rt, wiring.ConsoleConfig{Addr: "127.0.0.1:0",
			Console: console.Config{User: consoleUser, Password: consolePassword, CacheFor: time.Millisecond}}, func(a string) { addr <- a })
		if err != nil {
			t.Errorf("console: %v", err)
		}
	}()
	base := "http://" + <-addr

	// Without credentials nothing is served, pages included.
	for _, path := range []string{"/", "/api/v1/overview", "/assets/overview.js"} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: %d, want 401", path, res.StatusCode)
		}
	}
	var overview console.Overview
	getJSON(t, base+"/api/v1/overview", &overview)

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(consoleUser+":"+consolePassword))
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1800), chromedp.Flag("disable-gpu", true))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Every request of the tab carries the basic-auth header, as a browser does once the user
	// answered its prompt.
	withAuth := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return chromedp.Void{}, err
	}
	loaded := chromedp.WaitVisible(chromedp.CSS(`body[data-loaded="true"]`))
	text := func(id string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(testid(id))))
		if err != nil {
			t.Fatalf("reading %s: %v", id, err)
		}
		return v
	}
	count := func(selector string) int {
		t.Helper()
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('`+selector+`').length`))
		if err != nil {
			t.Fatalf("counting %s: %v", selector, err)
		}
		return n
	}
	screenshot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // quality 100 makes a PNG (below 100, a JPEG)
		if err != nil {
			t.Fatal(err)
		}
		save(t, name, png)
	}

	// The overview.
	if err := chromedp.Do(bctx, withAuth, chromedp.Navigate(base+"/"), loaded); err != nil {
		t.Fatalf("overview page: %v", err)
	}
	texts := map[string]*string{}
	for _, id := range []string{"day", "kpi-orders", "kpi-active", "kpi-net-revenue", "kpi-customers", "kpi-repurchase", "kpi-retention"} {
		v := text(id)
		texts[id] = &v
	}
	tierRows := count(`[data-testid="mix-tiers"] .bar`)
	alertRows := count(`[data-testid="churn-alerts"] tbody tr`)
	actionRows := count(`[data-testid="actions"] tbody tr`)
	screenshot("console-overview.png")

	final := snap.Complete
	month := snap.Counters.Report(final, 30) // straight from the counters in Redis

	// The model-quality API serves the counters' reports of every observation day.
	var quality struct {
		CompleteThrough string              `json:"complete_through"`
		Days            []kpi.QualityReport `json:"days"`
	}
	getJSON(t, base+"/api/v1/quality", &quality)
	qualityDays := snap.Counters.QualityDays()
	if len(qualityDays) == 0 || len(quality.Days) != len(qualityDays) || quality.CompleteThrough != final.Start().Format(time.DateOnly) {
		t.Errorf("API quality: %d observation days through %s; Redis has %d, final through %s", len(quality.Days), quality.CompleteThrough,
			len(qualityDays), final.Start().Format(time.DateOnly))
	}
	// And the uplift API the notifier's counters.
	var uplift kpi.UpliftReport
	getJSON(t, base+"/api/v1/uplift", &uplift)
	counts, err := notifier.ReadUplift(ctx, rt.Redis, rt.Deployment, rt.Keys)
	if err != nil {
		t.Fatal(err)
	}
	gotUplift, _ := json.Marshal(uplift)
	wantUplift, _ := json.Marshal(kpi.Uplift(counts, notifier.UpliftKinds()))
	if string(gotUplift) != string(wantUplift) || len(uplift.Total) != 4 {
		t.Errorf("API uplift %s; Redis says %s", gotUplift, wantUplift)
	}
	t.Logf("uplift: %d exposures pending, %s", uplift.Pending, gotUplift)
	for i, d := range qualityDays {
		want, _ := json.Marshal(snap.Counters.Quality(d, final, rt.Policy))
		if got, _ := json.Marshal(quality.Days[min(i, len(quality.Days)-1)]); string(got) != string(want) {
			t.Errorf("API quality of %s: %s; Redis says %s", d.Start().Format(time.DateOnly), got, want)
		}
	}
	api30 := overview
	apiMonth := api30.Reports[2]
	if apiMonth.WindowDays != 30 || api30.Day != final.Start().Format(time.DateOnly) || !api30.Final {
		t.Fatalf("API overview: day %s (final %v), report %d days; Redis says %s is final", api30.Day, api30.Final, apiMonth.WindowDays,
			final.Start().Format(time.DateOnly))
	}
	if month.Orders == 0 || month.ActiveCustomers == 0 || len(month.Tiers) < 2 {
		t.Fatalf("the generated history is too thin to show anything: %+v", month)
	}
	for _, c := range []struct {
		id          string
		redis, apiV string
	}{
		{"day", final.Start().Format(time.DateOnly), api30.Day},
		{"kpi-orders", grouped(month.Orders), grouped(apiMonth.Orders)},
		{"kpi-active", grouped(month.ActiveCustomers), grouped(apiMonth.ActiveCustomers)},
		{"kpi-customers", grouped(month.Customers), grouped(apiMonth.Customers)},
		{"kpi-net-revenue", money(month.NetRevenueMinor, "USD"), money(apiMonth.NetRevenueMinor, "USD")},
		{"kpi-repurchase", pct(month.RepurchaseRate), pct(apiMonth.RepurchaseRate)},
		{"kpi-retention", pct(month.RetentionRate), pct(apiMonth.RetentionRate)},
	} {
		if got := *texts[c.id]; got != c.redis || got != c.apiV {
			t.Errorf("overview %s shows %q; Redis says %q, the API %q", c.id, got, c.redis, c.apiV)
		}
	}
	if tierRows != len(month.Tiers) {
		t.Errorf("the tier mix shows %d tiers, Redis has %d", tierRows, len(month.Tiers))
	}
	if alertRows != len(overview.Recent.ChurnAlerts) || actionRows != len(overview.Recent.Actions) || alertRows == 0 {
		t.Errorf("recent: %d churn alerts and %d actions shown, the API lists %d and %d", alertRows, actionRows,
			len(overview.Recent.ChurnAlerts), len(overview.Recent.Actions))
	}

	// A customer page, reached through the search box: the customer with the most transitions.
	store, err := state.New(ctx, rt.Redis, rt.Keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, transitions := busiestCustomer(t, store, overview)
	fields, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	st, err := scoring.UnmarshalFields(fields)
	if err != nil {
		t.Fatal(err)
	}
	var apiCustomer console.Customer
	getJSON(t, base+"/api/v1/customers/"+id, &apiCustomer)
	if err := chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS(`#search-id`), id),
		chromedp.Submit(chromedp.CSS(`#search-id`)),
		chromedp.WaitVisible(chromedp.CSS(`#customer`)), loaded); err != nil {
		t.Fatalf("customer page: %v", err)
	}
	url, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	tier, churn, segment, rfm := text("tier"), text("churn-level"), text("segment"), text("rfm")
	rows := count(`[data-testid="transitions"] tbody tr`)
	firstEvent, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('[data-testid="transitions"] tbody tr').dataset.eventId`))
	if err != nil {
		t.Fatal(err)
	}
	screenshot("console-customer.png")
	if !strings.Contains(url, "/customer?id="+id) {
		t.Errorf("the search went to %s", url)
	}
	want := map[string]string{"tier": rt.Policy.TierName(int(st.Tier)), "churn": st.Churn.String(), "segment": st.Segment.Name(),
		"rfm": fmt.Sprintf("R%d F%d M%d", st.LastRFM.R, st.LastRFM.F, st.LastRFM.M)}
	got := map[string]string{"tier": tier, "churn": churn, "segment": segment, "rfm": rfm}
	apiV := map[string]string{"tier": apiCustomer.Profile.Tier, "churn": apiCustomer.Profile.ChurnLevel, "segment": apiCustomer.Profile.SegmentName,
		"rfm": fmt.Sprintf("R%d F%d M%d", apiCustomer.Profile.RFM.R, apiCustomer.Profile.RFM.F, apiCustomer.Profile.RFM.M)}
	for k := range want {
		if got[k] != want[k] || apiV[k] != want[k] {
			t.Errorf("customer %s: the page shows %s %q; Redis says %q, the API %q", id, k, got[k], want[k], apiV[k])
		}
	}
	if rows != len(transitions) || rows != len(apiCustomer.Transitions) || rows == 0 {
		t.Errorf("customer %s: %d transitions shown, Redis holds %d, the API %d", id, rows, len(transitions), len(apiCustomer.Transitions))
	}
	if newest, _ := pipeline.ParseTransition(id, transitions[0]); firstEvent != newest.EventID {
		t.Errorf("the first transition shown is %s, the newest in Redis %s", firstEvent, newest.EventID)
	}
	t.Logf("overview of %s: %s orders, %s active, %s net revenue over 30 days; %d churn alerts, %d actions; customer %s: %s, %s, %s, %d transitions",
		api30.Day, *texts["kpi-orders"], *texts["kpi-active"], *texts["kpi-net-revenue"], alertRows, actionRows, id, tier, churn, segment, rows)
}

func testid(id string) string { return `[data-testid="` + id + `"]` }

// busiestCustomer is the customer with the most transitions (up to the list's bound), among
// those in the recent churn alerts and the first generated ones.
func busiestCustomer(t *testing.T, store *state.Store, o console.Overview) (string, []string) {
	t.Helper()
	candidates := map[string]bool{}
	for _, a := range o.Recent.ChurnAlerts {
		candidates[a.CustomerID] = true
	}
	for i := range 40 {
		candidates[fmt.Sprintf("cust-%05d", i)] = true
	}
	best, bestList := "", []string(nil)
	for id := range candidates {
		list, err := store.Transitions(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) > len(bestList) || (len(list) == len(bestList) && id < best) {
			best, bestList = id, list
		}
	}
	if len(bestList) == 0 {
		t.Fatal("no customer has a transition")
	}
	return best, bestList
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth(consoleUser, consolePassword)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func save(t *testing.T, name string, png []byte) {
	t.Helper()
	path := filepath.Join(screenshotDir, name)
	if len(png) < 1000 {
		t.Fatalf("screenshot %s is %d bytes", name, len(png))
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("screenshot: %s (%d bytes)", abs, len(png))
}

// The page's formatting (assets/common.js), as the test expects to read it.

func grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func money(minor int64, currency string) string {
	whole := minor / 100
	frac := minor % 100
	if frac < 0 {
		frac = -frac
	}
	sign := ""
	if minor < 0 && whole == 0 {
		sign = "-"
	}
	return fmt.Sprintf("%s%s.%02d %s", sign, grouped(whole), frac, currency)
}

func pct(r *float64) string {
	if r == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100**r)
}
