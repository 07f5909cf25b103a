package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// newPacer returns the purchases service's pacer over a fresh watermark hash in real Redis.
func newPacer(t *testing.T, required ...string) (*pipeline.Pacer, *watermark.Tracker) {
	t.Helper()
	rdb := testinfra.RedisClient(t)
	wm, err := watermark.NewTracker(context.Background(), rdb, testinfra.Name("wm"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline.Pacer{Watermarks: wm, Topics: []string{"purchases"}, Lead: 72 * time.Hour,
		Required:  func(context.Context) ([]string, error) { return required, nil },
		EventTime: func(m stream.Message) time.Time { return m.Time }}, wm
}

func report(t *testing.T, wm *watermark.Tracker, topic string, partition int, at time.Time) {
	t.Helper()
	if err := wm.Report(context.Background(), []watermark.Position{{Topic: topic, Partition: partition, MaxEventTime: at}}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func admit(t *testing.T, p *pipeline.Pacer, heads map[stream.TopicPartition]time.Time) (time.Time, bool) {
	t.Helper()
	limit, own, err := p.Admit(context.Background(), heads)
	if err != nil {
		t.Fatal(err)
	}
	return limit, own
}

func TestRecordsGoUpToTheWatermarkPlusTheLeadAndHeldPartitionsReportTheirHeads(t *testing.T) {
	p, wm := newPacer(t)
	day0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	report(t, wm, "logins", 0, day0)
	heads := map[stream.TopicPartition]time.Time{{Topic: "purchases", Partition: 0}: day0.AddDate(0, 0, 10)}
	limit, own := admit(t, p, heads)
	if !limit.Equal(day0.Add(72*time.Hour)) || own {
		t.Fatalf("limit %v (own holder %v), want the logins partition's %v plus the 72h lead", limit, own, day0)
	}
	// The held partition is reported at its earliest held record: whoever waits for purchases
	// can move on.
	r, err := wm.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Positions[watermark.Field("purchases", 0)]; !got.Equal(day0.AddDate(0, 0, 10)) {
		t.Fatalf("the held partition is at %v, want %v", got, day0.AddDate(0, 0, 10))
	}
	// Logins catches up to within the lead.
	report(t, wm, "logins", 0, day0.AddDate(0, 0, 8))
	if limit, _ := admit(t, p, heads); limit.Before(day0.AddDate(0, 0, 10)) {
		t.Fatalf("limit %v once logins is at day 8: the held records at day 10 should go", limit)
	}
}

func TestWhenItsOwnPartitionHoldsTheWatermarkAConsumerFetchesOn(t *testing.T) {
	p, wm := newPacer(t)
	day0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	report(t, wm, "purchases", 1, day0) // behind everything, its records not fetched yet
	report(t, wm, "logins", 0, day0.AddDate(0, 0, 20))
	_, own := admit(t, p, map[stream.TopicPartition]time.Time{{Topic: "purchases", Partition: 0}: day0.AddDate(0, 0, 30)})
	if !own {
		t.Fatal("the watermark waits for purchases/1, but the purchases consumer is not told to fetch on")
	}
}

func TestACaughtUpPartitionHoldsNobodyBackWhileItsHeartbeatIsFresh(t *testing.T) {
	p, wm := newPacer(t)
	now := time.Now().UTC()
	report(t, wm, "logins", 0, now.AddDate(0, 0, -60))
	if err := wm.Heartbeat(context.Background(), []string{watermark.Field("logins", 0)}, now); err != nil {
		t.Fatal(err)
	}
	if limit, _ := admit(t, p, map[stream.TopicPartition]time.Time{{Topic: "purchases", Partition: 0}: now}); limit.Before(now) {
		t.Fatalf("limit %v: a caught-up logins partition held purchases at %v back", limit, now)
	}
}

func TestNothingGoesUntilEveryPartitionWithRecordsHasReported(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	p, wm := newPacer(t, watermark.Field("purchases", 0), watermark.Field("purchases", 1), watermark.Field("logins", 0))
	heads := map[stream.TopicPartition]time.Time{{Topic: "purchases", Partition: 0}: at}
	// purchases/1 has records not fetched yet: hold, and fetch on.
	if limit, own := admit(t, p, heads); !limit.IsZero() || !own {
		t.Fatalf("limit %v, fetch on %v: want nothing to go and fetching on while purchases/1 has not reported", limit, own)
	}
	// Its own partitions have reported; logins/0 has records but has not: hold, without
	// fetching past the bound (it is another service's to report).
	report(t, wm, "purchases", 1, at)
	if limit, own := admit(t, p, heads); !limit.IsZero() || own {
		t.Fatalf("limit %v, fetch on %v: want nothing to go while logins/0 has not reported", limit, own)
	}
	report(t, wm, "logins", 0, at)
	if limit, _ := admit(t, p, heads); limit.Before(at) {
		t.Fatalf("limit %v once every partition reported, want at least %v", limit, at)
	}
}
