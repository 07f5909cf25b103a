package replay_test

import (
	"compress/gzip"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/e2e"
	"github.com/loyalty-scoring/loyalty/pkg/erasure"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/replay"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// invoice is one UCI Online Retail invoice: a purchase, or a cancellation (refund).
type invoice struct {
	no       string
	customer string
	at       time.Time
	minor    int64 // positive; cancel says which way it counts
	cancel   bool
}

// retailPath is the UCI Online Retail file committed in testdata/retail.
func retailPath(t testing.TB) string {
	return testinfra.DataFile(t, "retail/online_retail_uci.csv.gz")
}

func loadRetail(t testing.TB) []invoice {
	f, err := os.Open(retailPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(gz)
	r.FieldsPerRecord = 8
	if _, err := r.Read(); err != nil {
		t.Fatal(err)
	}
	byNo := map[string]*invoice{}
	var order []string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		no, qtyText, dateText, priceText, cust := rec[0], rec[3], rec[4], rec[5], rec[6]
		if cust == "" {
			continue // guest checkout: not a customer event
		}
		qty, err1 := strconv.ParseFloat(qtyText, 64)
		price, err2 := strconv.ParseFloat(priceText, 64)
		at, err3 := time.Parse(time.DateTime, dateText)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("bad retail row %v", rec)
		}
		inv, ok := byNo[no]
		if !ok {
			inv = &invoice{no: no, customer: strings.TrimSuffix(cust, ".0"), at: at, cancel: strings.HasPrefix(no, "C")}
			byNo[no] = inv
			order = append(order, no)
		}
		inv.minor += int64(math.Round(qty * price * 100))
	}
	out := make([]invoice, 0, len(order))
	for _, no := range order {
		inv := byNo[no]
		if inv.cancel {
			inv.minor = -inv.minor
		}
		if inv.minor > 0 {
			out = append(out, *inv)
		}
	}
	return out
}

// retailEvents turns the invoices into input events: copies cohorts of the data set with
// distinct customer ids, shifted so the newest invoice is a day old (a review or inactivity
// decided by "now" then falls where it would have when the shop ran).
func retailEvents(invoices []invoice, copies int, now time.Time) []event.Input {
	shift := retailShift(invoices, now)
	var out []event.Input
	for k := range copies {
		cshift := shift - time.Duration(k)*20*24*time.Hour
		for _, inv := range invoices {
			p := event.Purchase{EventID: fmt.Sprintf("k%d-%s", k, inv.no), CustomerID: fmt.Sprintf("k%d-%s", k, inv.customer),
				OccurredAt: inv.at.Add(cshift), OrderID: fmt.Sprintf("k%d-%s", k, inv.no), Kind: event.KindPurchase,
				AmountMinor: inv.minor, Currency: "GBP"}
			if inv.cancel {
				p.Kind = event.KindRefund
			}
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b event.Input) int { return a.Time().Compare(b.Time()) })
	return out
}

// retailShift is how far retailEvents moves the first copy of the data set in time: whole
// days, so the newest invoice is a day old.
func retailShift(invoices []invoice, now time.Time) time.Duration {
	last := invoices[0].at
	for _, inv := range invoices {
		if inv.at.After(last) {
			last = inv.at
		}
	}
	return now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -1).Sub(last.Truncate(24 * time.Hour))
}

// expectedTiers is an independent computation of each customer's tier from the raw events,
// following the published tier rules day by day:
//   - net spend over a rolling 365-day window (a cancellation is booked on its own day: the
//     data set does not link it to its invoice, so it cannot reverse an upgrade);
//   - upgrade at once to the highest tier whose threshold the window reached since the
//     current tier was settled (or last reviewed down);
//   - an upgrade settles when the 30-day returns window after reaching it has passed, and its
//     review is due 365 days after it was reached;
//   - at a review, a window (the 364 days before the review day) below the tier's threshold
//     lowers the tier by one, otherwise the next review is a year later.
//
// It evaluates every day through lastClosed: the last day the pipeline's watermark has closed
// (in the first hours after midnight UTC that is the day before yesterday, not yesterday);
// a later day's purchases only upgrade, as they do live before their day closes.
func expectedTiers(events []event.Input, thresholds []int64, names []string, lastClosed int) map[string]string {
	const returnsWindow, reviewAfter = 30, 365
	net := map[string]map[int]int64{}
	first, last := map[string]int{}, map[string]int{}
	for _, e := range events {
		p := e.(event.Purchase)
		d := int(p.OccurredAt.Unix() / 86400)
		amt := p.AmountMinor
		if p.Kind == event.KindRefund {
			amt = -amt
		}
		if net[p.CustomerID] == nil {
			net[p.CustomerID] = map[int]int64{}
			first[p.CustomerID] = d
		}
		net[p.CustomerID][d] += amt
		last[p.CustomerID] = max(last[p.CustomerID], d)
	}
	out := map[string]string{}
	for c, byDay := range net {
		sum := func(from, to int) int64 {
			var s int64
			for d, v := range byDay {
				if d >= from && d <= to {
					s += v
				}
			}
			return s
		}
		top := len(thresholds) - 1
		base, review, floor, tier := 0, 0, first[c], 0
		reach := make([]int, len(thresholds)) // first day since floor the window reached each tier; -1 none
		resetReach := func() {
			for i := range reach {
				reach[i] = -1
			}
		}
		resetReach()
		upgrade := func(d int) {
			w := sum(d-364, d)
			for t := top; t > base; t-- {
				if reach[t] < 0 && d >= floor && w >= thresholds[t] {
					reach[t] = d
				}
			}
			for t := top; t > base; t-- {
				if reach[t] >= 0 {
					tier = max(tier, t)
					return
				}
			}
		}
		for d := first[c]; d <= lastClosed; d++ {
			// End of day d: settle, review, then the day's upgrades.
			if tier > base && d-reach[tier] >= returnsWindow {
				base, review, floor = tier, reach[tier]+reviewAfter, reach[tier]
				resetReach()
				for t := base + 1; t <= top; t++ { // qualifications since the new floor still count
					for x := floor; x <= d; x++ {
						if sum(x-364, x) >= thresholds[t] {
							reach[t] = x
							break
						}
					}
				}
			}
			if tier == base && base > 0 && d+1 >= review {
				spend := sum(d-363, d)
				q := 0
				for t, th := range thresholds {
					if spend >= th {
						q = t
					}
				}
				if q >= base {
					review += reviewAfter
				} else {
					base = max(q, base-1)
					tier, review, floor = base, d+1+reviewAfter, d+1
					resetReach()
				}
			}
			upgrade(d)
		}
		// Days the watermark has not closed yet: their purchases upgrade at once, but
		// nothing settles or is reviewed until the day closes.
		for d := lastClosed + 1; d <= last[c]; d++ {
			upgrade(d)
		}
		out[c] = names[tier]
	}
	return out
}

// closedThrough is the last day (days since the epoch) the namespace's watermark has closed:
// the day whose end plus the allowed lateness the watermark has passed.
func closedThrough(t *testing.T, e *env, rt *wiring.Runtime) int {
	t.Helper()
	obs := &e2e.Observer{Admin: rt.Admin, Redis: rt.Redis, Keys: rt.Keys, Suffix: e.suffix, Lateness: rt.Policy.AllowedLateness}
	wm, known, err := obs.Watermark(context.Background())
	if err != nil || !known {
		t.Fatalf("reading the watermark of %s: known %v, %v", rt.Keys.Namespace(), known, err)
	}
	return int(scoring.DayOf(wm.Add(-rt.Policy.AllowedLateness))) - 1
}

func gbpPolicy(t testing.TB, goldMinor int64, version string) (string, *scoring.Policy) {
	y := string(scoring.DefaultPolicyYAML())
	y = strings.Replace(y, "currency: USD", "currency: GBP", 1)
	y = strings.Replace(y, "version: default-2025.1", "version: "+version, 1)
	y = strings.Replace(y, "min_spend_minor: 200000", "min_spend_minor: "+strconv.FormatInt(goldMinor, 10), 1)
	// Four-weekly cut-point boundaries: a year of sparse history (about five invoices per
	// customer) pays one evaluation of every customer per boundary in a backlog (see
	// docs/design.md, "A backlog pays for every boundary"); the e2e tests cover weekly ones.
	y = strings.Replace(y, "cutpoints_every_days: 7", "cutpoints_every_days: 28", 1)
	p, err := scoring.ParsePolicy([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if p.Segments.CutpointsEveryDays != 28 {
		t.Fatalf("boundaries every %d days, want 28", p.Segments.CutpointsEveryDays)
	}
	path := filepath.Join(t.TempDir(), version+".yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, p
}

// TestAcceptanceRetailBackfillReplayDiffPromoteAndErase is issue 6's acceptance run on real data.
func TestAcceptanceRetailBackfillReplayDiffPromoteAndErase(t *testing.T) {
	now := time.Now()
	invoices := loadRetail(t)
	copies := 5 // 5 × 22,186 invoices with a customer: the acceptance run needs ≥ 100k events
	if testing.Short() {
		copies = 1
	}
	events := retailEvents(invoices, copies, now)
	e := newEnv(t)
	policyPath, policy := gbpPolicy(t, 200000, "retail-gbp-1")
	e.policy = policyPath
	ctx := context.Background()

	liveRT, err := wiring.NewRuntime(ctx, e.config(e.live), e.log, wiring.Options{FollowActive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer liveRT.Close()
	e.produce(liveRT, events)
	start := time.Now()
	stop := runServices(t, liveRT)
	e.waitDone(liveRT)
	stop()
	live := readAll(t, e, liveRT, 2*time.Second, e.outputs(liveRT, "")...)
	t.Logf("live: %d events → %d derived events in %s", len(events), len(live), time.Since(start).Round(time.Second))

	// The notifier runs through the replays below, as it would in production: it must act on
	// none of the replayed events (they go to shadow topics and carry the replay marker).
	notifierCtx, stopNotifier := context.WithCancel(ctx)
	notifierDone := make(chan error, 1)
	go func() {
		notifierDone <- wiring.RunNotifier(notifierCtx, liveRT, notifier.Config{Channels: notifier.LogChannels(), StartFromLatest: true, GroupID: testinfra.Name("notifier")})
	}()

	// 1. The same range, the same policy: zero differences, same ids on the shadow topics.
	same := testinfra.Namespace(t, "same")
	sum, err := wiring.Replay(ctx, e.config(e.live), replay.Config{Namespace: same, From: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), Outputs: replay.OutputsShadow}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replay: %d events in %s = %.0f events/s", sum.Events, sum.Elapsed.Round(time.Millisecond), sum.PerSecond)
	checkBreakdown(t, sum)
	sameRT := e.runtimeOf(same)
	d, err := replay.Compare(ctx, liveRT.ReplayScores(), sameRT.ReplayScores(), 5, liveRT.ReplayOutputs())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Zero() {
		var b strings.Builder
		_ = d.WriteTable(&b)
		t.Fatalf("a replay with the same policy differs from live:\n%s", b.String())
	}
	for _, o := range d.Outputs {
		if o.Live == 0 && o.Topic != liveRT.Topic(event.TopicChurnRisk) {
			t.Errorf("no %s events to compare", o.Topic)
		}
	}

	// The KPIs: November 2011 equals a computation straight from the data set, and the
	// replay's KPI series equals live's.
	checkRetailKPIs(t, events, liveRT, sameRT, retailShift(invoices, now))
	// The churn model the pipeline fitted on the data set, live and in the replay.
	checkRetailRefit(t, e, liveRT, sameRT, live)
	checkRetailQuality(t, events, liveRT, sameRT)

	time.Sleep(2 * time.Second) // let the notifier see anything that might have reached it
	stopNotifier()
	if err := <-notifierDone; err != nil {
		t.Fatalf("notifier: %v", err)
	}
	if actions := readAll(t, e, liveRT, time.Second, liveRT.Topic(event.TopicActions)); len(actions) != 0 {
		t.Fatalf("the notifier decided %d actions during the replay, e.g. %+v", len(actions), actions[0])
	}

	// 2. A higher GOLD threshold: diff names exactly the customers an independent
	// computation says change tier.
	newPath, newPolicy := gbpPolicy(t, 300000, "retail-gbp-2")
	newYAML, _ := os.ReadFile(newPath)
	higher := testinfra.Namespace(t, "gold")
	if _, err := wiring.Replay(ctx, e.config(e.live), replay.Config{Namespace: higher, From: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		Outputs: replay.OutputsNone, PolicyYAML: newYAML}, e.log); err != nil {
		t.Fatal(err)
	}
	higherRT := e.runtimeOf(higher)
	d, err = replay.Compare(ctx, liveRT.ReplayScores(), higherRT.ReplayScores(), 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"BRONZE", "SILVER", "GOLD", "PLATINUM"}
	lastClosed := closedThrough(t, e, liveRT)
	oldTiers := expectedTiers(events, []int64{0, 50000, 200000, 500000}, names, lastClosed)
	newTiers := expectedTiers(events, []int64{0, 50000, 300000, 500000}, names, lastClosed)
	liveProfiles, err := replay.Profiles(ctx, liveRT.Redis, liveRT.Keys, policy)
	if err != nil {
		t.Fatal(err)
	}
	mismatch := 0
	for c, want := range oldTiers {
		if got := liveProfiles[c].Tier; got != want {
			mismatch++
			if mismatch <= 5 {
				t.Errorf("customer %s: live tier %s, the independent computation says %s", c, got, want)
			}
		}
	}
	var want []string
	for c := range oldTiers {
		if oldTiers[c] != newTiers[c] {
			want = append(want, c)
		}
	}
	sort.Strings(want)
	if len(want) == 0 {
		t.Fatal("the new GOLD threshold changes no tier: the test proves nothing")
	}
	higherProfiles, err := replay.Profiles(ctx, higherRT.Redis, higherRT.Keys, newPolicy)
	if err != nil {
		t.Fatal(err)
	}
	for c, want := range newTiers {
		if got := higherProfiles[c].Tier; got != want {
			t.Errorf("customer %s: tier %s under the new policy, the independent computation says %s", c, got, want)
		}
	}
	if !slices.Equal(d.DifferingIDs, want) {
		t.Errorf("diff reports %d customers, the independent computation %d (first: %v vs %v)", len(d.DifferingIDs), len(want),
			d.DifferingIDs[:min(5, len(d.DifferingIDs))], want[:min(5, len(want))])
	}
	if d.TierDiffer != len(want) || d.ChurnDiffer != 0 {
		t.Errorf("tier differs %d, churn differs %d; want %d and 0", d.TierDiffer, d.ChurnDiffer, len(want))
	}
	t.Logf("GOLD 2,000 → 3,000: %d customers change tier", len(want))

	// 3. Promote: services started now run on the new namespace with its policy.
	if _, err := replay.Promote(ctx, higherRT.ReplayNamespace(), higherRT.Deployment, higherRT.Admin, replay.Topics{Suffix: higherRT.TopicSuffix}, e.live, time.Minute); err != nil {
		t.Fatal(err)
	}
	promotedRT, err := wiring.NewRuntime(ctx, e.config(e.live), e.log, wiring.Options{FollowActive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer promotedRT.Close()
	if promotedRT.Keys.Namespace() != higher || promotedRT.Policy.Version != newPolicy.Version {
		t.Fatalf("after promote the services run on %s with policy %s", promotedRT.Keys.Namespace(), promotedRT.Policy.Version)
	}
	// A customer buying 2,500.00 now is SILVER under the promoted policy (GOLD under the old).
	newcomer := event.Purchase{EventID: "newcomer-1", CustomerID: "newcomer", OccurredAt: time.Now().Add(-time.Minute), OrderID: "n1",
		Kind: event.KindPurchase, AmountMinor: 250000, Currency: "GBP"}
	e.produce(promotedRT, []event.Input{newcomer})
	stop = runServices(t, promotedRT)
	store, _ := state.New(ctx, promotedRT.Redis, promotedRT.Keys, nil)
	waitUntil(t, 30*time.Second, func() bool { _, err := store.Get(ctx, "newcomer"); return err == nil })
	stop()
	fields, _ := store.Get(ctx, "newcomer")
	st, _ := scoring.UnmarshalFields(fields)
	if got := newPolicy.TierName(int(st.Tier)); got != "SILVER" {
		t.Errorf("the promoted services scored a 2,500.00 customer %s, want SILVER under the new GOLD threshold", got)
	}

	// 4. Erasure: no key left anywhere, and a full replay does not bring the customer back.
	victim := want[0]
	eraser, err := erasure.New(erasure.Config{Deployment: promotedRT.Config.Deployment, Shards: promotedRT.Keys.Shards(),
		Topic: promotedRT.Topic(event.TopicErasures), SettleDelay: 100 * time.Millisecond}, promotedRT.Redis, promotedRT.Codec, promotedRT.Producer)
	if err != nil {
		t.Fatal(err)
	}
	res, err := eraser.Erase(ctx, victim, "test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed == 0 || res.Record.CustomerID != victim {
		t.Fatalf("erasure removed nothing: %+v", res)
	}
	if keys := keysMentioning(t, promotedRT, victim); len(keys) > 0 {
		t.Fatalf("keys left after erasing %s: %v", victim, keys)
	}
	again := testinfra.Namespace(t, "again")
	if _, err := wiring.Replay(ctx, e.config(e.live), replay.Config{Namespace: again, From: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), Outputs: replay.OutputsNone}, e.log); err != nil {
		t.Fatal(err)
	}
	if keys := keysMentioning(t, promotedRT, victim); len(keys) > 0 {
		t.Fatalf("a full replay recreated the erased customer: %v", keys)
	}
	againProfiles, _ := replay.Profiles(ctx, promotedRT.Redis, e.runtimeOf(again).Keys, newPolicy)
	if _, ok := againProfiles[victim]; ok || len(againProfiles) < len(oldTiers)-1 {
		t.Fatalf("replay after erasure: victim present %v, %d customers", ok, len(againProfiles))
	}
}

// keysMentioning lists the keys of the deployment's namespaces that name the customer, and
// the deadline sets that still hold them.
func keysMentioning(t *testing.T, rt *wiring.Runtime, id string) []string {
	ctx := context.Background()
	var out []string
	for _, ns := range rt.Redis.SMembers(ctx, rt.Deployment.Namespaces()).Val() {
		iter := rt.Redis.Scan(ctx, 0, "loy:"+ns+":*"+id+"*", 1000).Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		for s := range rt.Keys.Shards() {
			if _, err := rt.Redis.ZScore(ctx, "loy:"+ns+":due:{s"+strconv.Itoa(s)+"}", id).Result(); err == nil {
				out = append(out, "deadline in "+ns)
			}
		}
	}
	return out
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkBreakdown checks that a replay of the retail year says where its time went: the three
// phases account for its elapsed time but the set-up before the merge, it waited at
// boundaries, its sweeper evaluated customers and its deriver fitted churn models.
func checkBreakdown(t *testing.T, sum replay.Summary) {
	t.Helper()
	var b strings.Builder
	if err := sum.WriteBreakdown(&b); err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(b.String()))
	phases := sum.Applying + sum.Waiting + sum.Draining
	if phases > sum.Elapsed || phases < sum.Elapsed*9/10 {
		t.Errorf("applying %s + waiting %s + draining %s = %s, for %s elapsed", sum.Applying, sum.Waiting, sum.Draining, phases, sum.Elapsed)
	}
	if sum.Applying <= 0 || sum.Waiting <= 0 || sum.Draining <= 0 {
		t.Errorf("a year of history applied in %s, waiting %s at its boundaries, drained in %s", sum.Applying, sum.Waiting, sum.Draining)
	}
	// Every customer is evaluated through every boundary after its first purchase; the
	// policy refits every 28 days.
	if sum.Evaluations < sum.Events || sum.Refits < 10 || sum.Fitting <= 0 {
		t.Errorf("%d sweeper evaluations for %d events, %d churn models fitted in %s", sum.Evaluations, sum.Events, sum.Refits, sum.Fitting)
	}
}
