package replay

import (
	"context"
	"fmt"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// ConsumerGroup is the consumer group of a live service on a namespace (wiring.RunConsumer's
// default naming).
func ConsumerGroup(ns, service string) string { return "loyalty-" + ns + "-" + service }

// Promote makes a finished replay namespace the live one. It places the namespace's service
// consumer groups where the replay stopped (so they continue with what arrived since), then
// switches the active-namespace pointer in one SET. Running services notice within seconds,
// drain and exit with namespace.ExitPromoted; their supervisor restarts them on the new
// namespace (a rolling restart). The old namespace is kept until Drop. admin places the
// groups on the input topics topics names.
func Promote(ctx context.Context, rt Namespace, deployment keyspace.Deployment, admin *stream.Admin, topics Topics, fallbackLive string) (previous string, err error) {
	meta, ok, err := LoadMetadata(ctx, rt)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("namespace %s is not a replay namespace", rt.Keys.Namespace())
	}
	if meta.Status != "done" {
		return "", fmt.Errorf("the replay into %s has not finished (status %s); run it again to resume", rt.Keys.Namespace(), meta.Status)
	}
	previous, err = namespace.ActiveNamespace(ctx, rt.Redis, deployment, fallbackLive)
	if err != nil {
		return "", err
	}
	if previous == rt.Keys.Namespace() {
		return previous, fmt.Errorf("namespace %s is already live", previous)
	}
	for _, input := range event.InputStreams() {
		logical := input.Topic
		topic := topics.Physical(logical)
		pos, err := admin.GroupOffsets(ctx, Group(rt.Keys.Namespace()), topic)
		if err != nil {
			return "", err
		}
		if len(pos) == 0 {
			// Nothing replayed on this topic: start where the replay's range ended.
			pos = meta.Ends[logical]
		}
		group := ConsumerGroup(rt.Keys.Namespace(), input.Service)
		if err := admin.CommitGroupOffsets(ctx, group, topic, pos); err != nil {
			return "", fmt.Errorf("placing group %s: %w", group, err)
		}
	}
	// The promoted namespace's relay publishes on the live topics from now on; entries still in
	// its outbox were derived by the replay and stay on the shadow topics' side: drop them.
	if err := namespace.DropOutboxes(ctx, rt.Redis, rt.Keys); err != nil {
		return "", err
	}
	if err := namespace.Activate(ctx, rt.Redis, deployment, previous, rt.Keys.Namespace()); err != nil {
		return "", err
	}
	return previous, nil
}

// Drop deletes every key of a namespace that is not live. It returns the number of keys
// deleted.
func Drop(ctx context.Context, rt Namespace, deployment keyspace.Deployment, fallbackLive string) (int64, error) {
	active, err := namespace.ActiveNamespace(ctx, rt.Redis, deployment, fallbackLive)
	if err != nil {
		return 0, err
	}
	if active == rt.Keys.Namespace() {
		return 0, fmt.Errorf("namespace %s is live; promote another one first", active)
	}
	deleted, err := namespace.DeleteKeys(ctx, rt.Redis, rt.Keys)
	if err != nil {
		return deleted, err
	}
	if err := namespace.Forget(ctx, rt.Redis, deployment, rt.Keys.Namespace()); err != nil {
		return deleted, err
	}
	return deleted, namespace.Unregister(ctx, rt.Redis, deployment, rt.Keys.Namespace())
}
