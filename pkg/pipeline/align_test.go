package pipeline_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// pacerFixture is a watermark hash in real Redis and a pacer for the purchases service, whose
// records carry their event time as the Kafka timestamp.
type pacerFixture struct {
	wm       *watermark.Tracker
	pacer    *pipeline.Pacer
	required []string
}

func newPacerFixture(t *testing.T) *pacerFixture {
	t.Helper()
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	wm, err := watermark.NewTracker(context.Background(), rdb, testinfra.Name("wm"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &pacerFixture{wm: wm}
	f.pacer = &pipeline.Pacer{Watermarks: wm, Lead: 72 * time.Hour, Poll: 10 * time.Millisecond,
		Required: func(context.Context) ([]string, error) { return f.required, nil },
		TimeOf:   func(m stream.Message) time.Time { return m.Time },
		Log:      zaptest.NewLogger(t)}
	return f
}

func (f *pacerFixture) report(t *testing.T, topic string, partition int, at time.Time) {
	t.Helper()
	if err := f.wm.Report(context.Background(), []watermark.Position{{Topic: topic, Partition: partition, MaxEventTime: at}}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// pace runs Pace on a batch in the background and returns its result channel.
func (f *pacerFixture) pace(ctx context.Context, msgs ...stream.Message) <-chan error {
	done := make(chan error, 1)
	go func() { done <- f.pacer.Pace(ctx, msgs) }()
	return done
}

func returnsWithin(t *testing.T, done <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Pace still holds the batch after %s", d)
		return nil
	}
}

func holds(t *testing.T, done <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("Pace let the batch go (err %v) although it is more than the lead ahead", err)
	case <-time.After(d):
	}
}

func TestAConsumerMoreThanTheLeadAheadOfAnotherTopicWaitsUntilItCatchesUp(t *testing.T) {
	f := newPacerFixture(t)
	day0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f.report(t, "logins", 0, day0)
	f.report(t, "purchases", 1, day0.AddDate(0, 0, 1)) // the purchases service's other partition
	batch := []stream.Message{
		{Topic: "purchases", Partition: 0, Offset: 7, Time: day0.AddDate(0, 0, 10)},
		{Topic: "purchases", Partition: 0, Offset: 8, Time: day0.AddDate(0, 0, 11)},
	}
	// Within the lead: at once.
	if err := returnsWithin(t, f.pace(context.Background(), stream.Message{Topic: "purchases", Time: day0.Add(71 * time.Hour)}), time.Second); err != nil {
		t.Fatal(err)
	}
	// Ten days ahead of logins: held, and the held partition is reported at its next record,
	// which is what lets services waiting for purchases move on.
	done := f.pace(context.Background(), batch...)
	holds(t, done, 200*time.Millisecond)
	r, err := f.wm.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Positions[watermark.Field("purchases", 0)]; !got.Equal(day0.AddDate(0, 0, 10)) {
		t.Fatalf("the held partition is at %v, want its next record's time %v", got, day0.AddDate(0, 0, 10))
	}
	// Its own topic's slower partition is not waited for; logins is.
	f.report(t, "logins", 0, day0.AddDate(0, 0, 6))
	holds(t, done, 200*time.Millisecond)
	f.report(t, "logins", 0, day0.AddDate(0, 0, 7))
	if err := returnsWithin(t, done, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestACaughtUpTopicNeverHoldsAConsumerBackWhileItsHeartbeatIsFresh(t *testing.T) {
	f := newPacerFixture(t)
	now := time.Now().UTC()
	f.report(t, "logins", 0, now.AddDate(0, 0, -60))
	if err := f.wm.Heartbeat(context.Background(), []string{watermark.Field("logins", 0)}, now); err != nil {
		t.Fatal(err)
	}
	if err := returnsWithin(t, f.pace(context.Background(), stream.Message{Topic: "purchases", Time: now}), time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestAPacerWaitsForAnotherTopicsPartitionThatHasNotReportedButNotForItsOwn(t *testing.T) {
	f := newPacerFixture(t)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f.required = []string{watermark.Field("purchases", 0), watermark.Field("purchases", 1), watermark.Field("logins", 0)}
	// purchases/1 has records but has not reported: this consumer may still be about to
	// fetch them, so it does not wait for logins yet (two services starting together
	// would otherwise each wait for the other).
	if err := returnsWithin(t, f.pace(context.Background(), stream.Message{Topic: "purchases", Partition: 0, Time: at}), time.Second); err != nil {
		t.Fatal(err)
	}
	// Once its own partitions have reported, a logins partition with records that has not
	// reported may hold the oldest events: wait for it.
	f.report(t, "purchases", 0, at) // as the processor does once the batch is applied
	f.report(t, "purchases", 1, at)
	done := f.pace(context.Background(), stream.Message{Topic: "purchases", Partition: 0, Time: at})
	holds(t, done, 200*time.Millisecond)
	f.report(t, "logins", 0, at)
	if err := returnsWithin(t, done, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestAPausedConsumerLetsGoAtShutdown(t *testing.T) {
	f := newPacerFixture(t)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f.report(t, "logins", 0, at)
	ctx, cancel := context.WithCancel(context.Background())
	done := f.pace(ctx, stream.Message{Topic: "purchases", Time: at.AddDate(0, 0, 30)})
	holds(t, done, 100*time.Millisecond)
	cancel()
	if err := returnsWithin(t, done, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Pace returned %v at shutdown, want context.Canceled (the batch is neither handled nor committed)", err)
	}
}
