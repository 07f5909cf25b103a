package watermark_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

func newTracker(t *testing.T) (*watermark.Tracker, redisconn.Client, string) {
	t.Helper()
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	key := testinfra.Name("wm")
	tr, err := watermark.NewTracker(context.Background(), rdb, key, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tr, rdb, key
}

func clock(t *testing.T, tr *watermark.Tracker, required ...string) (time.Time, bool) {
	t.Helper()
	at, ok, err := tr.Clock(context.Background(), required...)
	if err != nil {
		t.Fatal(err)
	}
	return at, ok
}

func TestTheWatermarkIsTheSlowestPartitionAndNeverMovesBack(t *testing.T) {
	tr, _, _ := newTracker(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, ok := clock(t, tr); ok {
		t.Fatal("a watermark before any report")
	}
	t1 := time.Date(2011, 5, 1, 12, 0, 0, 0, time.UTC)
	t2 := time.Date(2011, 5, 3, 12, 0, 0, 0, time.UTC)
	if err := tr.Report(ctx, []watermark.Position{
		{Topic: "purchases", Partition: 0, MaxEventTime: t2},
		{Topic: "purchases", Partition: 1, MaxEventTime: t1},
		{Topic: "logins", Partition: 0, MaxEventTime: t2},
	}, now); err != nil {
		t.Fatal(err)
	}
	r, err := tr.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.At.Equal(t1) || r.Holder != watermark.Field("purchases", 1) {
		t.Fatalf("watermark %v held by %s, want %v held by purchases/1", r.At, r.Holder, t1)
	}
	// A partition that holds records but has not reported yet may hold the oldest events:
	// no watermark until it reports.
	if _, ok := clock(t, tr, watermark.Field("feedback", 0)); ok {
		t.Fatal("a watermark while a required partition has not reported")
	}
	if _, ok := clock(t, tr, watermark.Field("purchases", 1)); !ok {
		t.Fatal("no watermark although every required partition reported")
	}
	// A report with an older time (a new owner after a rebalance) never moves a partition back.
	if err := tr.Report(ctx, []watermark.Position{{Topic: "purchases", Partition: 1, MaxEventTime: t1.Add(-48 * time.Hour)}}, now); err != nil {
		t.Fatal(err)
	}
	if c, _ := clock(t, tr); !c.Equal(t1) {
		t.Fatalf("watermark moved back to %v", c)
	}
}

func TestACaughtUpPartitionCountsAsItsHeartbeatLessTheLatenessAndHoldsWhenTheHeartbeatStops(t *testing.T) {
	tr, _, _ := newTracker(t)
	ctx := context.Background()
	old := time.Date(2011, 5, 1, 12, 0, 0, 0, time.UTC)
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	if err := tr.Report(ctx, []watermark.Position{
		{Topic: "purchases", Partition: 0, MaxEventTime: old, CaughtUp: true},
		{Topic: "logins", Partition: 0, MaxEventTime: old, CaughtUp: true},
	}, now); err != nil {
		t.Fatal(err)
	}
	if c, _ := clock(t, tr); !c.Equal(now.Add(-time.Hour)) {
		t.Fatalf("both caught up at %v: watermark %v, want the heartbeat less the hour of lateness", now, c)
	}
	// Only purchases keeps heartbeating; the logins consumer is gone and holds the watermark
	// at its last heartbeat, however much wall-clock time passes.
	for i := 1; i <= 3; i++ {
		if err := tr.Heartbeat(ctx, []string{watermark.Field("purchases", 0)}, now.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := tr.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.At.Equal(now.Add(-time.Hour)) || r.Holder != watermark.Field("logins", 0) {
		t.Fatalf("watermark %v held by %s, want %v held by the silent logins/0", r.At, r.Holder, now.Add(-time.Hour))
	}
	if got := r.Positions[watermark.Field("purchases", 0)]; !got.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("purchases/0 at %v after its heartbeat at %v", got, now.Add(3*time.Hour))
	}
	// The logins consumer comes back and catches up.
	if err := tr.Heartbeat(ctx, []string{watermark.Field("logins", 0)}, now.Add(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if c, _ := clock(t, tr); !c.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("watermark %v once logins heartbeats again, want %v", c, now.Add(2*time.Hour))
	}
	// An older heartbeat (a slow process) never moves a partition back.
	if err := tr.Heartbeat(ctx, []string{watermark.Field("purchases", 0)}, now); err != nil {
		t.Fatal(err)
	}
	if c, _ := clock(t, tr); !c.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("an old heartbeat moved the watermark to %v", c)
	}
}

func TestValuesWrittenBeforeHeartbeatsReadAsTheirEventTime(t *testing.T) {
	tr, rdb, key := newTracker(t)
	ctx := context.Background()
	at := time.Date(2011, 5, 1, 12, 0, 0, 0, time.UTC)
	ms := at.UnixMilli()
	if err := rdb.HSet(ctx, key, "purchases/0", itoa(ms)+":1", "logins/0", itoa(ms+1000)+":0").Err(); err != nil {
		t.Fatal(err)
	}
	if c, _ := clock(t, tr); !c.Equal(at) {
		t.Fatalf("watermark %v, want %v", c, at)
	}
	if err := rdb.HSet(ctx, key, "feedback/0", "garbage").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tr.Clock(ctx); err == nil {
		t.Fatal("a corrupt position read without an error")
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
