package loyaltyctl

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/embedded"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// produce creates a missing input topic with KAFKA_INPUT_RETENTION. It writes to the
// unsuffixed topic, so the test gets a broker of its own rather than a shared KAFKA_BROKERS.
func TestProduceCreatesTheInputTopicWithTheInputRetention(t *testing.T) {
	k, err := embedded.StartKafka("", 1)
	if err != nil {
		t.Fatalf("starting in-process Kafka: %v", err)
	}
	t.Cleanup(k.Close)
	t.Setenv("KAFKA_BROKERS", strings.Join(k.Brokers(), ","))
	t.Setenv("KAFKA_INPUT_RETENTION", "123d")
	t.Setenv("KAFKA_OUTPUT_RETENTION", "2d")
	code, _, errs := run(t, "produce", "--topic", "logins", "--file", "../../testdata/sample/logins.jsonl")
	if code != 0 {
		t.Fatalf("produce: exit %d: %s", code, errs)
	}
	admin, err := stream.NewAdmin(k.Brokers(), stream.Security{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if got, err := admin.TopicRetention(ctx, event.TopicLogins); err != nil || got != 123*24*time.Hour {
		t.Fatalf("retention of %s: %v, %v; want 123 days", event.TopicLogins, got, err)
	}
}
