package watermark_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

func TestTheClockIsTheSlowestPartitionMinusLatenessAndCaughtUpPartitionsCountAsNow(t *testing.T) {
	rdb, _ := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	defer rdb.Close()
	ctx := context.Background()
	tr, err := watermark.NewTracker(ctx, rdb, testinfra.Name("wm"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, ok, _ := tr.Clock(ctx, now); ok {
		t.Fatal("a clock before any report")
	}
	t1 := time.Date(2011, 5, 1, 12, 0, 0, 0, time.UTC)
	t2 := time.Date(2011, 5, 3, 12, 0, 0, 0, time.UTC)
	if err := tr.Report(ctx, []watermark.Position{
		{Topic: "purchases", Partition: 0, MaxEventTime: t2},
		{Topic: "purchases", Partition: 1, MaxEventTime: t1},
		{Topic: "logins", Partition: 0, MaxEventTime: t1.Add(-time.Hour), CaughtUp: true},
	}); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := tr.Clock(ctx, now); !c.Equal(t1.Add(-time.Hour)) {
		t.Fatalf("clock %v, want %v", c, t1.Add(-time.Hour))
	}
	// A partition that holds records but has not reported yet may hold the oldest events:
	// no clock until it reports.
	if _, ok, _ := tr.Clock(ctx, now, watermark.Field("feedback", 0)); ok {
		t.Fatal("a clock while a required partition has not reported")
	}
	if _, ok, _ := tr.Clock(ctx, now, watermark.Field("purchases", 1)); !ok {
		t.Fatal("no clock although every required partition reported")
	}
	// A report with an older time (a new owner after a rebalance) never moves a partition back.
	_ = tr.Report(ctx, []watermark.Position{{Topic: "purchases", Partition: 1, MaxEventTime: t1.Add(-48 * time.Hour)}})
	if c, _, _ := tr.Clock(ctx, now); !c.Equal(t1.Add(-time.Hour)) {
		t.Fatalf("clock moved back to %v", c)
	}
	_ = tr.Report(ctx, []watermark.Position{{Topic: "purchases", Partition: 1, MaxEventTime: t2, CaughtUp: true}, {Topic: "purchases", Partition: 0, MaxEventTime: t2, CaughtUp: true}})
	if c, _, _ := tr.Clock(ctx, now); !c.Equal(now) {
		t.Fatalf("all caught up: clock %v, want now", c)
	}
}
