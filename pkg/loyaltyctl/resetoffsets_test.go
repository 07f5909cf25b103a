package loyaltyctl

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// TestResetOffsetsMovesAStoppedGroupToATimeOrTheBeginning: an engineer rewinds a consumer
// group to reprocess from a moment (or from the start); the group's committed offsets become
// the first record at or after that time on every partition of the deployment's topics.
func TestResetOffsetsMovesAStoppedGroupToATimeOrTheBeginning(t *testing.T) {
	brokers := testinfra.Kafka(t)
	suffix := testinfra.TopicSuffix(t, "ro")
	t.Setenv("KAFKA_BROKERS", strings.Join(brokers, ","))
	t.Setenv("LOYALTY_TOPIC_SUFFIX", suffix)
	ctx := context.Background()
	topic := event.TopicPurchases + suffix
	admin, err := stream.NewAdmin(brokers, stream.Security{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := stream.NewProducer(stream.ProducerConfig{Brokers: brokers}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var recs []stream.Record
	for i := range 10 { // one record a day, 1 to 10 March
		recs = append(recs, stream.Record{Topic: topic, Key: []byte("c"), Value: []byte{byte(i)}, Time: day.AddDate(0, 0, i)})
	}
	if err := p.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	group := testinfra.Name("group")
	if err := admin.CommitGroupOffsets(ctx, group, topic, stream.Offsets{0: 10}); err != nil {
		t.Fatal(err)
	}
	committed := func() int64 {
		t.Helper()
		offs, err := admin.GroupOffsets(ctx, group, topic)
		if err != nil {
			t.Fatal(err)
		}
		return offs[0]
	}
	cases := []struct {
		name string
		args []string
		want int64
	}{
		{"--to-time moves the group to the first record at or after the time", []string{"--to-time", "2026-03-04"}, 3},
		{"--to-earliest moves it to the beginning", []string{"--to-earliest"}, 0},
		{"a time after the last record moves it to the end", []string{"--to-time", "2026-04-01T00:00:00Z"}, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"reset-offsets", "--group", group, "--topics", event.TopicPurchases}, c.args...)
			if code, _, errs := run(t, args...); code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if got := committed(); got != c.want {
				t.Errorf("committed offset %d, want %d", got, c.want)
			}
		})
	}
	if code, _, _ := run(t, "reset-offsets", "--group", group, "--to-earliest", "--to-time", "2026-03-04"); code != 2 {
		t.Errorf("both --to-earliest and --to-time: exit %d, want a usage error", code)
	}
}
