// Command relay publishes the derived events queued in the Redis outbox to their Kafka topics
// (loyalty.tier-changes.v1, loyalty.churn-risk.v1, loyalty.segment-changes.v1), deleting each
// only after Kafka acknowledged it. Run one or more; they share the outbox shards by lease.
package main

import (
	"context"
	"os"

	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

func main() {
	os.Exit(wiring.Main(wiring.Binary{Name: "relay", HTTPDefault: "127.0.0.1:9104",
		Summary: "Publishes the derived events queued in the Redis outbox to their Kafka topics.",
		Run: func(ctx context.Context, rt *wiring.Runtime) error {
			return wiring.RunRelay(ctx, rt, nil)
		}}))
}
