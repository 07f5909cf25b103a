// Command feedback consumes feedback events (event.TopicFeedback) in a consumer group, applies them to
// customer state in Redis and queues the derived tier, churn-risk and segment changes in the
// outbox. Configuration is the environment; see the README.
package main

import (
	"context"
	"os"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

func main() {
	os.Exit(wiring.Main(wiring.Binary{Name: "feedback", HTTPDefault: "127.0.0.1:9103",
		Summary: "Consumes feedback events, applies them to customer state in Redis and queues the derived changes in the outbox.",
		Run: func(ctx context.Context, rt *wiring.Runtime) error {
			return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: "feedback", Topics: []string{event.TopicFeedback}})
		}}))
}
